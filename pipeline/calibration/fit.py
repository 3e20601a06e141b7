"""Robust weighted fit of m_cat − m_inst = ZP(x, y) + C·colour.

Each star's error is σ_i² = magerr² + e_cat² + (C·e_colour)². The fit iterates:

1. weighted least squares with weights 1 / (k²(σ_i² + s²));
2. the intrinsic scatter s: the value in [0, s_max] for which χ²/dof = 1 (it absorbs
   unmodelled star-to-star errors, e.g. flat-field structure), found by root
   finding since χ²(s) falls monotonically;
3. the error scale k = sqrt(χ²/dof) when even s_max leaves χ²/dof > 1 (the quoted
   errors are too small), else 1;
4. outlier rejection at ``clip_sigma`` errors, the errors rescaled by a robust
   (median absolute deviation) factor so that gross outliers cannot widen the
   clipping window before they are gone; rejected stars may come back.

It stops when the set of stars and s no longer change. The parameter covariance is
(AᵀWA)⁻¹ with the final weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import brentq

from pipeline.calibration.model import PixelFrame, design_matrix

MAX_ITERATIONS = 30
ERROR_FLOOR = 1e-4  # mag; keeps weights finite for stars quoted with zero error
SCATTER_SEARCH_MAX = 10.0  # mag; upper end of the search for the uncapped scatter
MAD_TO_SIGMA = 1.4826


@dataclass
class FitOutput:
    """Result of one robust fit (arrays are per input star).

    Attributes
    ----------
    order : int
        Polynomial order fitted.
    parameters, covariance : numpy.ndarray
        Polynomial coefficients (then C if fitted) and their covariance.
    color_fitted : bool
        Whether the last parameter is the colour term.
    color_term : float
        Fitted C, or the fixed value, or 0.
    intrinsic_scatter : float
        s, within [0, s_max].
    scatter_uncapped : float
        The scatter that would make χ²/dof = 1 without the cap (a measure of how
        well the model fits: large for a wrong filter or catalogue).
    error_scale : float
        k ≥ 1.
    chi2_dof : float
        χ²/dof with the final s and k = 1.
    used : numpy.ndarray of bool
        Stars kept after outlier rejection.
    model : numpy.ndarray
        Model value of m_cat − m_inst for every star (fixed colour term included).
    residual : numpy.ndarray
        ``delta_mag - model``.
    total_error : numpy.ndarray
        k·sqrt(σ_i² + s²).
    n_iterations : int
    """

    order: int
    parameters: NDArray
    covariance: NDArray
    color_fitted: bool
    color_term: float
    intrinsic_scatter: float
    scatter_uncapped: float
    error_scale: float
    chi2_dof: float
    used: NDArray
    model: NDArray
    residual: NDArray
    total_error: NDArray
    n_iterations: int

    @property
    def n_used(self) -> int:
        return int(self.used.sum())


def weighted_least_squares(
    design: NDArray, target: NDArray, weight: NDArray
) -> tuple[NDArray, NDArray]:
    """Parameters and their covariance (AᵀWA)⁻¹ of a weighted linear fit."""
    root = np.sqrt(weight)
    solution, *_ = np.linalg.lstsq(design * root[:, None], target * root, rcond=None)
    normal = design.T @ (design * weight[:, None])
    return solution, np.linalg.pinv(normal)


def _chi2(residual: NDArray, variance: NDArray, scatter: float) -> float:
    return float(np.sum(residual**2 / (variance + scatter**2)))


def solve_scatter(residual: NDArray, variance: NDArray, dof: int, upper: float) -> float:
    """The s in [0, upper] with χ²(s)/dof = 1 (0 if already below, upper if never reached)."""
    dof = max(dof, 1)
    if _chi2(residual, variance, 0.0) <= dof:
        return 0.0
    if upper <= 0 or _chi2(residual, variance, upper) >= dof:
        return float(upper)
    return float(brentq(lambda s: _chi2(residual, variance, s) - dof, 0.0, upper, xtol=1e-6))


def fit_zero_point(
    frame: PixelFrame,
    x: NDArray,
    y: NDArray,
    delta_mag: NDArray,
    error: NDArray,
    order: int,
    *,
    color: NDArray | None = None,
    color_error: NDArray | None = None,
    fit_color: bool = True,
    fixed_color_term: float | None = None,
    max_scatter: float = 0.01,
    clip_sigma: float = 4.0,
) -> FitOutput:
    """Robust fit of ``delta_mag = m_cat - m_inst`` by ZP(x, y) [+ C·colour].

    Parameters
    ----------
    frame : PixelFrame
        Coordinate normalisation of the image.
    x, y : numpy.ndarray
        0-based pixel positions of the calibration stars.
    delta_mag, error : numpy.ndarray
        m_cat − m_inst and its error (measurement and catalogue in quadrature).
    order : int
        Polynomial order of ZP.
    color, color_error : numpy.ndarray, optional
        Catalogue colour of each star and its error.
    fit_color : bool
        Fit C (needs ``color``); ignored when ``fixed_color_term`` is given.
    fixed_color_term : float, optional
        Subtract this C·colour instead of fitting C.
    max_scatter : float
        Cap of the intrinsic scatter, mag.
    clip_sigma : float
        Rejection threshold in (robustly rescaled) errors.

    Returns
    -------
    FitOutput

    Raises
    ------
    ValueError
        If fewer stars than parameters are usable.
    """
    delta_mag = np.asarray(delta_mag, float)
    n = delta_mag.size
    use_color = color is not None and fixed_color_term is None and fit_color
    fixed = 0.0 if fixed_color_term is None or color is None else float(fixed_color_term)
    color = np.zeros(n) if color is None else np.asarray(color, float)
    color_error = np.zeros(n) if color_error is None else np.nan_to_num(color_error, nan=0.0)
    target = delta_mag - fixed * color
    design = design_matrix(frame, x, y, order, color if use_color else None)
    base_variance = np.maximum(np.asarray(error, float), ERROR_FLOOR) ** 2
    finite = np.isfinite(target) & np.isfinite(base_variance) & np.isfinite(design).all(axis=1)
    n_par = design.shape[1]
    if finite.sum() < n_par:
        raise ValueError(
            f"only {int(finite.sum())} usable calibration stars for {n_par} parameters"
        )

    keep = finite.copy()
    scatter, term = max_scatter, fixed
    iterations = 0
    while iterations < MAX_ITERATIONS:
        iterations += 1
        variance = base_variance + (term * color_error) ** 2
        params, _ = weighted_least_squares(
            design[keep], target[keep], 1.0 / (variance[keep] + scatter**2)
        )
        if use_color:
            term = float(params[-1])
        residual = target - design @ params
        dof = int(keep.sum()) - n_par
        new_scatter = solve_scatter(residual[keep], variance[keep], dof, max_scatter)
        normalised = residual / np.sqrt(variance + new_scatter**2)
        robust = max(1.0, MAD_TO_SIGMA * float(np.median(np.abs(normalised[keep]))))
        new_keep = finite & (np.abs(normalised) <= clip_sigma * robust)
        if new_keep.sum() < n_par:  # clipping must never leave the fit underdetermined
            new_keep = keep
        settled = np.array_equal(new_keep, keep) and abs(new_scatter - scatter) < 1e-6
        keep, scatter = new_keep, new_scatter
        if settled:
            break

    variance = base_variance + (term * color_error) ** 2
    params, _ = weighted_least_squares(
        design[keep], target[keep], 1.0 / (variance[keep] + scatter**2)
    )
    residual = target - design @ params
    dof = max(int(keep.sum()) - n_par, 1)
    chi2 = _chi2(residual[keep], variance[keep], scatter)
    scale = float(np.sqrt(max(1.0, chi2 / dof)))
    weight = 1.0 / (scale**2 * (variance[keep] + scatter**2))
    _, covariance = weighted_least_squares(design[keep], target[keep], weight)
    uncapped = solve_scatter(residual[keep], variance[keep], dof, SCATTER_SEARCH_MAX)
    model = design @ params + fixed * color
    return FitOutput(
        order=order,
        parameters=params,
        covariance=covariance,
        color_fitted=use_color,
        color_term=float(params[-1]) if use_color else fixed,
        intrinsic_scatter=float(scatter),
        scatter_uncapped=float(uncapped),
        error_scale=scale,
        chi2_dof=chi2 / dof,
        used=keep,
        model=model,
        residual=delta_mag - model,
        total_error=scale * np.sqrt(variance + scatter**2),
        n_iterations=iterations,
    )
