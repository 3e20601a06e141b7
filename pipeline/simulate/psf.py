"""Fast rendering of point sources with a position-dependent PSF.

Each source is drawn into a small stamp. The PSF is integrated over every
pixel with a composite Simpson rule on ``n_sub`` sub-intervals per pixel (on
both axes), which is far more accurate than point sampling for a 3-pixel
FWHM at the same cost as a 2x-oversampled grid. Stamps are then scaled so
that the flux deposited equals the requested flux exactly; the fraction of the
infinite-domain PSF that the stamp holds is reported (it is > 0.999 unless the
stamp hit the size cap). Stars with the same stamp size are evaluated together
as one array operation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .fields import PSFField

STAMP_LOSS = 1.0e-3  # flux fraction allowed outside the stamp before renormalisation
MAX_HALF_SIZE = 160  # px, cap on the stamp half-size of very bright stars
BATCH_NODES = 6_000_000  # sample nodes evaluated per array operation (memory bound)


@dataclass
class RenderedSources:
    """Per-source numbers from rendering (arrays aligned with the input positions)."""

    peak: NDArray  # maximum pixel value of the source alone, ADU
    stamp_fraction: NDArray  # fraction of the infinite-domain PSF inside the stamp
    half_size: NDArray  # stamp half-size, px
    fwhm: NDArray  # px, geometric-mean FWHM at the position
    ellipticity: NDArray
    theta: NDArray  # rad, major axis from +x towards +y
    deposited: NDArray  # flux actually added inside the image (less than flux at edges)


def simpson_weights(n_sub: int) -> NDArray:
    """Composite Simpson weights for one unit pixel split into ``n_sub`` (even) intervals."""
    if n_sub % 2:
        raise ValueError("Simpson integration needs an even number of sub-intervals")
    w = np.ones(n_sub + 1)
    w[1:-1:2] = 4.0
    w[2:-1:2] = 2.0
    return w / (3.0 * n_sub)


def subintervals_for(fwhm_minor: float) -> int:
    """Sub-intervals per pixel for Simpson integration of a profile this narrow."""
    # max pixel error relative to the peak: n=2 gives < 0.4 % for FWHM >= 2 px,
    # n=4 < 0.1 % for FWHM >= 1 px (measured against n=32)
    if fwhm_minor >= 2.0:
        return 2
    if fwhm_minor >= 0.9:
        return 4
    return 8


def _integrate_axis(values: NDArray, weights: NDArray, n_sub: int, size: int, axis: int) -> NDArray:
    """Integrate ``values`` along ``axis`` (size*n_sub + 1 nodes) pixel by pixel."""

    def nodes(k: int) -> NDArray:
        index = [slice(None)] * values.ndim
        index[axis] = slice(k, k + size * n_sub, n_sub)
        return values[tuple(index)]

    # python floats keep float32 arrays float32 (a numpy float64 scalar would upcast)
    out = float(weights[0]) * nodes(0)
    for k in range(1, n_sub + 1):
        out += float(weights[k]) * nodes(k)
    return out


def profile_values(q: NDArray, kind: str, beta: float) -> NDArray:
    """Un-normalised radial profile of the quadratic form ``q = (r / scale)^2``.

    ``q`` is overwritten (the stamps are large; this avoids temporaries).
    """
    if kind == "gaussian":
        q *= -0.5
        return np.exp(q, out=q)
    q += 1.0
    if beta == 3.0:  # common default; a cube is much faster than a general power
        cube = q * q
        cube *= q
        return np.reciprocal(cube, out=cube)
    return np.power(q, -beta, out=q)


def profile_total(kind: str, beta: float, a: NDArray, b: NDArray) -> NDArray:
    """Integral over the plane of :func:`profile_values` for axis scales a, b."""
    if kind == "gaussian":
        return 2.0 * np.pi * a * b
    return np.pi * a * b / (beta - 1.0)


def half_size_for(
    kind: str,
    beta: float,
    scale_major: NDArray,
    flux: NDArray,
    scale_minor: NDArray,
    edge_level: float,
) -> NDArray:
    """Stamp half-size: loses < STAMP_LOSS of the flux and ends below ``edge_level`` ADU."""
    if kind == "gaussian":
        r_loss = scale_major * np.sqrt(-2.0 * np.log(STAMP_LOSS))
        peak = flux / profile_total(kind, beta, scale_major, scale_minor)
        ratio = np.maximum(peak / edge_level, 1.0)
        r_edge = scale_major * np.sqrt(2.0 * np.log(ratio))
    else:
        r_loss = scale_major * np.sqrt(STAMP_LOSS ** (1.0 / (1.0 - beta)) - 1.0)
        peak = flux / profile_total(kind, beta, scale_major, scale_minor)
        ratio = np.maximum(peak / edge_level, 1.0)
        r_edge = scale_major * np.sqrt(ratio ** (1.0 / beta) - 1.0)
    half = np.ceil(np.maximum(r_loss, r_edge)).astype(int)
    # quantise to a short ladder so that many stars share one batch
    ladder = np.unique(np.ceil(half.min() * 1.2 ** np.arange(40)).astype(int))
    idx = np.searchsorted(ladder, half)
    return np.minimum(ladder[np.minimum(idx, ladder.size - 1)], MAX_HALF_SIZE)


def psf_stamps(
    dx: NDArray,
    dy: NDArray,
    a: NDArray,
    b: NDArray,
    theta: NDArray,
    kind: str,
    beta: float,
    half: int,
    n_sub: int,
) -> NDArray:
    """Pixel-integrated, un-normalised PSF stamps (N, 2*half+1, 2*half+1).

    ``dx, dy`` are the source offsets from the central pixel's centre.
    """
    size = 2 * half + 1
    nodes = -half - 0.5 + np.arange(size * n_sub + 1) / n_sub
    cos, sin = np.cos(theta), np.sin(theta)
    # inverse-covariance coefficients of the elliptical quadratic form
    cxx = (cos / a) ** 2 + (sin / b) ** 2
    cyy = (sin / a) ** 2 + (cos / b) ** 2
    cxy = 2.0 * cos * sin * (1.0 / a**2 - 1.0 / b**2)
    # float32 halves the memory traffic; 1e-7 relative precision is plenty here
    xs = (nodes[None, :] - dx[:, None]).astype(np.float32)
    ys = (nodes[None, :] - dy[:, None]).astype(np.float32)
    q = np.multiply(ys[:, :, None], (cxy[:, None] * xs).astype(np.float32)[:, None, :])
    q += (cxx[:, None] * xs**2).astype(np.float32)[:, None, :]
    q += (cyy[:, None] * ys**2).astype(np.float32)[:, :, None]
    values = profile_values(q, kind, beta)
    w = simpson_weights(n_sub)
    # rows first: slicing whole rows is contiguous and shrinks the array n_sub times
    along_y = _integrate_axis(values, w, n_sub, size, axis=1)  # (N, size, x nodes)
    return _integrate_axis(along_y, w, n_sub, size, axis=2).astype(np.float64)


def render_point_sources(
    image: NDArray,
    x: NDArray,
    y: NDArray,
    flux: NDArray,
    psf: PSFField,
    edge_level: float = 1.0,
) -> RenderedSources:
    """Add point sources to ``image`` in place.

    Parameters
    ----------
    image : ndarray
        2-D float64 array to add to.
    x, y : ndarray
        0-based pixel positions (may lie off the image; their light is clipped).
    flux : ndarray
        Total flux of each source, ADU.
    psf : PSFField
        The PSF model as a function of position.
    edge_level : float
        Surface brightness (ADU/px) at which a bright star's stamp may end.

    Returns
    -------
    RenderedSources
        Peak, stamp fraction, PSF shape and deposited flux of every source.
    """
    x = np.atleast_1d(np.asarray(x, float))
    y = np.atleast_1d(np.asarray(y, float))
    flux = np.atleast_1d(np.asarray(flux, float))
    n = x.size
    if n == 0:
        empty = np.zeros(0)
        return RenderedSources(empty, empty, np.zeros(0, int), empty, empty, empty, empty)
    fwhm, ell, theta = psf.shape(x, y)
    a, b, _ = psf.axes_scale(x, y)
    half = half_size_for(psf.kind, psf.beta, a, np.maximum(flux, 0), b, edge_level)
    n_sub = np.array([subintervals_for(f * np.sqrt(1 - e)) for f, e in zip(fwhm, ell, strict=True)])
    ix, iy = np.rint(x).astype(int), np.rint(y).astype(int)
    dx, dy = x - ix, y - iy
    peak = np.zeros(n)
    fraction = np.zeros(n)
    deposited = np.zeros(n)
    ny, nx = image.shape
    totals = profile_total(psf.kind, psf.beta, a, b)
    for h, s in sorted({(int(h), int(s)) for h, s in zip(half, n_sub, strict=True)}):
        members = np.flatnonzero((half == h) & (n_sub == s))
        per_star = (s * (2 * h + 1) + 1) ** 2
        chunk = max(1, BATCH_NODES // per_star)
        for start in range(0, members.size, chunk):
            sel = members[start : start + chunk]
            stamps = psf_stamps(
                dx[sel], dy[sel], a[sel], b[sel], theta[sel], psf.kind, psf.beta, h, s
            )
            sums = stamps.sum(axis=(1, 2))
            fraction[sel] = sums / totals[sel]
            stamps *= (flux[sel] / sums)[:, None, None]
            peak[sel] = stamps.max(axis=(1, 2))
            for k, i in enumerate(sel):
                y0, x0 = iy[i] - h, ix[i] - h
                ya, xa = max(y0, 0), max(x0, 0)
                yb, xb = min(y0 + 2 * h + 1, ny), min(x0 + 2 * h + 1, nx)
                if ya >= yb or xa >= xb:
                    continue
                part = stamps[k, ya - y0 : yb - y0, xa - x0 : xb - x0]
                image[ya:yb, xa:xb] += part
                deposited[i] = part.sum()
    return RenderedSources(peak, fraction, half, fwhm, ell, theta, deposited)
