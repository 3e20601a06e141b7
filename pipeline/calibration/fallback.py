"""Fitting with fallbacks: lower the polynomial order, then drop the colour term.

The model needs ``calib_stars_per_parameter`` stars per free parameter (3 by
default). With fewer, the zero-point order is lowered; when even a constant zero
point with a colour term is too much, the colour term is dropped; below
:data:`MIN_STARS` stars nothing is fitted. A polynomial that the stars constrain only
over part of the image (its error over the image exceeds :data:`MAX_ZP_MAP_ERROR`)
is also lowered. Each fallback adds a warning.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from pipeline.calibration.columns import CalibrationColumns
from pipeline.calibration.config import CalibrationConfig
from pipeline.calibration.errors import CalibrationError
from pipeline.calibration.fit import FitOutput, fit_zero_point
from pipeline.calibration.model import PixelFrame, design_matrix, n_parameters
from pipeline.calibration.stars import CalibrationPairs

MIN_STARS = 3  # below this no zero point is trusted, whatever the order
MIN_COLOR_SPREAD = 0.05  # mag; a narrower colour range cannot separate C from ZP
MAX_ZP_MAP_ERROR = 0.05  # mag; median error of ZP(x, y) over the image above which
# the polynomial is extrapolating (stars in one corner) and the order is lowered
ZP_GRID_NODES = 32  # ZP map statistics are taken on a grid of this many nodes a side


def _choose_order(n: int, wanted: int, color: bool, per_parameter: float) -> int | None:
    """Highest order ≤ ``wanted`` that ``n`` stars support, or None."""
    for order in range(wanted, -1, -1):
        if n >= per_parameter * n_parameters(order, color):
            return order
    return None


def median_map_error(frame: PixelFrame, order: int, covariance: NDArray) -> float:
    """Median over an image grid of the 1σ error of the fitted ZP polynomial."""
    grid_x, grid_y = frame.grid(max(frame.nx, frame.ny) / ZP_GRID_NODES)
    design = design_matrix(frame, grid_x.ravel(), grid_y.ravel(), order)
    block = covariance[: design.shape[1], : design.shape[1]]
    variance = np.einsum("ij,jk,ik->i", design, block, design)
    return float(np.sqrt(max(np.median(variance), 0.0)))


def _color_choice(
    pairs: CalibrationPairs,
    columns: CalibrationColumns,
    config: CalibrationConfig,
    warn: list[str],
) -> tuple[bool, bool]:
    """(use colours, fit C): colours are dropped, with a warning, when they cannot work."""
    fixed = config.calib_fixed_color_term
    if pairs.color is None or not (config.calib_color_term or fixed is not None):
        return False, False
    with_color = pairs.candidates(need_color=True)
    n = int(with_color.sum())
    name = columns.color_name
    if fixed is not None:
        if n >= MIN_STARS:
            return True, False
        warn.append(
            f"only {n} calibration stars have a {name} colour: the fixed colour term "
            f"{fixed:g} cannot be applied; calibrated without a colour term (C = 0)"
        )
        return False, False
    need = int(np.ceil(config.calib_stars_per_parameter * n_parameters(0, True)))
    if n < need:
        warn.append(
            f"only {n} calibration stars with a {name} colour (a colour term needs at least "
            f"{need}): no colour term was fitted (C = 0); magnitudes are in the instrumental "
            f"passband tied to {columns.band} at zero colour"
        )
        return False, False
    spread = float(np.std(pairs.color[with_color]))
    if spread < MIN_COLOR_SPREAD:
        warn.append(
            f"the {n} calibration stars span almost no {name} colour (standard deviation "
            f"{spread:.3f} mag): the colour term cannot be told from the zero point and was "
            "not fitted (C = 0)"
        )
        return False, False
    return True, True


def fit_with_fallbacks(
    frame: PixelFrame,
    pairs: CalibrationPairs,
    columns: CalibrationColumns,
    config: CalibrationConfig,
    warn: list[str],
) -> tuple[FitOutput, NDArray, bool]:
    """Fit the model, falling back to simpler ones as the stars demand.

    Returns
    -------
    fit : FitOutput
    candidates : numpy.ndarray of bool
        The pairs the fit was given (the arrays of ``fit`` follow them).
    use_color : bool
        Whether colours entered the model (fitted or fixed colour term).

    Raises
    ------
    CalibrationError
        Fewer than :data:`MIN_STARS` usable stars.
    """
    per = config.calib_stars_per_parameter
    use_color, fit_color = _color_choice(pairs, columns, config, warn)
    candidates = pairs.candidates(need_color=use_color)
    n = int(candidates.sum())
    if n < MIN_STARS:
        raise CalibrationError(
            f"only {n} usable calibration star(s) (at least {MIN_STARS} are needed): use a "
            "deeper or denser reference catalogue, a longer exposure, or accept more object "
            "flags (calib_accept_flags)"
        )
    requested = config.calib_order
    order = _choose_order(n, requested, fit_color, per)
    reasons = []
    if order is None:
        order = 0
        warn.append(
            f"only {n} calibration stars: a single zero point is fitted from fewer than the "
            f"{per:g} stars per parameter asked for; treat it with care"
        )
    elif order < requested:
        need = int(np.ceil(per * n_parameters(requested, fit_color)))
        reasons.append(f"only {n} calibration stars (order {requested} needs {need})")
    while True:
        fit = fit_zero_point(
            frame,
            pairs.x[candidates],
            pairs.y[candidates],
            pairs.mag_cat[candidates] - pairs.mag_inst[candidates],
            np.hypot(pairs.magerr[candidates], pairs.err_cat[candidates]),
            order,
            color=pairs.color[candidates] if use_color else None,
            color_error=pairs.color_err[candidates] if use_color else None,
            fit_color=fit_color,
            fixed_color_term=config.calib_fixed_color_term if use_color else None,
            max_scatter=config.calib_max_scatter,
            clip_sigma=config.calib_clip_sigma,
        )
        if order == 0:
            break
        if fit.n_used < per * n_parameters(order, fit_color):
            reasons.append(f"outlier rejection left {fit.n_used} stars for order {order}")
        else:
            spread = median_map_error(frame, order, fit.covariance)
            if spread <= MAX_ZP_MAP_ERROR:
                break
            reasons.append(
                f"the stars cover the image too unevenly for order {order} (its zero point "
                f"would be uncertain by ±{spread:.2f} mag over the image)"
            )
        order -= 1
    if order < requested:
        warn.append(
            f"the zero-point polynomial order was lowered from {requested} to {order}: "
            + "; ".join(reasons)
        )
    return fit, candidates, use_color
