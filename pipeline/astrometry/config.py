"""Settings of the astrometry stage (part of the photometry step config).

Every default of the astrometry subpackage that a user may change lives
here, once; :func:`pipeline.astrometry.solve.solve_astrometry` reads them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pipeline.astrometry.nova import DEFAULT_NOVA_URL
from pipeline.steps.base import StepConfig


class AstrometryConfig(StepConfig):
    """How the astrometric solution is found, refined and checked."""

    astrometry_method: Literal["builtin", "scamp", "none"] = Field(
        "builtin",
        description=(
            "Refinement against the reference catalogue: builtin (Python matching and TAN-SIP "
            "fit), scamp (needs the `scamp` program) or none (keep the header WCS as it is)."
        ),
    )
    blind_solve: Literal["auto", "always", "never"] = Field(
        "auto",
        description=(
            "Blind solving: auto (only when the header has no usable WCS), always (ignore "
            "the header WCS) or never."
        ),
    )
    blind_solver: Literal["local", "nova"] = Field(
        "local",
        description=(
            "Blind solver: local (astrometry.net `solve-field` with index files) or nova "
            "(the nova.astrometry.net web service; needs an API key)."
        ),
    )
    sip_order: int = Field(
        3, ge=1, le=5, description="Order of the SIP distortion polynomials (1 = plain TAN)."
    )
    max_offset_arcsec: float = Field(
        60.0, gt=0, le=3600, description="Largest error of the approximate WCS position, arcsec."
    )
    max_rotation_deg: float = Field(
        1.0, ge=0, le=10, description="Largest rotation error of the approximate WCS, degrees."
    )
    max_scale_error: float = Field(
        0.01,
        ge=0,
        le=0.2,
        description="Largest fractional pixel-scale error of the approximate WCS.",
    )
    match_tolerance_px: float = Field(
        4.0,
        gt=0,
        le=50,
        description="Positional slack (pixels) for distortion the approximate WCS leaves out.",
    )
    astrometry_max_stars: int = Field(
        5000, ge=20, description="Most detections (brightest first) used for the astrometric fit."
    )
    astrometry_mag_column: str = Field(
        "", description="Catalogue magnitude that orders the reference stars (empty: automatic)."
    )
    min_matches: int = Field(
        10, ge=5, description="Fewest matched stars for an astrometric solution to be accepted."
    )
    max_rms_px: float = Field(
        1.0, gt=0, description="Largest accepted RMS of the astrometric residuals, pixels."
    )
    blind_ra: float | None = Field(
        None, ge=0, lt=360, description="RA hint for blind solving, degrees (empty: from header)."
    )
    blind_dec: float | None = Field(
        None, ge=-90, le=90, description="Dec hint for blind solving, degrees (empty: from header)."
    )
    blind_radius_deg: float = Field(
        1.0, gt=0, le=180, description="How far the field may be from the RA/Dec hint, degrees."
    )
    pixel_scale_hint: float | None = Field(
        None, gt=0, description="Pixel scale hint for blind solving, arcsec/pixel (empty: unknown)."
    )
    pixel_scale_tolerance: float = Field(
        0.2, gt=0, lt=1, description="Fractional uncertainty of the pixel scale hint."
    )
    blind_time_limit_s: float = Field(
        60.0, gt=0, le=3600, description="CPU time the blind solver may spend, seconds."
    )
    build_indexes: bool = Field(
        True,
        description="Build astrometry.net index files from the reference catalogue (cached).",
    )
    use_system_indexes: bool = Field(
        True,
        description="Also use index files in /usr/share/astrometry and the index folder.",
    )
    index_dir: str = Field("", description="Extra folder with astrometry.net index files.")
    index_cache_dir: str = Field(
        "", description="Where built index files are cached (empty: the default cache folder)."
    )
    nova_api_key: str = Field(
        "", description="nova.astrometry.net API key (for blind_solver=nova)."
    )
    nova_url: str = Field(DEFAULT_NOVA_URL, description="nova.astrometry.net server address.")
    nova_timeout_s: float = Field(
        30.0, gt=0, description="Timeout of each request to nova, seconds."
    )
    nova_poll_s: float = Field(
        5.0, gt=0, le=60, description="Pause between status checks of a nova job, seconds."
    )
    nova_max_wait_s: float = Field(
        600.0, gt=0, description="How long to wait for nova to solve the field, seconds."
    )
