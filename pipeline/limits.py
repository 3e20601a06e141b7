"""Detection limit of an image: the magnitude of the faintest source measured at a given S/N.

Global limit. The signal-to-noise ratio of aperture photometry with a constant
background noise σ_bg (per aperture) and source Poisson noise is
S/N = F / sqrt(σ_bg² + F/g); with F ∝ 10^(−0.4 m) this is

    1 / (S/N)² = a · 10^(0.8 (m − m0)) + b · 10^(0.4 (m − m0))

(a: background, b: Poisson term; ``m0`` only keeps the numbers near 1). The two
coefficients are fitted (non-negative, in log S/N, robustly and with iterative
outlier rejection) to the S/N of the measured objects against their
calibrated magnitudes; the limit at S/N = s is where the model reaches s. As the
zero point varies over the field, the points scatter about the curve: the global
limit is an average over the image.

Local limits. For every object the background-only aperture error ``bg_fluxerr``
gives m_lim = −2.5 log10(s · bg_fluxerr) + ZP(x, y) + C·colour: the flux detectable
at S/N = s above the local noise. It ignores the source's own Poisson noise and so
comes out slightly fainter than the global limit (the reference system does the same).

Magnitudes are those of a source of one colour for all objects: ``color`` if given,
else the calibration's colour for unknown objects (see
:attr:`pipeline.calibration.PhotometricModel.default_color`). Without a calibration
the limits are instrumental (ZP = 0), with a warning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import least_squares, nnls

from pipeline.calibration.match import project_catalog
from pipeline.calibration.result import CalibrationResult
from pipeline.flags import ObjectFlag

SN_LEVELS = (3.0, 5.0, 10.0)  # limits always reported, besides the configured S/N
MIN_OBJECTS = 5  # fewer objects cannot constrain the two noise terms
CLIP_SIGMA = 3.0
MAX_ITERATIONS = 10
MAD_TO_SIGMA = 1.4826
ROBUST_SCALE_DEX = 0.02  # deviations beyond ~5 % in S/N count less in the first fit
EXTRAPOLATION_MAG = 1.0  # warn when a limit is this much fainter than every object used
MAG_LIMIT_COLUMN = "mag_limit"  # per-object local limit column


@dataclass(frozen=True)
class NoiseModel:
    """S/N as a function of magnitude: 1/(S/N)² = a·10^(0.8(m−m0)) + b·10^(0.4(m−m0)).

    Attributes
    ----------
    a, b : float
        Background and source-Poisson coefficients (both ≥ 0).
    m0 : float
        Reference magnitude of the normalisation.
    """

    a: float
    b: float
    m0: float

    def sn(self, mag: ArrayLike) -> NDArray:
        """Model S/N at the given magnitudes."""
        t = 10.0 ** (0.4 * (np.asarray(mag, float) - self.m0))
        with np.errstate(divide="ignore"):
            return 1.0 / np.sqrt(self.a * t * t + self.b * t)

    def limit(self, sn: float) -> float:
        """Magnitude at which the model S/N equals ``sn``.

        Raises
        ------
        ValueError
            If ``sn`` is not positive or the model is degenerate (a = b = 0).
        """
        if not sn > 0:
            raise ValueError(f"the S/N of a detection limit must be positive, not {sn}")
        target = 1.0 / sn**2
        if self.a > 0:
            t = (-self.b + np.sqrt(self.b**2 + 4.0 * self.a * target)) / (2.0 * self.a)
        elif self.b > 0:
            t = target / self.b
        else:
            raise ValueError("the noise model is degenerate (no noise term was fitted)")
        return float(self.m0 + 2.5 * np.log10(t))

    def to_dict(self) -> dict[str, float]:
        return {"a": float(self.a), "b": float(self.b), "m0": float(self.m0)}


def _log_deviation(params: NDArray, t: NDArray, log_sn: NDArray) -> NDArray:
    """log10 of model S/N minus log10 of measured S/N."""
    a, b = params
    return -0.5 * np.log10(np.maximum(a * t * t + b * t, 1e-300)) - log_sn


def _linear_start(t: NDArray, sn: NDArray) -> NDArray:
    """Non-negative least squares on relative residuals: a starting point for the fit."""
    weight = sn**2
    design = np.column_stack([t**2 * weight, t * weight])
    (a, b), _ = nnls(design, np.ones(t.size))
    scale = max(a, b, 1e-12)
    # both terms strictly positive so that the bounded fit can move either of them
    return np.array([max(a, 1e-6 * scale), max(b, 1e-6 * scale)])


def fit_noise_model(mag: ArrayLike, sn: ArrayLike) -> tuple[NoiseModel, NDArray]:
    """Fit :class:`NoiseModel` to objects' magnitudes and S/N, rejecting outliers.

    The fit minimises the deviations in log S/N with a and b kept ≥ 0: first with a
    soft-L1 loss (so that blends or artefacts far off the curve cannot pull it), then
    by least squares on the objects within :data:`CLIP_SIGMA` robust deviations of
    the curve, iteratively.

    Returns
    -------
    model : NoiseModel
    used : numpy.ndarray of bool
        Objects kept.

    Raises
    ------
    ValueError
        With fewer than :data:`MIN_OBJECTS` objects of finite magnitude and positive S/N.
    """
    mag = np.asarray(mag, float)
    sn = np.asarray(sn, float)
    good = np.isfinite(mag) & np.isfinite(sn) & (sn > 0)
    if good.sum() < MIN_OBJECTS:
        raise ValueError(
            f"only {int(good.sum())} objects with a magnitude and a positive S/N: at least "
            f"{MIN_OBJECTS} are needed to fit the noise model"
        )
    m0 = float(np.median(mag[good]))
    t = np.where(good, 10.0 ** (0.4 * (mag - m0)), np.nan)
    log_sn = np.where(good, np.log10(np.where(good, sn, 1.0)), np.nan)
    params = _linear_start(t[good], sn[good])
    fit = least_squares(
        _log_deviation,
        params,
        args=(t[good], log_sn[good]),
        bounds=(0.0, np.inf),
        loss="soft_l1",
        f_scale=ROBUST_SCALE_DEX,
    )
    params = fit.x
    used = good.copy()
    for _ in range(MAX_ITERATIONS):
        deviation = np.full(mag.size, np.inf)
        deviation[good] = _log_deviation(params, t[good], log_sn[good])
        spread = MAD_TO_SIGMA * float(np.median(np.abs(deviation[used])))
        new_used = good & (np.abs(deviation) <= CLIP_SIGMA * max(spread, 1e-4))
        if new_used.sum() < MIN_OBJECTS or np.array_equal(new_used, used):
            break
        used = new_used
        params = least_squares(
            _log_deviation, params, args=(t[used], log_sn[used]), bounds=(0.0, np.inf)
        ).x
    return NoiseModel(float(params[0]), float(params[1]), m0), used


@dataclass
class DetectionLimits:
    """Limits of one image.

    Attributes
    ----------
    noise_model : NoiseModel
        The fitted S/N curve.
    limits : dict
        S/N level → limiting magnitude (3, 5, 10 and the configured S/N).
    sn : float
        The configured S/N; :attr:`limit` is the limit there.
    local_limit_median : float or None
        Median of the per-object background-only limits at ``sn``.
    color : float
        Colour of the source the magnitudes refer to.
    color_name : str or None
        Its name (``"g-r"``), None without a colour term.
    calibrated : bool
        False when the magnitudes are instrumental (no calibration given).
    description : str
        What the magnitudes are.
    n_objects, n_used : int
        Objects offered to and kept by the fit.
    magnitude_range : (float, float)
        Magnitudes of the objects used.
    warnings : list of str
    """

    noise_model: NoiseModel
    limits: dict[float, float]
    sn: float
    local_limit_median: float | None
    color: float
    color_name: str | None
    calibrated: bool
    description: str
    n_objects: int
    n_used: int
    magnitude_range: tuple[float, float]
    warnings: list[str] = field(default_factory=list)

    @property
    def limit(self) -> float:
        """Limiting magnitude at the configured S/N."""
        return self.limits[self.sn]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready numbers (S/N levels as strings, e.g. ``"5"``)."""
        return {
            "limit": round(self.limit, 4),
            "sn": float(self.sn),
            "limits": {f"{level:g}": round(value, 4) for level, value in self.limits.items()},
            "local_limit_median": (
                None if self.local_limit_median is None else round(self.local_limit_median, 4)
            ),
            "noise_model": self.noise_model.to_dict(),
            "color": float(self.color),
            "color_name": self.color_name,
            "calibrated": self.calibrated,
            "description": self.description,
            "n_objects": int(self.n_objects),
            "n_used": int(self.n_used),
            "magnitude_range": [round(float(v), 4) for v in self.magnitude_range],
            "warnings": list(self.warnings),
        }


def _column(table: Table, name: str) -> NDArray:
    column = table[name]
    return np.where(np.ma.getmaskarray(column), np.nan, np.ma.getdata(column).astype(float))


def _reference_color(calibration: CalibrationResult | None, color: float | None) -> float:
    if color is not None:
        return float(color)
    return calibration.model.default_color if calibration is not None else 0.0


def calibrated_magnitudes(
    objects: Table,
    calibration: CalibrationResult | None,
    color: float | None = None,
    mag_column: str = "mag",
) -> NDArray:
    """Magnitudes of the objects as a source of colour ``color`` (instrumental without
    a calibration)."""
    mag = _column(objects, mag_column)
    if calibration is None:
        return mag
    x, y = _column(objects, "x"), _column(objects, "y")
    calibrated, _ = calibration.magnitude(mag, x, y, color=_reference_color(calibration, color))
    return calibrated


def local_limits(
    objects: Table,
    calibration: CalibrationResult | None = None,
    sn: float = 5.0,
    color: float | None = None,
) -> NDArray:
    """Per-object limits from the background noise in the aperture.

    ``−2.5 log10(sn · bg_fluxerr) + ZP(x, y) + C·colour``; NaN where ``bg_fluxerr``
    is missing or not positive.

    Raises
    ------
    ValueError
        If the table has no ``bg_fluxerr`` column or ``sn`` is not positive.
    """
    if not sn > 0:
        raise ValueError(f"the S/N of a detection limit must be positive, not {sn}")
    if "bg_fluxerr" not in objects.colnames:
        raise ValueError(
            "the objects table has no bg_fluxerr column (background-only aperture error): "
            "measure the objects with pipeline.measurement first"
        )
    noise = _column(objects, "bg_fluxerr")
    with np.errstate(divide="ignore", invalid="ignore"):
        inst = np.where(noise > 0, -2.5 * np.log10(sn * noise), np.nan)
    if calibration is None:
        return inst
    x, y = _column(objects, "x"), _column(objects, "y")
    limits, _ = calibration.magnitude(inst, x, y, color=_reference_color(calibration, color))
    return limits


def _describe(calibration: CalibrationResult | None, color: float) -> tuple[str, str | None]:
    if calibration is None:
        return "instrumental magnitudes (no calibration: ZP = 0)", None
    model = calibration.model
    text = model.system_description()
    if model.color_name:
        text += f", for a source of {model.color_name} = {color:.3f}"
    return text, model.color_name


def detection_limits(
    objects: Table,
    calibration: CalibrationResult | None = None,
    *,
    sn: float = 5.0,
    levels: Sequence[float] = SN_LEVELS,
    color: float | None = None,
    accept_flags: int = int(ObjectFlag.DEBLENDED),
) -> DetectionLimits:
    """Fit the S/N curve of the measured objects and read off the detection limits.

    Parameters
    ----------
    objects : astropy.table.Table
        Measured objects (``x``, ``y``, ``flux``, ``fluxerr``, ``mag``, ``flags``;
        ``bg_fluxerr`` for the local limits).
    calibration : CalibrationResult, optional
        Photometric calibration; without it the limits are instrumental.
    sn : float
        The configured S/N (the photometry step's ``sn``); reported as :attr:`limit`.
    levels : sequence of float
        Other S/N levels to report (3, 5, 10 by default).
    color : float, optional
        Colour of the source the limits refer to; default the calibration's colour for
        objects of unknown colour.
    accept_flags : int
        Flag bits still accepted for objects in the fit.

    Returns
    -------
    DetectionLimits

    Raises
    ------
    ValueError
        If columns are missing or too few objects are usable.
    """
    missing = [c for c in ("x", "y", "flux", "fluxerr", "mag") if c not in objects.colnames]
    if missing:
        raise ValueError(f"the objects table lacks {', '.join(missing)}: measure the objects first")
    if not sn > 0:
        raise ValueError(f"the S/N of a detection limit must be positive, not {sn}")
    warn: list[str] = []
    if calibration is None:
        warn.append("no photometric calibration: the limits are instrumental magnitudes")
    ref_color = _reference_color(calibration, color)
    mag = calibrated_magnitudes(objects, calibration, ref_color)
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = _column(objects, "flux") / _column(objects, "fluxerr")
    flags = np.asarray(objects["flags"], np.int64) if "flags" in objects.colnames else 0
    clean = (np.broadcast_to(flags, (len(objects),)) & ~int(accept_flags)) == 0
    offered = clean & np.isfinite(mag) & np.isfinite(snr) & (snr > 0)
    model, used_part = fit_noise_model(mag[offered], snr[offered])
    used_mag = mag[offered][used_part]
    levels_all = sorted({float(v) for v in (*levels, sn)})
    limits = {level: model.limit(level) for level in levels_all}
    faintest = float(used_mag.max())
    for level, value in limits.items():
        if value > faintest + EXTRAPOLATION_MAG:
            warn.append(
                f"the S/N = {level:g} limit {value:.2f} lies more than {EXTRAPOLATION_MAG:g} "
                f"mag beyond the faintest object used ({faintest:.2f}): it is extrapolated"
            )
    local_median = None
    if "bg_fluxerr" in objects.colnames:
        local = local_limits(objects, calibration, sn, ref_color)
        if np.isfinite(local).any():
            local_median = float(np.nanmedian(local))
    else:
        warn.append("no bg_fluxerr column: local (background-only) limits were not computed")
    description, color_name = _describe(calibration, ref_color)
    return DetectionLimits(
        noise_model=model,
        limits=limits,
        sn=float(sn),
        local_limit_median=local_median,
        color=ref_color,
        color_name=color_name,
        calibrated=calibration is not None,
        description=description,
        n_objects=int(offered.sum()),
        n_used=int(used_part.sum()),
        magnitude_range=(float(used_mag.min()), faintest),
        warnings=warn,
    )


def add_local_limits(
    objects: Table,
    calibration: CalibrationResult | None = None,
    sn: float = 5.0,
    color: float | None = None,
) -> Table:
    """Add the :data:`MAG_LIMIT_COLUMN` column (per-object local limit) in place."""
    objects[MAG_LIMIT_COLUMN] = local_limits(objects, calibration, sn, color)
    return objects


def catalog_magnitudes_in_image(
    catalog: Table, mag_column: str, wcs: WCS, shape: tuple[int, int]
) -> NDArray:
    """Finite catalogue magnitudes of the stars that fall on the image."""
    if mag_column not in catalog.colnames:
        raise ValueError(f"the catalogue has no {mag_column!r} column")
    x, y = project_catalog(catalog, wcs)
    ny, nx = shape
    inside = (x > -0.5) & (x < nx - 0.5) & (y > -0.5) & (y < ny - 0.5)
    mag = _column(catalog, mag_column)[inside]
    return mag[np.isfinite(mag)]
