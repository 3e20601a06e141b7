"""Put a template (and its mask) on the science image's pixel grid.

``interp`` (the default) is bilinear interpolation at the template pixel position of every
image pixel, as :func:`reproject.reproject_interp` does, but the position is not pushed
through both WCSs for each of the image's 4–17 million pixels: the exact transformation is
evaluated on a grid of nodes every :data:`GRID_STEP` pixels and a bicubic spline through
them gives every pixel's position. The mapping is smooth (projections and SIP distortions
are low-order polynomials on a few-pixel scale), and the spline is checked against the
exact transformation halfway between the nodes: if it is off by more than
:data:`GRID_TOLERANCE` pixels there (or the transformation fails anywhere on the grid),
the exact per-pixel reprojection of the ``reproject`` package is used instead.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from astropy.wcs import WCS, FITSFixedWarning
from reproject import reproject_adaptive, reproject_interp
from scipy import ndimage
from scipy.interpolate import RectBivariateSpline

from pipeline.templates.errors import TemplateError

METHODS = ("interp", "adaptive")
MIN_COVERAGE = 0.1
GRID_STEP = 32  # px between the nodes where the exact transformation is evaluated
GRID_TOLERANCE = 0.01  # px: largest error of the spline mapping accepted at the checks
ROUNDTRIP_TOLERANCE = 1.0  # px, as reproject: a position that does not map back is unusable
BLOCK_ROWS = 256  # rows interpolated at a time (bounds the memory of the position arrays)


def template_wcs(header) -> WCS:
    """Celestial WCS of a template header, or TemplateError."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        try:
            wcs = WCS(header)
        except Exception as exc:
            raise TemplateError(f"the template WCS cannot be read: {exc}") from exc
    if not wcs.has_celestial:
        raise TemplateError(
            "the template has no celestial WCS: upload a template with astrometry in its header"
        )
    return wcs.celestial


def _exact_positions(
    image_wcs: WCS, wcs: WCS, x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Template pixel positions of image pixels (x, y), and whether they map back."""
    tx, ty = wcs.world_to_pixel_values(*image_wcs.pixel_to_world_values(x, y))
    bx, by = image_wcs.world_to_pixel_values(*wcs.pixel_to_world_values(tx, ty))
    ok = np.isfinite(tx) & np.isfinite(ty)
    with np.errstate(invalid="ignore"):
        ok &= (np.abs(bx - x) <= ROUNDTRIP_TOLERANCE) & (np.abs(by - y) <= ROUNDTRIP_TOLERANCE)
    return np.asarray(tx, float), np.asarray(ty, float), ok


def _nodes(length: int, step: int) -> np.ndarray:
    return np.unique(np.r_[np.arange(0, length, step), length - 1]).astype(float)


def grid_mapping(
    image_wcs: WCS, wcs: WCS, shape: tuple[int, int], step: int = GRID_STEP
) -> tuple[RectBivariateSpline, RectBivariateSpline] | None:
    """Splines giving the template x and y of image pixel (y, x), or None when unfit.

    None means: the transformation fails somewhere on the grid, the image is too small
    for a grid, or the spline misses the exact positions by more than
    :data:`GRID_TOLERANCE` halfway between the nodes.
    """
    ny, nx = shape
    ys, xs = _nodes(ny, step), _nodes(nx, step)
    if len(ys) < 4 or len(xs) < 4:  # a bicubic spline needs four nodes a side
        return None
    gx, gy = np.meshgrid(xs, ys)
    tx, ty, ok = _exact_positions(image_wcs, wcs, gx.ravel(), gy.ravel())
    if not ok.all():
        return None
    fx = RectBivariateSpline(ys, xs, tx.reshape(gx.shape), kx=3, ky=3)
    fy = RectBivariateSpline(ys, xs, ty.reshape(gx.shape), kx=3, ky=3)
    # the check: cell centres, where an interpolating spline is least constrained
    cy, cx = 0.5 * (ys[1:] + ys[:-1]), 0.5 * (xs[1:] + xs[:-1])
    mx, my = np.meshgrid(cx, cy)
    ex, ey, ok = _exact_positions(image_wcs, wcs, mx.ravel(), my.ravel())
    if not ok.all():
        return None
    error = np.hypot(fx(cy, cx).ravel() - ex, fy(cy, cx).ravel() - ey)
    if error.max() > GRID_TOLERANCE:
        return None
    return fx, fy


def _interpolate_rows(
    values: np.ndarray,
    fx: RectBivariateSpline,
    fy: RectBivariateSpline,
    rows: np.ndarray,
    nx: int,
    out: np.ndarray,
) -> None:
    """Bilinear interpolation of ``values`` at the mapped positions of image ``rows``."""
    cols = np.arange(nx, dtype=float)
    tx, ty = fx(rows, cols), fy(rows, cols)
    # as reproject: the outer half of the border pixels takes the border pixel's value
    for pos, size in ((ty, values.shape[0]), (tx, values.shape[1])):
        pos[(pos < 0) & (pos >= -0.5)] = 0
        pos[(pos < size - 0.5) & (pos >= size - 1)] = size - 1
    out[int(rows[0]) : int(rows[-1]) + 1] = ndimage.map_coordinates(
        values, [ty, tx], order=1, mode="constant", cval=np.nan
    ).reshape(len(rows), nx)


def fast_interp(
    values: np.ndarray, wcs: WCS, image_wcs: WCS, shape: tuple[int, int], workers: int = 2
) -> np.ndarray | None:
    """``values`` bilinearly interpolated onto the image grid (NaN outside), or None.

    None when :func:`grid_mapping` finds the grid mapping unfit; the caller then uses the
    exact per-pixel reprojection.
    """
    mapping = grid_mapping(image_wcs, wcs, shape)
    if mapping is None:
        return None
    ny, nx = shape
    out = np.empty(shape)
    blocks = [
        np.arange(y0, min(y0 + BLOCK_ROWS, ny), dtype=float) for y0 in range(0, ny, BLOCK_ROWS)
    ]
    # spline evaluation and map_coordinates run in C without the GIL: blocks in threads
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(lambda rows: _interpolate_rows(values, *mapping, rows, nx, out), blocks))
    return out


def reproject_template(
    data: np.ndarray,
    header,
    mask: np.ndarray | None,
    image_wcs: WCS,
    shape: tuple[int, int],
    method: str = "interp",
) -> tuple[np.ndarray, np.ndarray]:
    """Template pixels and a boolean bad-pixel mask on the image grid.

    Masked template pixels become NaN before reprojection, so they spread to every
    output pixel they touch; pixels outside the template footprint are bad too.
    """
    if method not in METHODS:
        raise ValueError(f"reprojection method must be one of {METHODS}, not {method!r}")
    wcs = template_wcs(header)
    values = np.asarray(data, float)
    if mask is not None:
        values = values.copy()
        values[np.asarray(mask) != 0] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if method == "interp":
            out = fast_interp(values, wcs, image_wcs, tuple(shape))
            if out is None:
                out, _ = reproject_interp((values, wcs), image_wcs, shape_out=shape)
            bad = ~np.isfinite(out)  # the footprint of interpolation is all or nothing
        else:
            out, footprint = reproject_adaptive(
                (values, wcs),
                image_wcs,
                shape_out=shape,
                conserve_flux=False,
                boundary_mode="strict",
            )
            bad = ~np.isfinite(out) | (footprint < 0.99)
    if (~bad).mean() < MIN_COVERAGE:
        raise TemplateError(
            f"the template covers only {100 * (~bad).mean():.1f} % of the image: it does not "
            "overlap the image (check the template position and the image WCS)"
        )
    out[bad] = 0.0
    return out, bad
