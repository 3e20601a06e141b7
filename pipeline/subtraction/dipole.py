"""Reject candidates that a small shift and rescaling of the convolved template explains.

Misregistration and PSF-model errors leave dipoles and rings at every bright star;
a real new source does not go away when the template is moved by a fraction of a pixel
or its flux scaled by a few tens of per cent. Around each candidate we fit the science
stamp with the convolved template shifted by (dx, dy) (|d| ≤ ``max_shift`` px) and
scaled by s (1/``max_scale`` ≤ s ≤ ``max_scale``), within ``inner`` pixels, and compare
the χ² with the unadjusted one. The candidate is an artefact when the adjustment
leaves residuals consistent with noise (χ² p-value above ``p_value``) or cuts χ² by
more than ``chi2_drop`` times.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, optimize, stats

MARGIN = 3  # extra pixels cut around the fit region so shifted pixels come from real data


@dataclass
class DipoleTest:
    """Outcome of the adjustment test for one candidate."""

    chi2_initial: float
    chi2_adjusted: float
    dof: int
    p_value: float
    dx: float
    dy: float
    scale: float
    rejected: bool


def adjust_candidate(
    image: np.ndarray,
    convolved: np.ndarray,
    noise: np.ndarray,
    bad: np.ndarray,
    x: float,
    y: float,
    inner: float,
    max_shift: float = 1.0,
    max_scale: float = 1.3,
    p_value: float = 0.01,
    chi2_drop: float = 3.0,
) -> DipoleTest:
    """Fit shift and scale of ``convolved`` to ``image`` around (x, y) (see module doc)."""
    half = int(np.ceil(inner)) + MARGIN
    ix, iy = round(x), round(y)
    ny, nx = image.shape
    y0, y1 = max(iy - half, 0), min(iy + half + 1, ny)
    x0, x1 = max(ix - half, 0), min(ix + half + 1, nx)
    sci = image[y0:y1, x0:x1]
    tpl = convolved[y0:y1, x0:x1]
    sigma = noise[y0:y1, x0:x1]
    yy, xx = np.mgrid[y0:y1, x0:x1]
    use = (np.hypot(xx - x, yy - y) <= inner) & ~bad[y0:y1, x0:x1] & (sigma > 0)
    n_use = int(use.sum())
    if n_use < 8:
        return DipoleTest(np.nan, np.nan, 0, np.nan, 0.0, 0.0, 1.0, False)

    def residual(params):
        dx, dy, scale = params
        moved = ndimage.shift(tpl, (dy, dx), order=3, mode="nearest")
        return ((sci - scale * moved) / sigma)[use]

    chi2_0 = float(np.sum(residual((0.0, 0.0, 1.0)) ** 2))
    fit = optimize.least_squares(
        residual,
        x0=(0.0, 0.0, 1.0),
        bounds=((-max_shift, -max_shift, 1 / max_scale), (max_shift, max_shift, max_scale)),
        diff_step=1e-3,
    )
    chi2 = float(np.sum(fit.fun**2))
    dof = max(n_use - 3, 1)
    p = float(stats.chi2.sf(chi2, dof))
    rejected = bool(p > p_value or chi2 * chi2_drop < chi2_0)
    dx, dy, scale = (float(v) for v in fit.x)
    return DipoleTest(chi2_0, chi2, dof, p, dx, dy, scale, rejected)
