"""Reject candidates that a small shift and rescaling of the convolved template explains.

Misregistration and PSF-model errors leave dipoles and rings at every bright star; a
real new source does not go away when the template is moved by a fraction of a pixel
or its flux scaled by a few tens of per cent. Around each candidate (within ``inner``
pixels) we fit the science stamp S with two explanations, T being the convolved template
and P the science PSF centred on the candidate:

* artefact (A):    S ≈ s T(x − d), |d| ≤ ``max_shift`` px, 1/``max_scale`` ≤ s ≤ ``max_scale``;
* new source (B):  S ≈ s₀ T(x − d) + a P, the same shift freedom, the template at the flux
  scale s₀ the stars around the candidate need, and a point source of free amplitude a.

The adjustment *explains* the candidate, as specified, when it divides χ² by more than
``chi2_drop`` or leaves residuals consistent with the noise (p-value above ``p_value``).
Two things keep it from explaining away a real source on a galaxy:

* The flux scale is what the image pair needs, not whatever swallows the candidate.
  The scale the template needs at bright isolated stars (:func:`measure_star_adjustments`)
  measures the flux-scale errors that make artefacts (zero-point and colour-term
  differences, PSF wings); near each candidate their median and robust scatter make a
  Gaussian prior on s within the hard bounds. A compact host can otherwise be brightened
  by 20-30 % to swallow a transient, where the stars around it need a few per cent. The
  shift gets no prior: stars move individually (proper motions of up to a pixel between
  epochs are common), and with its scale held a host cannot swallow a source by moving.
* A new point source leaves a PSF-shaped residual that no shift or scale of an extended
  host reproduces: a candidate the adjustment explains is still kept when the new-source
  explanation fits better by ``source_sigma``² in χ² (both have three free parameters),
  with an amplitude of the candidate's sign. Its template keeps the stars' scale s₀, so
  it cannot pass off a star that moved as "the star faded and a source appeared beside
  it" (which a free scale would allow).

The drop is weighed by the difference's own noise σ_D (how much of the candidate the
adjustment removes); the p-value and the comparison of the two explanations also count
the subtraction's model error: σ² = σ_D² + (η H)², where H is the curvature of the
convolved template (:func:`curvature`) and η (px²) is measured on the same stars, as the
level that covers most of them (:meth:`StarAdjustments.model_error`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, optimize, stats
from scipy.spatial import cKDTree

MARGIN = 3  # extra pixels cut around the fit region so shifted pixels come from real data
MIN_PIXELS = 8  # fewer usable pixels than this: no test
NEIGHBOURS = 10  # stars describing the adjustment near a candidate
MIN_SCALE_SIGMA = 0.01  # the scale prior is never tighter than 1 %
MAD_TO_SIGMA = 1.4826
MIN_MAP_STARS = 3  # fewer stars than this: no local flux scale
MAP_STEP = 64  # px between the nodes of the local flux-scale map


@dataclass
class Prior:
    """Expected adjustment near a candidate: a starting shift and the scale's prior."""

    dx: float = 0.0
    dy: float = 0.0
    scale: float = 1.0
    sigma_scale: float = np.inf  # inf: flat within the bounds


@dataclass
class StarAdjustments:
    """The adjustment the convolved template needs at bright isolated stars.

    Attributes
    ----------
    x, y : numpy.ndarray
        Star positions (pixels).
    dx, dy, scale : numpy.ndarray
        Best shift and flux scale at each star (flat prior).
    excess : numpy.ndarray
        η² of each star: χ²_A in excess of its degrees of freedom over Σ H²/σ_D².
    """

    x: np.ndarray
    y: np.ndarray
    dx: np.ndarray
    dy: np.ndarray
    scale: np.ndarray
    excess: np.ndarray

    def __len__(self) -> int:
        return len(self.x)

    def model_error(self, quantile: float) -> float:
        """η covering ``quantile`` of the stars (0 without stars)."""
        return float(np.sqrt(np.quantile(self.excess, quantile))) if len(self) else 0.0

    def scale_map(self, shape: tuple[int, int], step: int = MAP_STEP) -> np.ndarray:
        """Median scale of the nearest stars, on a ``step``-pixel grid interpolated to
        every pixel of ``shape``; ones when there are too few stars.

        Local medians rather than a polynomial over the field: a polynomial fitted to a
        few dozen stars swings at the corners, where every star then leaves a residual.
        """
        ny, nx = shape
        if len(self) < MIN_MAP_STARS:
            return np.ones(shape)
        gy, gx = np.mgrid[0 : ny + step : step, 0 : nx + step : step]
        tree = cKDTree(np.column_stack([self.x, self.y]))
        _, idx = tree.query(np.column_stack([gx.ravel(), gy.ravel()]), k=min(NEIGHBOURS, len(self)))
        grid = np.median(self.scale[idx], axis=1).reshape(gx.shape)  # k ≥ 3: idx is 2-D
        yy, xx = np.mgrid[0:ny, 0:nx].astype(float)
        return ndimage.map_coordinates(grid, [yy / step, xx / step], order=1, mode="nearest")

    def relative_to(self, scale_map: np.ndarray) -> StarAdjustments:
        """The same stars seen against a template already multiplied by ``scale_map``."""
        here = scale_map[
            np.clip(np.rint(self.y).astype(int), 0, scale_map.shape[0] - 1),
            np.clip(np.rint(self.x).astype(int), 0, scale_map.shape[1] - 1),
        ]
        return StarAdjustments(self.x, self.y, self.dx, self.dy, self.scale / here, self.excess)

    def prior_at(self, x: float, y: float, exclude: float = 0.0) -> Prior:
        """Median shift and scale, and the scale's robust scatter, of the nearest stars
        farther than ``exclude`` px (so that a star does not vouch for itself)."""
        if len(self) < 3:
            return Prior()
        tree = cKDTree(np.column_stack([self.x, self.y]))
        dist, idx = tree.query([x, y], k=min(NEIGHBOURS + 1, len(self)))
        idx = np.atleast_1d(idx)[np.atleast_1d(dist) > exclude][:NEIGHBOURS]
        if len(idx) < 3:
            return Prior()
        scale = float(np.median(self.scale[idx]))
        spread = MAD_TO_SIGMA * float(np.median(np.abs(self.scale[idx] - scale)))
        return Prior(
            float(np.median(self.dx[idx])),
            float(np.median(self.dy[idx])),
            scale,
            max(spread, MIN_SCALE_SIGMA),
        )


@dataclass
class DipoleTest:
    """Outcome of the adjustment test for one candidate."""

    chi2_initial: float  # unadjusted, difference noise only
    chi2_adjusted: float  # adjusted, difference noise only (the drop)
    chi2_model: float  # adjusted, noise with the model error (the p-value)
    chi2_source: float  # adjusted plus a point source, noise with the model error
    dof: int
    p_value: float
    dx: float
    dy: float
    scale: float
    source_flux: float
    explained: bool  # the adjustment alone explains the candidate (the specified rule)
    rejected: bool


@dataclass
class _Stamp:
    sci: np.ndarray
    tpl: np.ndarray
    weight: np.ndarray  # 1/σ² where used, 0 elsewhere
    use: np.ndarray
    psf: np.ndarray | None  # science PSF centred on the candidate, stamp grid


def _psf_on_stamp(psf: np.ndarray, shape: tuple[int, int], cx: float, cy: float) -> np.ndarray:
    """``psf`` (odd, centred) resampled with its centre at stamp pixel (cx, cy)."""
    half = psf.shape[0] // 2
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float)
    coords = np.array([yy - cy + half, xx - cx + half])
    return ndimage.map_coordinates(psf, coords, order=3, mode="constant", cval=0.0)


def curvature(image: np.ndarray) -> np.ndarray:
    """Size of the second derivatives (Frobenius norm of the Hessian), per pixel.

    A PSF-matching error is, to first order, a small kernel error of zero sum (a flux
    error, fitted as the scale) and zero first moment (a shift, fitted as d); what is
    left acts through the second derivatives of the matched image. So the residuals it
    leaves scale with the curvature of the convolved template: large in star cores,
    small on smooth extended galaxies.
    """
    gy, gx = np.gradient(image)
    gyy, gyx = np.gradient(gy)
    gxy, gxx = np.gradient(gx)
    return np.sqrt(gxx**2 + gyy**2 + gxy**2 + gyx**2)


def _cut(image, convolved, noise, bad, psf, x, y, inner, model_error) -> _Stamp:
    half = int(np.ceil(inner)) + MARGIN
    ix, iy = round(x), round(y)
    ny, nx = image.shape
    y0, y1 = max(iy - half, 0), min(iy + half + 1, ny)
    x0, x1 = max(ix - half, 0), min(ix + half + 1, nx)
    sci = image[y0:y1, x0:x1].astype(float)
    tpl = convolved[y0:y1, x0:x1].astype(float)
    sigma = noise[y0:y1, x0:x1]
    yy, xx = np.mgrid[y0:y1, x0:x1]
    use = (np.hypot(xx - x, yy - y) <= inner) & ~bad[y0:y1, x0:x1] & (sigma > 0)
    variance = sigma.astype(float) ** 2 + (model_error * curvature(tpl)) ** 2
    weight = np.where(use, 1.0 / np.maximum(variance, 1e-30), 0.0)
    source = None if psf is None else _psf_on_stamp(psf, sci.shape, x - x0, y - y0)
    return _Stamp(sci, tpl, weight, use, source)


def _solve(stamp: _Stamp, moved: np.ndarray, lo, hi, prior: Prior, with_source: bool):
    """Best (scale, amplitude) for a shifted template.

    Artefact: the scale by weighted least squares with its Gaussian prior, clipped to
    [lo, hi] (convex in one variable, so clipping is exact). New source: the scale
    fixed at the prior's centre and the point-source amplitude by least squares."""
    w, sci = stamp.weight, stamp.sci
    if with_source:
        scale = float(np.clip(prior.scale, lo, hi))
        p = stamp.psf
        pp = float((w * p * p).sum())
        amplitude = float((w * p * (sci - scale * moved)).sum()) / pp if pp > 0 else 0.0
        return scale, amplitude
    inv = 1.0 / prior.sigma_scale**2 if np.isfinite(prior.sigma_scale) else 0.0
    mm = float((w * moved * moved).sum()) + inv
    ms = float((w * moved * sci).sum()) + inv * prior.scale
    return (float(np.clip(ms / mm, lo, hi)) if mm > 0 else 1.0), 0.0


def _fit(stamp: _Stamp, max_shift, max_scale, prior: Prior, with_source: bool):
    """Shift (bounded, least squares) with the linear terms solved at each shift.

    Returns χ² (with the scale prior's term for the artefact), shift, scale, amplitude."""
    lo, hi = 1.0 / max_scale, max_scale
    root_w = np.sqrt(stamp.weight)[stamp.use]
    prior_w = 0.0 if with_source or not np.isfinite(prior.sigma_scale) else 1 / prior.sigma_scale

    def model(params):
        moved = ndimage.shift(stamp.tpl, (params[1], params[0]), order=3, mode="nearest")
        scale, amplitude = _solve(stamp, moved, lo, hi, prior, with_source)
        out = scale * moved
        if with_source:
            out = out + amplitude * stamp.psf
        return out, scale, amplitude

    def residual(params):
        out, scale, _ = model(params)
        data = root_w * (stamp.sci - out)[stamp.use]
        return np.append(data, prior_w * (scale - prior.scale))

    shift = (0.0, 0.0)
    if max_shift > 0:
        start = np.clip([prior.dx, prior.dy], -max_shift, max_shift)
        bound = (-max_shift, -max_shift), (max_shift, max_shift)
        fit = optimize.least_squares(residual, x0=start, bounds=bound, diff_step=1e-3)
        shift = (float(fit.x[0]), float(fit.x[1]))
    _, scale, amplitude = model(shift)
    return float(np.sum(residual(shift) ** 2)), shift, scale, amplitude


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
    *,
    psf: np.ndarray | None = None,
    sign: float = 1.0,
    model_error: float = 0.0,
    prior: Prior | None = None,
    source_sigma: float = 5.0,
) -> DipoleTest:
    """Is the candidate at (x, y) an artefact of the subtraction? (see module doc)

    Parameters
    ----------
    image, convolved, noise, bad : numpy.ndarray
        Background-subtracted science image, convolved template, 1σ noise of the
        difference and its unusable pixels, on one grid.
    x, y : float
        Candidate position (0-based pixels).
    inner : float
        Radius of the fit region, pixels.
    max_shift, max_scale, p_value, chi2_drop : float
        The adjustment's hard bounds and the rule that says it explains the candidate.
    psf : numpy.ndarray, optional
        Science PSF stamp (odd, centred, unit sum); without it no source term is tried
        and the specified rule alone decides.
    sign : float
        +1 for a brightening, −1 for a fading candidate: the source term must agree.
    model_error : float
        η (px²): η times the template's curvature is added to the noise.
    prior : Prior, optional
        Expected adjustment near the candidate (from stars); none: the fit starts
        unshifted and the scale is flat within the bounds (the new source then sits on
        the unscaled template).
    source_sigma : float
        The new-source explanation must beat the artefact by this squared in χ² to
        keep a candidate the adjustment explains.

    Returns
    -------
    DipoleTest
    """
    prior = prior or Prior()
    plain = _cut(image, convolved, noise, bad, psf, x, y, inner, 0.0)
    n_use = int(plain.use.sum())
    if n_use < MIN_PIXELS:
        nan = float("nan")
        return DipoleTest(nan, nan, nan, nan, 0, nan, 0.0, 0.0, 1.0, nan, False, False)
    # the drop says how much of the candidate the adjustment explains: the difference's
    # own noise weighs it; whether what is left is noise also counts the model error
    chi2_0 = float((plain.weight * (plain.sci - plain.tpl) ** 2).sum())
    chi2_a, _, _, _ = _fit(plain, max_shift, max_scale, prior, with_source=False)
    full = _cut(image, convolved, noise, bad, psf, x, y, inner, model_error)
    chi2_m, (dx, dy), scale, _ = _fit(full, max_shift, max_scale, prior, with_source=False)
    # three parameters; the scale's prior term is one more (pseudo-)measurement
    dof = max(n_use - 3 + int(np.isfinite(prior.sigma_scale)), 1)
    p = float(stats.chi2.sf(chi2_m, dof))
    explained = bool(p > p_value or chi2_a * chi2_drop < chi2_0)
    chi2_b, amplitude, needed = float("nan"), float("nan"), False
    if psf is not None and explained:
        chi2_b, _, _, amplitude = _fit(full, max_shift, max_scale, prior, with_source=True)
        needed = bool(amplitude * sign > 0 and chi2_m - chi2_b >= source_sigma**2)
    rejected = explained and not needed
    return DipoleTest(
        chi2_0, chi2_a, chi2_m, chi2_b, dof, p, dx, dy, scale, amplitude, explained, rejected
    )


def measure_star_adjustments(
    image: np.ndarray,
    convolved: np.ndarray,
    noise: np.ndarray,
    bad: np.ndarray,
    positions: np.ndarray,
    inner: float,
    max_shift: float = 1.0,
    max_scale: float = 1.3,
) -> StarAdjustments:
    """Fit the adjustment (no prior, no model error) at each of ``positions`` (N, 2)."""
    rows = []
    for x, y in np.asarray(positions, float).reshape(-1, 2):
        stamp = _cut(image, convolved, noise, bad, None, x, y, inner, 0.0)
        n_use = int(stamp.use.sum())
        signal = float((stamp.weight * curvature(stamp.tpl) ** 2).sum())
        if n_use < MIN_PIXELS or signal <= 0:
            continue
        chi2, (dx, dy), scale, _ = _fit(stamp, max_shift, max_scale, Prior(), False)
        rows.append((x, y, dx, dy, scale, max(chi2 - (n_use - 3), 0.0) / signal))
    values = np.array(rows, float).reshape(-1, 6)
    return StarAdjustments(*(values[:, k] for k in range(6)))
