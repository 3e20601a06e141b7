"""The one set of knobs (and their defaults) for a simulated sky.

Every default of the simulator lives here; the other modules of
:mod:`pipeline.simulate` read them from a :class:`SkyConfig` instance.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

PSF_KINDS = ("moffat", "gaussian")
FILTER_NAME = "r"  # the image band; catalogue r magnitudes drive the fluxes
COLOR_NAME = "g-r"  # the colour the colour term multiplies


@dataclass(frozen=True)
class SkyConfig:
    """Parameters of one simulated exposure and its template.

    Pixel coordinates are 0-based (numpy) unless a name says otherwise.
    Magnitudes are AB, in the Pan-STARRS1 system. Fluxes are ADU in the image.
    """

    # --- geometry and astrometry -------------------------------------------------
    size: int = 1024  # image side in pixels (square unless ``shape`` is given)
    shape: tuple[int, int] | None = None  # (ny, nx); overrides ``size`` when set
    ra_center: float = 150.0  # deg, sky position of the central pixel
    dec_center: float = 20.0  # deg
    pixel_scale: float = 0.8  # arcsec per pixel
    rotation_deg: float = 0.7  # position angle of the detector +y axis, east of north
    sip_corner_px: float = 3.0  # size of the SIP distortion at the image corners, pixels
    sip_order: int = 3
    pointing_error_arcsec: float = 25.0  # how far the RA/DEC header hints are from the truth
    header_radec_format: Literal["sexagesimal", "degrees"] = "sexagesimal"

    # --- detector ----------------------------------------------------------------
    gain: float = 2.0  # e-/ADU
    read_noise: float = 8.0  # e- (header RDNOISE is in electrons)
    saturation: float = 50000.0  # ADU; pixels are clipped here
    sky_level: float = 1000.0  # ADU at the image centre (sky is NOT subtracted)
    sky_gradient: float = 0.03  # relative change of the sky across the field
    exptime: float = 120.0  # s, only for the header: the zero point already includes it
    n_cosmic_hits: int | None = None  # default scales with area: 120 per 2048^2
    n_cosmic_tracks: int | None = None  # default scales with area: 25 per 2048^2
    n_hot_columns: int = 1
    n_dead_columns: int = 1

    # --- photometry --------------------------------------------------------------
    zero_point: float = 27.5  # mag giving 1 ADU total at the image centre (g-r = 0)
    zero_point_range: float = 0.08  # peak-to-peak variation of ZP(x, y) over the image, mag
    color_term: float = 0.10  # C in m_inst = m_cat - ZP(x, y) - C (g - r)

    # --- PSF -----------------------------------------------------------------------
    psf: Literal["moffat", "gaussian"] = "moffat"
    beta: float = 3.0  # Moffat power index
    fwhm_center: float = 3.0  # px
    fwhm_corner: float = 3.6  # px, reached at the image corners (quadratic in radius)
    ellipticity_center: float = 0.03  # 1 - b/a
    ellipticity_corner: float = 0.12  # radial elongation at the corners

    # --- sources -------------------------------------------------------------------
    n_stars: int | None = None  # default scales with area: 7000 per 2048^2
    bright_mag: float = 11.0  # brightest catalogue star, r mag
    catalog_depth: float = 2.0  # catalogue reaches this many mag fainter than the S/N=5 limit
    catalog_noise: bool = True  # perturb catalogue magnitudes by their quoted errors
    catalog_margin_px: int = 40  # catalogue (and rendered stars) extend this far off the edges
    n_galaxies: int | None = None  # default scales with area: 40 per 2048^2 (at least 8)
    n_transients: int = 8  # half isolated, half on galaxies
    transient_mag_above_limit: tuple[float, float] = (1.0, 2.0)  # brighter than limit by

    # --- header --------------------------------------------------------------------
    date_obs: str = "2023-03-15T03:12:45.000"
    telescope: str = "SkySift-Sim 1.0m"
    instrument: str = "SIMCAM-2K"
    object_name: str = "SIMFIELD"

    # --- template ------------------------------------------------------------------
    template: bool = True
    template_fwhm_center: float = 2.4  # better seeing than the science image
    template_fwhm_corner: float = 2.7
    template_zero_point: float = 28.6  # deeper: a longer stacked exposure
    template_color_term: float = 0.03
    template_sky_level: float = 800.0
    template_gain: float = 4.0
    template_read_noise: float = 6.0
    template_shift_px: tuple[float, float] = (23.4, -17.8)  # pointing offset, pixels (x, y)
    template_rotation_deg: float = 0.25  # extra rotation relative to the science image
    template_date_obs: str = "2019-02-02T04:00:00.000"

    # free-form extra header cards (name -> value) for tests of header heuristics
    extra_header: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def image_shape(self) -> tuple[int, int]:
        """(ny, nx) of the image."""
        if self.shape is not None:
            return (int(self.shape[0]), int(self.shape[1]))
        return (int(self.size), int(self.size))

    def _scaled(self, value: int | None, per_2048: float, minimum: int = 0) -> int:
        if value is not None:
            return int(value)
        ny, nx = self.image_shape
        return max(minimum, round(per_2048 * nx * ny / 2048**2))

    @property
    def star_count(self) -> int:
        """Number of catalogue stars (on the image and its margin)."""
        ny, nx = self.image_shape
        m = self.catalog_margin_px
        area = (nx + 2 * m) * (ny + 2 * m) / 2048**2
        return int(self.n_stars) if self.n_stars is not None else max(20, round(7000 * area))

    @property
    def galaxy_count(self) -> int:
        return self._scaled(self.n_galaxies, 40, minimum=8)

    @property
    def cosmic_hit_count(self) -> int:
        return self._scaled(self.n_cosmic_hits, 120)

    @property
    def cosmic_track_count(self) -> int:
        return self._scaled(self.n_cosmic_tracks, 25)

    def with_overrides(self, **overrides: Any) -> SkyConfig:
        """Return a copy with some fields changed; unknown names raise ValueError."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(
                f"unknown SkyConfig field(s) {unknown}; valid names are {sorted(known)}"
            )
        return replace(self, **overrides)


def _validate(cfg: SkyConfig) -> None:
    """Reject physically meaningless settings with a message saying what to change."""
    ny, nx = cfg.image_shape
    if nx < 64 or ny < 64:
        raise ValueError(f"image shape {(ny, nx)} is too small: use at least 64x64 pixels")
    if cfg.psf not in PSF_KINDS:
        raise ValueError(f"psf must be one of {PSF_KINDS}, not {cfg.psf!r}")
    if cfg.psf == "moffat" and cfg.beta <= 1.0:
        raise ValueError(f"Moffat beta must be > 1 (finite flux), got {cfg.beta}")
    positive = {
        "pixel_scale": cfg.pixel_scale,
        "gain": cfg.gain,
        "saturation": cfg.saturation,
        "sky_level": cfg.sky_level,
        "exptime": cfg.exptime,
        "fwhm_center": cfg.fwhm_center,
        "fwhm_corner": cfg.fwhm_corner,
        "template_fwhm_center": cfg.template_fwhm_center,
        "template_fwhm_corner": cfg.template_fwhm_corner,
        "template_sky_level": cfg.template_sky_level,
        "template_gain": cfg.template_gain,
    }
    for name, value in positive.items():
        if not value > 0:
            raise ValueError(f"{name} must be positive, got {value}")
    if cfg.read_noise < 0 or cfg.template_read_noise < 0:
        raise ValueError("read noise must be >= 0 electrons")
    for name in ("ellipticity_center", "ellipticity_corner"):
        value = getattr(cfg, name)
        if not 0 <= value < 0.8:
            raise ValueError(f"{name} must be in [0, 0.8), got {value}")
    if not -90 <= cfg.dec_center <= 90:
        raise ValueError(f"dec_center must be within [-90, 90] deg, got {cfg.dec_center}")
    if cfg.sky_level >= cfg.saturation:
        raise ValueError("sky_level must be well below saturation")
    lo, hi = cfg.transient_mag_above_limit
    if lo > hi:
        raise ValueError("transient_mag_above_limit must be (smaller, larger)")
    if cfg.header_radec_format not in ("sexagesimal", "degrees"):
        raise ValueError("header_radec_format must be 'sexagesimal' or 'degrees'")
