"""Settings of the photometric calibration: the one place their defaults live.

:class:`CalibrationConfig` is a mixin for the photometry step's config model (like
``DetectionConfig``); every field is prefixed ``calib_`` so that it cannot clash with
the settings of detection, measurement or the catalogue.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pipeline.flags import ObjectFlag
from pipeline.steps.base import StepConfig

MAX_ORDER = 5  # monomials on [-1, 1] stay well conditioned up to here


class CalibrationConfig(StepConfig):
    """Photometric calibration settings (part of the photometry step config)."""

    calib_order: int = Field(
        2,
        ge=0,
        le=MAX_ORDER,
        description="Order of the zero-point polynomial in pixel coordinates (0: one constant "
        "zero point). Lowered automatically, with a warning, when there are too few stars.",
    )
    calib_color_term: bool = Field(
        True,
        description="Fit a colour term C in m_cat = m_inst + ZP(x, y) + C·colour (the colour is "
        "chosen by the calibration band: g−r for gri, r−i for zy, B−V for UBVRI ...).",
    )
    calib_fixed_color_term: float | None = Field(
        None,
        ge=-5,
        le=5,
        description="Use this colour term instead of fitting one (e.g. a known instrument "
        "value); empty to fit it.",
    )
    calib_max_scatter: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Upper bound (mag) of the intrinsic scatter fitted as a free parameter; "
        "scatter beyond it rescales the errors instead.",
    )
    calib_match_radius: float = Field(
        0.5,
        gt=0,
        le=5,
        description="Objects and catalogue stars closer than this many FWHM are paired.",
    )
    calib_accept_flags: int = Field(
        int(ObjectFlag.DEBLENDED),
        ge=0,
        description="Object flag bits still accepted for calibration stars (default 0x002, "
        "deblended); objects with any other flag are left out of the fit.",
    )
    calib_isolation_radius: float = Field(
        2.0,
        ge=0,
        le=20,
        description="Catalogue stars with a neighbour closer than this many FWHM (and not "
        "much fainter, see calib_isolation_dmag) are left out as probable blends.",
    )
    calib_isolation_dmag: float = Field(
        3.0,
        ge=0,
        le=10,
        description="A neighbour counts for the isolation test unless it is more than this "
        "many magnitudes fainter.",
    )
    calib_clip_sigma: float = Field(
        4.0,
        ge=2,
        le=20,
        description="Stars whose residual exceeds this many (rescaled) errors are rejected "
        "as outliers, iteratively.",
    )
    calib_stars_per_parameter: float = Field(
        3.0,
        ge=1,
        le=20,
        description="Stars needed per model parameter; with fewer the polynomial order is "
        "lowered (and then the colour term dropped), with a warning.",
    )
    calib_diagnose_color: bool = Field(
        False,
        description="Always refit with every band of the catalogue to find the one with the "
        "smallest colour term (runs anyway when the colour term or scatter is large).",
    )
    calib_color_term_limit: float = Field(
        0.5,
        gt=0,
        le=10,
        description="|colour term| above which the filter is suspect: diagnostics run and a "
        "warning suggests the best-matching band.",
    )
    calib_scatter_limit: float = Field(
        0.1,
        gt=0,
        le=5,
        description="Scatter (mag) of the calibration stars beyond their errors above which "
        "the filter or catalogue is suspect (diagnostics run, with a warning).",
    )
    calib_unknown_color: Literal["median", "zero"] = Field(
        "median",
        description="Colour assumed for objects without a catalogue colour (new objects, "
        "targets, the detection limit): the median colour of the calibration stars, or 0.",
    )
    calib_permutations: int = Field(
        1000,
        ge=100,
        le=100_000,
        description="Random shuffles in the test that instrumental and catalogue magnitudes "
        "correlate (a failed test points to a wrong astrometric solution).",
    )
    calib_sanity_p_value: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="Warn that the astrometry is probably wrong when the correlation test "
        "p-value exceeds this.",
    )
