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
from .transients import place_transients
from .wcs import make_wcs

LIMIT_FORMULA = (
    "m_lim = ZP_med - 2.5 log10(F / f_ap), F = (25/g + sqrt(625/g^2 + 100 A s2)) / 2 solves "
    "F = 5 sqrt(F/g + A s2): aperture radius r = FWHM_med, A = pi r^2, "
    "s2 = S_med/g + (RN/g)^2 ADU^2 per pixel (g gain e-/ADU, RN read noise e-, S sky ADU), "
    "f_ap = fraction of a round PSF inside r; for a source of g-r = 0"
)
_STREAMS = (
    "wcs",
    "zp",
    "sky",
    "stars",
    "catalog",
    "galaxies",
    "transients",
    "noise",
    "cosmics",
    "columns",
    "header",
    "template",
)


@dataclass(repr=False)
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

    def __repr__(self) -> str:
        return (
            f"SimulationTruth(stars={len(self.stars)}, galaxies={len(self.galaxies)}, "
            f"transients={len(self.transients)}, psf={self.psf!r}, "
            f"limit_sn5={self.limit_sn5:.2f}, color_term={self.color_term})"
        )

    def fwhm_map(self, x: Any, y: Any) -> NDArray:
        """FWHM (px, geometric mean of the axes) of the PSF at pixel (x, y)."""
        return self.psf_field.fwhm(x, y)

    @property
    def bad_column_mask(self) -> NDArray:
        return bad_column_mask(self.cosmic_mask.shape, self.bad_columns)

    def scalars(self) -> dict[str, Any]:
        """Plain-number truth for JSON."""
        return {
            "color_term": self.color_term,
            "color": self.color,
            "psf": self.psf,
            "beta": self.beta,
            "gain": self.gain,
            "read_noise": self.read_noise,
            "saturation": self.saturation,
            "sky_level": self.sky_level,
            "limit_sn5": self.limit_sn5,
            "limit_formula": self.limit_formula,
            "pixel_scale": self.pixel_scale,
            "fwhm_median": self.fwhm_median,
            "zp_median": self.zp_median,
            "zero_point_model": self.zp_coeffs,
            "psf_field": self.psf_field.describe(),
            "sky_model": self.sky.describe(),
            "bad_columns": self.bad_columns,
            "n_stars_in_image": int(np.sum(self.stars["in_image"])),
            "n_saturated_stars": int(np.sum(self.stars["saturated"])),
            "n_galaxies": len(self.galaxies),
            "n_transients": len(self.transients),
            "n_cosmic_pixels": int(self.cosmic_mask.sum()),
        }


@dataclass(repr=False)
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

    def __repr__(self) -> str:
        ny, nx = self.image.shape
        return (
            f"SimulatedSky({nx}x{ny}, seed={self.seed}, catalog={len(self.catalog)} rows, "
            f"template={'yes' if self.template is not None else 'no'}, truth={self.truth!r})"
        )

    def variant(self, kind: str, **kwargs: Any) -> Header:
        """Header with a damaged WCS: 'perturbed_wcs' (shift_arcsec, rot_deg, pa_deg),
        'no_wcs' or 'no_sip' (see :func:`pipeline.simulate.header.header_variant`)."""
        return header_variant(self.header, self.truth.wcs, kind, **kwargs)


def limiting_magnitude(
    zp: float,
    fwhm: float,
    sky: float,
    gain: float,
    read_noise: float,
    psf: PSFField,
    snr: float = 5.0,
) -> float:
    """Analytic S/N = ``snr`` magnitude for an aperture of radius 1 FWHM.

    See :data:`LIMIT_FORMULA`: the aperture flux F solves F = snr * sqrt(F/g + A s2),
    a quadratic, and the total flux is F divided by the PSF fraction in the aperture.
    """
    area = np.pi * fwhm**2
    s2 = pixel_variance(sky, gain, read_noise)
    k = snr**2
    flux_ap = (k / gain + np.sqrt((k / gain) ** 2 + 4 * k * area * s2)) / 2.0
    total = flux_ap / psf.encircled_fraction(fwhm, fwhm)
    return float(zp - 2.5 * np.log10(total))


def instrumental_flux(mag: Any, zp: Any, color_term: float, color: Any) -> NDArray:
    """ADU total of sources: 10**(-0.4 * (m - ZP - C * colour))."""
    return 10 ** (-0.4 * (np.asarray(mag) - np.asarray(zp) - color_term * np.asarray(color)))


def _effective_margin(cfg: SkyConfig) -> int:
    """Catalogue margin wide enough to also fill the shifted, rotated template."""
    if not cfg.template:
        return int(cfg.catalog_margin_px)
    ny, nx = cfg.image_shape
    turn = np.deg2rad(abs(cfg.template_rotation_deg)) * np.hypot(nx, ny) / 2
    need = np.hypot(*cfg.template_shift_px) + turn + 10
    return int(max(cfg.catalog_margin_px, np.ceil(need)))


def _random_streams(seed: int | None) -> dict[str, np.random.Generator]:
    """One independent generator per ingredient, so changing one leaves the others."""
    children = np.random.SeedSequence(seed).spawn(len(_STREAMS))
    return {name: np.random.default_rng(c) for name, c in zip(_STREAMS, children, strict=True)}


def _resolve_config(config: SkyConfig | None, overrides: dict[str, Any]) -> SkyConfig:
    if config is not None and not isinstance(config, SkyConfig):
        raise ValueError(
            f"config must be a SkyConfig or None, not {type(config).__name__}; "
            "pass settings as keywords, e.g. simulate_sky(size=512, seed=1)"
        )
    base = config if config is not None else SkyConfig()
    return base.with_overrides(**overrides) if overrides else base


def simulate_sky(
    config: SkyConfig | None = None, seed: int | None = 0, **overrides: Any
) -> SimulatedSky:
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
    cfg = _resolve_config(config, overrides)
    rngs = _random_streams(seed)
    ny, nx = cfg.image_shape
    frame = FieldFrame(nx, ny)
    wcs = make_wcs(
        nx,
        ny,
        cfg.ra_center,
        cfg.dec_center,
        cfg.pixel_scale,
        cfg.rotation_deg,
        cfg.sip_order,
        cfg.sip_corner_px,
        rngs["wcs"],
    )
    zp_model = make_zero_point_model(frame, cfg.zero_point, cfg.zero_point_range, rngs["zp"])
    psf = PSFField(
        frame,
        cfg.psf,
        cfg.beta,
        cfg.fwhm_center,
        cfg.fwhm_corner,
        cfg.ellipticity_center,
        cfg.ellipticity_corner,
    )
    sky = make_sky_background(frame, cfg.sky_level, cfg.sky_gradient, rngs["sky"])
    grid_step = max(8, min(nx, ny) // 32)
    fwhm_med = float(np.median(psf.on_grid(grid_step)))
    zp_med = float(np.median(zp_model.on_grid(grid_step)))
    limit = limiting_magnitude(zp_med, fwhm_med, cfg.sky_level, cfg.gain, cfg.read_noise, psf)

    stars, catalog = _draw_stars(cfg, wcs, zp_model, limit, rngs["stars"], rngs["catalog"])
    galaxies, shapes = _draw_galaxies(cfg, wcs, zp_model, limit, rngs["galaxies"])
    transients = place_transients(
        cfg.n_transients,
        (ny, nx),
        limit,
        cfg.transient_mag_above_limit,
        stars,
        galaxies,
        fwhm_med,
        rngs["transients"],
    )
    transients["ra"], transients["dec"] = wcs.all_pix2world(transients["x"], transients["y"], 0)
    transients["zp"] = zp_model(transients["x"], transients["y"])
    transients["flux"] = instrumental_flux(
        transients["mag"], transients["zp"], cfg.color_term, transients["g_r"]
    )

    # the noiseless sky; bright stamps end where the wings fall below 0.1 sigma of the sky
    edge_level = 0.1 * float(np.sqrt(pixel_variance(cfg.sky_level, cfg.gain, cfg.read_noise)))
    sources = np.zeros((ny, nx))
    rendered = render_point_sources(sources, stars["x"], stars["y"], stars["flux"], psf, edge_level)
    galaxies["flux_in_image"] = render_galaxies(
        sources, galaxies["x"], galaxies["y"], galaxies["flux"], shapes, psf
    )
    t_rendered = render_point_sources(
        sources,
        np.asarray(transients["x"]),
        np.asarray(transients["y"]),
        np.asarray(transients["flux"]),
        psf,
        edge_level,
    )
    transients["flux_in_image"] = t_rendered.deposited
    transients["fwhm"] = t_rendered.fwhm
    transients["peak"] = t_rendered.peak
    background = sky.image()
    model = background + sources

    # the detector
    image = add_noise(model, cfg.gain, cfg.read_noise, rngs["noise"])
    cosmics = make_cosmic_rays(
        (ny, nx), cfg.cosmic_hit_count, cfg.cosmic_track_count, rngs["cosmics"]
    )
    image += cosmics.deposit
    columns = make_bad_columns(
        (ny, nx), cfg.n_hot_columns, cfg.n_dead_columns, cfg.gain, rngs["columns"]
    )
    apply_bad_columns(image, columns, cfg.gain, rngs["columns"])
    np.minimum(image, cfg.saturation, out=image)

    truth = SimulationTruth(
        stars=_star_truth(stars, catalog, rendered, model, cfg.saturation),
        galaxies=galaxy_table(galaxies, shapes),
        transients=transients,
        cosmic_mask=cosmics.mask,
        cosmic_events=cosmics.events,
        bad_columns=columns,
        zero_point_map=zp_model,
        zp_coeffs=zp_model.describe(),
        color_term=float(cfg.color_term),
        color=COLOR_NAME,
        psf=cfg.psf,
        beta=float(cfg.beta),
        psf_field=psf,
        gain=float(cfg.gain),
        read_noise=float(cfg.read_noise),
        saturation=float(cfg.saturation),
        sky_level=float(cfg.sky_level),
        sky=sky,
        wcs=wcs,
        limit_sn5=limit,
        pixel_scale=float(cfg.pixel_scale),
        fwhm_median=fwhm_med,
        zp_median=zp_med,
    )
    template = None
    if cfg.template:
        template = simulate_template(cfg, wcs, truth.stars, truth.galaxies, rngs["template"])
    return SimulatedSky(
        image=image.astype(np.float32),
        header=science_header(cfg, wcs, rngs["header"], seed),
        catalog=catalog,
        truth=truth,
        template=template,
        config=cfg,
        seed=seed,
        model=model.astype(np.float32),
        background=background.astype(np.float32),
    )


def _draw_stars(
    cfg: SkyConfig,
    wcs: WCS,
    zp_model: ZeroPointModel,
    limit: float,
    rng: np.random.Generator,
    catalog_rng: np.random.Generator,
) -> tuple[dict[str, NDArray], Table]:
    """Stars over the image and a margin: positions, true magnitudes, fluxes, catalogue.

    Positions are drawn in pixels and mapped to the sky through the true WCS (SIP
    included), so that the catalogue position maps back exactly onto the truth x, y.
    """
    ny, nx = cfg.image_shape
    margin = _effective_margin(cfg)
    n = cfg.star_count
    x = rng.uniform(-margin - 0.5, nx - 0.5 + margin, n)
    y = rng.uniform(-margin - 0.5, ny - 0.5 + margin, n)
    ra, dec = wcs.all_pix2world(x, y, 0)
    r_true = draw_r_magnitudes(n, cfg.bright_mag, limit + cfg.catalog_depth, rng)
    g_r = draw_g_r(n, rng)
    catalog = build_ps1_table(
        ra, dec, star_magnitudes(r_true, g_r, rng), catalog_rng, cfg.catalog_noise
    )
    zp = zp_model(x, y)
    stars = {
        "x": x,
        "y": y,
        "ra": ra,
        "dec": dec,
        "mag": r_true,
        "g_r": g_r,
        "zp": zp,
        "flux": instrumental_flux(r_true, zp, cfg.color_term, g_r),
    }
    return stars, catalog


def _draw_galaxies(
    cfg: SkyConfig, wcs: WCS, zp_model: ZeroPointModel, limit: float, rng: np.random.Generator
) -> tuple[dict[str, NDArray], dict[str, NDArray]]:
    """Galaxy positions, magnitudes (from 5 mag above the limit to 0.5 above) and shapes."""
    ny, nx = cfg.image_shape
    n = cfg.galaxy_count
    shapes = draw_galaxy_shapes(n, cfg.pixel_scale, rng)
    x, y = rng.uniform(20, nx - 21, n), rng.uniform(20, ny - 21, n)
    ra, dec = wcs.all_pix2world(x, y, 0)
    mag = rng.uniform(limit - 5.0, limit - 0.5, n)
    zp = zp_model(x, y)
    galaxies = {
        "x": x,
        "y": y,
        "ra": ra,
        "dec": dec,
        "mag": mag,
        "zp": zp,
        "flux": instrumental_flux(mag, zp, cfg.color_term, shapes["g_r"]),
        "r_eff": shapes["r_eff"],
        "ellipticity": shapes["ellipticity"],
        "theta": shapes["theta"],
    }
    return galaxies, shapes


def _star_truth(
    stars: dict[str, NDArray], catalog: Table, rendered: Any, model: NDArray, saturation: float
) -> Table:
    """Truth table of the stars, row-aligned with the catalogue.

    A star is ``saturated`` when the noiseless image (sky included) reaches the
    saturation level within one pixel of its centre.
    """
    ny, nx = model.shape
    x, y = stars["x"], stars["y"]
    in_image = (x > -0.5) & (x < nx - 0.5) & (y > -0.5) & (y < ny - 0.5)
    ix = np.clip(np.rint(x).astype(int), 0, nx - 1)
    iy = np.clip(np.rint(y).astype(int), 0, ny - 1)
    peak_model = np.zeros(x.size)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            yy, xx = np.clip(iy + dy, 0, ny - 1), np.clip(ix + dx, 0, nx - 1)
            peak_model = np.maximum(peak_model, model[yy, xx])
    rmag = catalog["rmag"]
    return Table(
        {
            "x": x,
            "y": y,
            "ra": stars["ra"],
            "dec": stars["dec"],
            "mag": stars["mag"],
            "mag_cat": np.where(np.ma.getmaskarray(rmag), np.nan, np.ma.getdata(rmag)),
            "g_r": stars["g_r"],
            "objID": np.asarray(catalog["objID"]),
            "zp": stars["zp"],
            "flux": stars["flux"],
            "flux_in_image": rendered.deposited,
            "fwhm": rendered.fwhm,
            "ellipticity": rendered.ellipticity,
            "theta": rendered.theta,
            "peak": rendered.peak,
            "saturated": in_image & (peak_model >= saturation),
            "in_image": in_image,
            "stamp_fraction": rendered.stamp_fraction,
            "stamp_half_size": rendered.half_size,
        }
    )
