"""A template image of the same sky: other seeing, depth, zero point and pointing.

The template sees the same stars and galaxies (same sky positions and true
magnitudes) but none of the transients, no cosmic rays and no bad columns. It
has a plain TAN WCS (as resampled survey cutouts have), is offset from the
science pointing by ``template_shift_px`` and turned by ``template_rotation_deg``,
has a flat zero point and its own colour term.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.io.fits import Header
from astropy.table import Table
from astropy.wcs import WCS
from numpy.typing import NDArray

from .config import SkyConfig
from .detector import add_noise
from .fields import FieldFrame, PSFField, make_sky_background
from .galaxies import render_galaxies
from .header import observation_header, pointing_hint
from .psf import render_point_sources
from .wcs import make_wcs, rotation_angle_deg


@dataclass(repr=False)
class SimulatedImage:
    """A simulated image with the numbers that describe it (template of a sky)."""

    image: NDArray  # float32 (ny, nx), ADU, sky not subtracted
    header: Header
    wcs: WCS
    fwhm: float  # px at the image centre
    zp: float  # flat zero point: m = m_inst + zp + color_term * (g - r)
    color_term: float
    gain: float
    read_noise: float
    saturation: float
    sky_level: float
    psf: str
    shift_px: tuple[float, float]  # template centre relative to the science centre, sci pixels
    rotation_deg: float  # relative to the science image
    stars: Table  # x, y, flux of every catalogue star in the template frame (catalogue order)
    model: NDArray | None = None  # noiseless expected image (sky + sources), float32
    background: NDArray | None = None  # noiseless sky alone, float32

    def __repr__(self) -> str:
        ny, nx = self.image.shape
        return (
            f"SimulatedImage({nx}x{ny}, fwhm={self.fwhm}, zp={self.zp}, gain={self.gain}, "
            f"shift_px={self.shift_px}, rotation_deg={self.rotation_deg})"
        )


def template_wcs(cfg: SkyConfig, science_wcs: WCS) -> WCS:
    """TAN WCS centred on the science pixel (centre + shift), rotated by the extra angle."""
    ny, nx = cfg.image_shape
    cx, cy = (nx - 1) / 2.0 + cfg.template_shift_px[0], (ny - 1) / 2.0 + cfg.template_shift_px[1]
    ra, dec = science_wcs.all_pix2world([[cx, cy]], 0)[0]
    rotation = rotation_angle_deg(science_wcs) + cfg.template_rotation_deg
    return make_wcs(nx, ny, float(ra), float(dec), cfg.pixel_scale, rotation)


def _rotate_angles(
    science_wcs: WCS, tmpl_wcs: WCS, x: NDArray, y: NDArray, theta: NDArray
) -> NDArray:
    """Galaxy position angles carried from science pixels into template pixels."""
    ra0, dec0 = science_wcs.all_pix2world(x, y, 0)
    ra1, dec1 = science_wcs.all_pix2world(x + np.cos(theta), y + np.sin(theta), 0)
    tx0, ty0 = tmpl_wcs.all_world2pix(ra0, dec0, 0)
    tx1, ty1 = tmpl_wcs.all_world2pix(ra1, dec1, 0)
    return np.arctan2(ty1 - ty0, tx1 - tx0)


def simulate_template(
    cfg: SkyConfig,
    science_wcs: WCS,
    stars: Table,
    galaxies: Table,
    rng: np.random.Generator,
) -> SimulatedImage:
    """Render the template of the sky described by the science truth tables.

    ``stars`` needs ra, dec, mag (true r) and g_r; ``galaxies`` needs ra, dec, mag,
    g_r and the Sersic shape columns of :func:`pipeline.simulate.galaxies.galaxy_table`.
    """
    ny, nx = cfg.image_shape
    frame = FieldFrame(nx, ny)
    wcs = template_wcs(cfg, science_wcs)
    psf = PSFField(
        frame,
        cfg.psf,
        cfg.beta,
        cfg.template_fwhm_center,
        cfg.template_fwhm_corner,
        0.02,
        0.06,
        theta_center_deg=-40.0,
    )
    sky = make_sky_background(frame, cfg.template_sky_level, cfg.sky_gradient / 2, rng)
    sources = np.zeros((ny, nx))
    sx, sy = wcs.all_world2pix(np.asarray(stars["ra"]), np.asarray(stars["dec"]), 0)
    sflux = 10 ** (
        -0.4
        * (
            np.asarray(stars["mag"])
            - cfg.template_zero_point
            - cfg.template_color_term * np.asarray(stars["g_r"])
        )
    )
    sigma_sky = np.sqrt(cfg.template_sky_level / cfg.template_gain)
    render_point_sources(sources, sx, sy, sflux, psf, edge_level=0.1 * sigma_sky)
    if len(galaxies):
        gx, gy = wcs.all_world2pix(np.asarray(galaxies["ra"]), np.asarray(galaxies["dec"]), 0)
        gflux = 10 ** (
            -0.4
            * (
                np.asarray(galaxies["mag"])
                - cfg.template_zero_point
                - cfg.template_color_term * np.asarray(galaxies["g_r"])
            )
        )
        shapes = {k: np.asarray(galaxies[k]) for k in ("r_eff", "sersic_n", "ellipticity")}
        shapes["theta"] = _rotate_angles(
            science_wcs,
            wcs,
            np.asarray(galaxies["x"]),
            np.asarray(galaxies["y"]),
            np.asarray(galaxies["theta"]),
        )
        render_galaxies(sources, gx, gy, gflux, shapes, psf)
    background = sky.image()
    model = background + sources
    image = add_noise(model, cfg.template_gain, cfg.template_read_noise, rng)
    np.minimum(image, cfg.saturation, out=image)
    hint = pointing_hint(*wcs.wcs.crval, 5.0, rng)
    header = observation_header(
        telescope=f"{cfg.telescope} (template stack)",
        instrument=cfg.instrument,
        object_name=cfg.object_name,
        date_obs=cfg.template_date_obs,
        exptime=cfg.exptime * 10,
        gain=cfg.template_gain,
        read_noise=cfg.template_read_noise,
        saturation=cfg.saturation,
        hint=hint,
        radec_format=cfg.header_radec_format,
        wcs=wcs,
    )
    return SimulatedImage(
        image=image.astype(np.float32),
        header=header,
        wcs=wcs,
        fwhm=float(cfg.template_fwhm_center),
        zp=float(cfg.template_zero_point),
        color_term=float(cfg.template_color_term),
        gain=float(cfg.template_gain),
        read_noise=float(cfg.template_read_noise),
        saturation=float(cfg.saturation),
        sky_level=float(cfg.template_sky_level),
        psf=cfg.psf,
        shift_px=(float(cfg.template_shift_px[0]), float(cfg.template_shift_px[1])),
        rotation_deg=float(cfg.template_rotation_deg),
        stars=Table({"x": sx, "y": sy, "flux": sflux}),
        model=model.astype(np.float32),
        background=background.astype(np.float32),
    )
