"""Simulate one sky: science image, reference catalogue, template and the full truth.

Photometric model. A star of catalogue magnitude ``m`` (PS1 r, AB) and colour
``g - r`` at pixel (x, y) has the instrumental magnitude
``m_inst = m - ZP(x, y) - C * (g - r)`` and deposits ``10**(-0.4 * m_inst)`` ADU in
total (the exposure time is folded into ZP). ZP(x, y) is a smooth 2nd-order
polynomial (:class:`~pipeline.simulate.fields.ZeroPointModel`), C the colour term.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from astropy.io.fits import Header
from astropy.table import Table
from astropy.wcs import WCS
from numpy.typing import NDArray
from scipy.spatial import cKDTree

from .catalog import build_ps1_table, draw_g_r, draw_r_magnitudes, star_magnitudes
from .config import COLOR_NAME, SkyConfig
from .detector import (
    add_noise,
    apply_bad_columns,
    bad_column_mask,
    make_bad_columns,
    make_cosmic_rays,
    pixel_variance,
)
from .fields import (
    FieldFrame,
    PSFField,
    SkyBackground,
    ZeroPointModel,
    make_sky_background,
    make_zero_point_model,
)
from .galaxies import draw_galaxy_shapes, galaxy_table, render_galaxies
from .header import header_variant, science_header
from .psf import render_point_sources
from .template import SimulatedImage, simulate_template
from .wcs import make_wcs

LIMIT_FORMULA = (
    "m_lim = ZP_med - 2.5 log10(F / f_ap), F = (25/g + sqrt(625/g^2 + 100 A s2)) / 2 solves "
    "F = 5 sqrt(F/g + A s2): aperture radius r = FWHM_med, A = pi r^2, "
    "s2 = S_med/g + (RN/g)^2 ADU^2 per pixel (g gain e-/ADU, RN read noise e-, S sky ADU), "
    "f_ap = fraction of a round PSF inside r; for a source of g-r = 0"
)
_STREAMS = ("wcs", "zp", "sky", "stars", "catalog", "galaxies", "transients", "noise",
            "cosmics", "columns", "header", "template")


@dataclass
class SimulationTruth:
    """Everything the simulator knows about the science image (0-based pixels)."""

    stars: Table  # one row per catalogue row (same order), incl. margin stars off the image
    galaxies: Table
    transients: Table
    cosmic_mask: NDArray
    cosmic_events: Table
    bad_columns: list[dict]
    zero_point_map: ZeroPointModel  # callable zp(x, y); .on_grid(step) gives an array
    zp_coeffs: dict
    color_term: float
    color: str
    psf: str
    beta: float
    psf_field: PSFField  # fwhm/ellipticity/angle at any position
    gain: float
    read_noise: float  # electrons
    saturation: float
    sky_level: float  # ADU at the centre
    sky: SkyBackground  # callable sky(x, y)
    wcs: WCS
    limit_sn5: float
    pixel_scale: float
    fwhm_median: float
    zp_median: float
    limit_formula: str = LIMIT_FORMULA

    def fwhm_map(self, x: Any, y: Any) -> NDArray:
        """FWHM (px, geometric mean of the axes) of the PSF at pixel (x, y)."""
        return self.psf_field.fwhm(x, y)

    @property
    def bad_column_mask(self) -> NDArray:
        return bad_column_mask(self.cosmic_mask.shape, self.bad_columns)

    def scalars(self) -> dict[str, Any]:
        """Plain-number truth for JSON."""
        return {
            "color_term": self.color_term, "color": self.color, "psf": self.psf,
            "beta": self.beta, "gain": self.gain, "read_noise": self.read_noise,
            "saturation": self.saturation, "sky_level": self.sky_level,
            "limit_sn5": self.limit_sn5, "limit_formula": self.limit_formula,
            "pixel_scale": self.pixel_scale, "fwhm_median": self.fwhm_median,
            "zp_median": self.zp_median, "zero_point_model": self.zp_coeffs,
            "psf_field": self.psf_field.describe(), "sky_model": self.sky.describe(),
            "bad_columns": self.bad_columns,
            "n_stars_in_image": int(np.sum(self.stars["in_image"])),
            "n_saturated_stars": int(np.sum(self.stars["saturated"])),
            "n_galaxies": len(self.galaxies), "n_transients": len(self.transients),
            "n_cosmic_pixels": int(self.cosmic_mask.sum()),
        }


@dataclass
class SimulatedSky:
    """A simulated science exposure with its catalogue, template and truth."""

    image: NDArray  # float32 (ny, nx), ADU, sky not subtracted
    header: Header
    catalog: Table  # VizieR II/349/ps1 layout, stars only
    truth: SimulationTruth
    template: SimulatedImage | None
    config: SkyConfig
    seed: int | None
    model: NDArray = field(repr=False)  # noiseless expected image (sky + sources), float32
    background: NDArray = field(repr=False)  # noiseless sky alone, float32

    def variant(self, kind: str, **kwargs: Any) -> Header:
        """Header with a damaged WCS: 'perturbed_wcs' (shift_arcsec, rot_deg, pa_deg),
        'no_wcs' or 'no_sip' (see :func:`pipeline.simulate.header.header_variant`)."""
        return header_variant(self.header, self.truth.wcs, kind, **kwargs)


def limiting_magnitude(
    zp: float, fwhm: float, sky: float, gain: float, read_noise: float, psf: PSFField,
    snr: float = 5.0,
) -> float:
    """Analytic S/N = ``snr`` magnitude for an aperture of radius 1 FWHM (see LIMIT_FORMULA)."""
    area = np.pi * fwhm**2
    s2 = pixel_variance(sky, gain, read_noise)
    k = snr**2
    flux_ap = (k / gain + np.sqrt((k / gain) ** 2 + 4 * k * area * s2)) / 2.0
    total = flux_ap / psf.encircled_fraction(fwhm, fwhm)
    return float(zp - 2.5 * np.log10(total))


def _isolated_positions(
    n: int, nx: int, ny: int, avoid_xy: NDArray, avoid_r: NDArray, rng: np.random.Generator,
    edge: float,
) -> NDArray:
    """Up to ``n`` random positions farther than ``avoid_r`` from every ``avoid_xy`` point."""
    tree = cKDTree(avoid_xy) if len(avoid_xy) else None
    rmax = float(avoid_r.max()) if len(avoid_r) else 0.0
    found: list[tuple[float, float]] = []
    for _ in range(20000):
        if len(found) == n:
            break
        p = np.array([rng.uniform(edge, nx - 1 - edge), rng.uniform(edge, ny - 1 - edge)])
        if tree is not None:
            near = tree.query_ball_point(p, rmax)
            d = np.hypot(*(avoid_xy[near] - p).T) if near else np.array([])
            if np.any(d < avoid_r[near]):
                continue
        if any(np.hypot(p[0] - q[0], p[1] - q[1]) < 40 for q in found):
            continue
        found.append((float(p[0]), float(p[1])))
    return np.array(found).reshape(-1, 2)


def _effective_margin(cfg: SkyConfig) -> int:
    """Catalogue margin wide enough to also fill the shifted, rotated template."""
    ny, nx = cfg.image_shape
    need = np.hypot(*cfg.template_shift_px) + np.deg2rad(abs(cfg.template_rotation_deg)) * (
        np.hypot(nx, ny) / 2) + 10
    return int(max(cfg.catalog_margin_px, np.ceil(need) if cfg.template else 0))


def simulate_sky(config: SkyConfig | None = None, seed: int | None = 0,
                 **overrides: Any) -> SimulatedSky:
    """Simulate a science image of a star field with known truth.

    Parameters
    ----------
    config : SkyConfig, optional
        The settings; defaults to ``SkyConfig()``.
    seed : int or None
        Seed of every random draw; the same seed gives the same sky.
    **overrides
        SkyConfig fields to change (e.g. ``size=512, psf="gaussian"``).

    Returns
    -------
    SimulatedSky
    """
    cfg = (config or SkyConfig()).with_overrides(**overrides) if overrides else (
        config or SkyConfig())
    rngs = dict(zip(_STREAMS, (np.random.default_rng(s)
                               for s in np.random.SeedSequence(seed).spawn(len(_STREAMS))),
                    strict=True))
    ny, nx = cfg.image_shape
    frame = FieldFrame(nx, ny)
    wcs = make_wcs(nx, ny, cfg.ra_center, cfg.dec_center, cfg.pixel_scale, cfg.rotation_deg,
                   cfg.sip_order, cfg.sip_corner_px, rngs["wcs"])
    zp_model = make_zero_point_model(frame, cfg.zero_point, cfg.zero_point_range, rngs["zp"])
    psf = PSFField(frame, cfg.psf, cfg.beta, cfg.fwhm_center, cfg.fwhm_corner,
                   cfg.ellipticity_center, cfg.ellipticity_corner)
    sky = make_sky_background(frame, cfg.sky_level, cfg.sky_gradient, rngs["sky"])
    fwhm_med = float(np.median(psf.on_grid(max(8, min(nx, ny) // 32))))
    zp_med = float(np.median(zp_model.on_grid(max(8, min(nx, ny) // 32))))
    limit = limiting_magnitude(zp_med, fwhm_med, cfg.sky_level, cfg.gain, cfg.read_noise, psf)

    # stars: positions over the image and a margin, true magnitudes, catalogue
    rs = rngs["stars"]
    margin = _effective_margin(cfg)
    n_stars = cfg.star_count
    sx = rs.uniform(-margin - 0.5, nx - 0.5 + margin, n_stars)
    sy = rs.uniform(-margin - 0.5, ny - 0.5 + margin, n_stars)
    sra, sdec = wcs.all_pix2world(sx, sy, 0)
    r_true = draw_r_magnitudes(n_stars, cfg.bright_mag, limit + cfg.catalog_depth, rs)
    g_r = draw_g_r(n_stars, rs)
    mags = star_magnitudes(r_true, g_r, rs)
    catalog = build_ps1_table(sra, sdec, mags, rngs["catalog"], cfg.catalog_noise)
    star_zp = zp_model(sx, sy)
    star_flux = 10 ** (-0.4 * (r_true - star_zp - cfg.color_term * g_r))

    # galaxies and transients
    rg = rngs["galaxies"]
    n_gal = cfg.galaxy_count
    shapes = draw_galaxy_shapes(n_gal, cfg.pixel_scale, rg)
    gx, gy = rg.uniform(20, nx - 21, n_gal), rg.uniform(20, ny - 21, n_gal)
    gra, gdec = wcs.all_pix2world(gx, gy, 0)
    gmag = rg.uniform(limit - 5.0, limit - 0.5, n_gal)
    gflux = 10 ** (-0.4 * (gmag - zp_model(gx, gy) - cfg.color_term * shapes["g_r"]))
    transients = _place_transients(cfg, limit, sx, sy, r_true, gx, gy, shapes, gmag, fwhm_med,
                                   rngs["transients"])
    transients["ra"], transients["dec"] = wcs.all_pix2world(transients["x"], transients["y"], 0)
    transients["zp"] = zp_model(transients["x"], transients["y"])
    transients["flux"] = 10 ** (-0.4 * (transients["mag"] - transients["zp"]
                                        - cfg.color_term * transients["g_r"]))

    # render the noiseless sky
    sigma_sky = float(np.sqrt(pixel_variance(cfg.sky_level, cfg.gain, cfg.read_noise)))
    sources = np.zeros((ny, nx))
    rendered = render_point_sources(sources, sx, sy, star_flux, psf, edge_level=0.1 * sigma_sky)
    g_dep = render_galaxies(sources, gx, gy, gflux, shapes, psf)
    t_rendered = render_point_sources(sources, np.asarray(transients["x"]),
                                      np.asarray(transients["y"]),
                                      np.asarray(transients["flux"]), psf, 0.1 * sigma_sky)
    transients["flux_in_image"] = t_rendered.deposited
    transients["fwhm"] = t_rendered.fwhm
    transients["peak"] = t_rendered.peak
    background = sky.image()
    model = background + sources

    # the detector
    image = add_noise(model, cfg.gain, cfg.read_noise, rngs["noise"])
    cosmics = make_cosmic_rays((ny, nx), cfg.cosmic_hit_count, cfg.cosmic_track_count,
                               rngs["cosmics"])
    image += cosmics.deposit
    columns = make_bad_columns((ny, nx), cfg.n_hot_columns, cfg.n_dead_columns, cfg.gain,
                               rngs["columns"])
    apply_bad_columns(image, columns, cfg.gain, rngs["columns"])
    np.minimum(image, cfg.saturation, out=image)

    stars = _star_truth(sx, sy, sra, sdec, r_true, g_r, catalog, star_flux, star_zp, rendered,
                        model, cfg.saturation)
    truth = SimulationTruth(
        stars=stars,
        galaxies=galaxy_table(gx, gy, gra, gdec, gmag, gflux, shapes, g_dep),
        transients=transients, cosmic_mask=cosmics.mask, cosmic_events=cosmics.events,
        bad_columns=columns, zero_point_map=zp_model, zp_coeffs=zp_model.describe(),
        color_term=float(cfg.color_term), color=COLOR_NAME, psf=cfg.psf,
        beta=float(cfg.beta), psf_field=psf, gain=float(cfg.gain),
        read_noise=float(cfg.read_noise), saturation=float(cfg.saturation),
        sky_level=float(cfg.sky_level), sky=sky, wcs=wcs, limit_sn5=limit,
        pixel_scale=float(cfg.pixel_scale), fwhm_median=fwhm_med, zp_median=zp_med,
    )
    header = science_header(cfg, wcs, rngs["header"], seed)
    template = None
    if cfg.template:
        template = simulate_template(cfg, wcs, stars, truth.galaxies, rngs["template"])
    return SimulatedSky(
        image=image.astype(np.float32), header=header, catalog=catalog, truth=truth,
        template=template, config=cfg, seed=seed, model=model.astype(np.float32),
        background=background.astype(np.float32),
    )


def _place_transients(cfg: SkyConfig, limit: float, sx: NDArray, sy: NDArray, r_true: NDArray,
                      gx: NDArray, gy: NDArray, shapes: dict, gmag: NDArray, fwhm: float,
                      rng: np.random.Generator) -> Table:
    """Transients: half on (visible) galaxies, the rest isolated from stars and galaxies."""
    ny, nx = cfg.image_shape
    lo, hi = cfg.transient_mag_above_limit
    n_on = cfg.n_transients // 2
    hosts = np.flatnonzero((gmag < limit - 1.0) & (gx > 30) & (gx < nx - 31)
                           & (gy > 30) & (gy < ny - 31))
    hosts = rng.permutation(hosts)[:n_on]
    rows = []
    for h in hosts:
        # an offset inside the host's disc, in its own frame, then rotated onto the sky
        radius = rng.uniform(0.3, 1.2) * shapes["r_eff"][h]
        phi = rng.uniform(0, 2 * np.pi)
        ox, oy = radius * np.cos(phi), radius * np.sin(phi) * (1 - shapes["ellipticity"][h])
        t = shapes["theta"][h]
        rows.append((gx[h] + ox * np.cos(t) - oy * np.sin(t),
                     gy[h] + ox * np.sin(t) + oy * np.cos(t), True, int(h)))
    n_iso = cfg.n_transients - len(rows)
    # stay clear of every star that is visible, with room for bright halos, and of galaxies
    visible = r_true < limit + 0.5
    avoid_xy = np.concatenate([np.c_[sx[visible], sy[visible]], np.c_[gx, gy]])
    star_r = np.maximum(6 * fwhm, 6 * fwhm + 6 * (limit - r_true[visible]))
    avoid_r = np.concatenate([star_r, 8 * shapes["r_eff"] + 4 * fwhm])
    for x, y in _isolated_positions(n_iso, nx, ny, avoid_xy, avoid_r, rng, edge=30):
        rows.append((x, y, False, -1))
    n = len(rows)
    table = Table(rows=rows or None, names=("x", "y", "on_galaxy", "host_index"),
                  dtype=(float, float, bool, int))
    table["mag"] = limit - rng.uniform(lo, hi, n)
    table["g_r"] = np.zeros(n)
    return table


def _star_truth(sx: NDArray, sy: NDArray, ra: NDArray, dec: NDArray, r_true: NDArray,
                g_r: NDArray, catalog: Table, flux: NDArray, zp: NDArray, rendered: Any,
                model: NDArray, saturation: float) -> Table:
    """Truth table of the stars, row-aligned with the catalogue."""
    ny, nx = model.shape
    in_image = (sx > -0.5) & (sx < nx - 0.5) & (sy > -0.5) & (sy < ny - 0.5)
    ix = np.clip(np.rint(sx).astype(int), 0, nx - 1)
    iy = np.clip(np.rint(sy).astype(int), 0, ny - 1)
    peak_model = np.zeros(sx.size)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            yy, xx = np.clip(iy + dy, 0, ny - 1), np.clip(ix + dx, 0, nx - 1)
            peak_model = np.maximum(peak_model, model[yy, xx])
    rmag = catalog["rmag"]
    return Table({
        "x": sx, "y": sy, "ra": ra, "dec": dec, "mag": r_true,
        "mag_cat": np.where(np.ma.getmaskarray(rmag), np.nan, np.ma.getdata(rmag)),
        "g_r": g_r, "objID": np.asarray(catalog["objID"]), "zp": zp, "flux": flux,
        "flux_in_image": rendered.deposited, "fwhm": rendered.fwhm,
        "ellipticity": rendered.ellipticity, "theta": rendered.theta, "peak": rendered.peak,
        "saturated": in_image & (peak_model >= saturation), "in_image": in_image,
        "stamp_fraction": rendered.stamp_fraction,
    })
