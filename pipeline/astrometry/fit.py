"""Least-squares TAN-SIP fit of matched pixel and sky positions.

The model is the FITS TAN projection with SIP distortion (Shupe et al. 2005):
pixel offsets ``u, v`` from CRPIX are distorted to ``u + A(u, v), v + B(u, v)``,
turned into intermediate world coordinates by the CD matrix and deprojected
about CRVAL. Projecting the sky positions about a trial CRVAL makes the whole
model a polynomial in ``u, v`` whose constant term is the CRVAL error, linear
terms the CD matrix and higher terms ``CD·(A, B)``. So one linear least-squares
solve per axis gives everything; two or three passes re-centre CRVAL. This is
much faster than a non-linear fit (``astropy.wcs.utils.fit_wcs_from_points``)
and gives the same answer.
"""

from __future__ import annotations

import warnings

import numpy as np
from astropy.wcs import WCS, Sip
from numpy.typing import NDArray

from pipeline.astrometry.errors import AstrometryError

MAX_SIP_ORDER = 5
STARS_PER_TERM = 3  # fewer matched stars per fitted coefficient lowers the SIP order
CRVAL_TOLERANCE_DEG = 1e-10
MAX_CRVAL_PASSES = 6
MAX_CONDITION = 1e13  # normal matrices worse than this mean a degenerate star set


def polynomial_terms(order: int, min_degree: int = 0) -> list[tuple[int, int]]:
    """Exponents ``(p, q)`` of ``u**p * v**q`` with ``min_degree <= p + q <= order``."""
    return [(p, total - p) for total in range(min_degree, order + 1) for p in range(total, -1, -1)]


def min_stars_for_order(order: int) -> int:
    """Matched stars needed to fit a TAN-SIP model of ``order`` (0 or 1 = plain TAN)."""
    return STARS_PER_TERM * len(polynomial_terms(max(order, 1)))


def highest_order(n_stars: int, wanted: int) -> int:
    """The highest SIP order up to ``wanted`` that ``n_stars`` can constrain (>= 1)."""
    order = max(int(wanted), 1)
    while order > 1 and n_stars < min_stars_for_order(order):
        order -= 1
    return order


def gnomonic_project(ra: NDArray, dec: NDArray, ra0: float, dec0: float) -> tuple[NDArray, NDArray]:
    """Standard coordinates (xi, eta) in degrees of the TAN projection about (ra0, dec0)."""
    a, d = np.deg2rad(np.asarray(ra, float)), np.deg2rad(np.asarray(dec, float))
    a0, d0 = np.deg2rad(ra0), np.deg2rad(dec0)
    cos_c = np.sin(d) * np.sin(d0) + np.cos(d) * np.cos(d0) * np.cos(a - a0)
    with np.errstate(divide="ignore", invalid="ignore"):
        xi = np.cos(d) * np.sin(a - a0) / cos_c
        eta = (np.sin(d) * np.cos(d0) - np.cos(d) * np.sin(d0) * np.cos(a - a0)) / cos_c
    far = cos_c <= 0  # on the far hemisphere: no gnomonic image
    xi, eta = np.where(far, np.nan, xi), np.where(far, np.nan, eta)
    return np.rad2deg(xi), np.rad2deg(eta)


def gnomonic_deproject(
    xi: NDArray, eta: NDArray, ra0: float, dec0: float
) -> tuple[NDArray, NDArray]:
    """Inverse of :func:`gnomonic_project`: (ra, dec) in degrees."""
    x, y = np.deg2rad(np.asarray(xi, float)), np.deg2rad(np.asarray(eta, float))
    a0, d0 = np.deg2rad(ra0), np.deg2rad(dec0)
    denom = np.cos(d0) - y * np.sin(d0)
    ra = a0 + np.arctan2(x, denom)
    dec = np.arctan2(np.sin(d0) + y * np.cos(d0), np.hypot(x, denom))
    return np.rad2deg(ra) % 360.0, np.rad2deg(dec)


def _design(u: NDArray, v: NDArray, terms: list[tuple[int, int]]) -> NDArray:
    return np.stack([u**p * v**q for p, q in terms], axis=1)


def _mean_position(ra: NDArray, dec: NDArray) -> tuple[float, float]:
    """Mean direction of the points (safe across RA = 0)."""
    a, d = np.deg2rad(ra), np.deg2rad(dec)
    vec = np.array([np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)]).sum(axis=1)
    return float(np.rad2deg(np.arctan2(vec[1], vec[0])) % 360), float(
        np.rad2deg(np.arctan2(vec[2], np.hypot(vec[0], vec[1])))
    )


def least_squares(design: NDArray, target: NDArray, sqrt_w: NDArray | None = None) -> NDArray:
    """Linear least squares through the normal equations.

    The design columns are monomials of coordinates scaled to [-1, 1], so the
    normal matrix is well conditioned; this is ~50x faster than the SVD of
    ``numpy.linalg.lstsq`` on tall matrices with a threaded BLAS.
    """
    if sqrt_w is not None:
        design, target = design * sqrt_w[:, None], target * sqrt_w[:, None]
    normal = design.T @ design
    if not np.isfinite(normal).all() or np.linalg.cond(normal) > MAX_CONDITION:
        raise AstrometryError(
            "the matched stars do not constrain the fit (too few, collinear or clustered "
            "points): use a lower SIP order or more stars spread over the image"
        )
    return np.linalg.solve(normal, design.T @ target)


def fit_tan_sip(
    x: NDArray,
    y: NDArray,
    ra: NDArray,
    dec: NDArray,
    *,
    sip_order: int = 3,
    shape: tuple[int, int] | None = None,
    crpix: tuple[float, float] | None = None,
    crval: tuple[float, float] | None = None,
    weights: NDArray | None = None,
) -> WCS:
    """Fit a TAN (order <= 1) or TAN-SIP WCS to matched positions.

    Parameters
    ----------
    x, y : array_like
        0-based pixel positions of the matched objects.
    ra, dec : array_like
        Their catalogue positions, degrees.
    sip_order : int
        Order of the SIP polynomials A/B (2-5); 0 or 1 fits a plain TAN WCS.
    shape : (ny, nx), optional
        Image shape: CRPIX is put at the image centre, the inverse polynomials
        AP/BP are fitted over the image and the WCS knows its size.
    crpix : (float, float), optional
        1-based reference pixel; overrides the centre of ``shape``.
    crval : (float, float), optional
        Starting reference position; the mean of ``ra, dec`` by default.
    weights : array_like, optional
        Relative weights (inverse variances) of the points.

    Returns
    -------
    astropy.wcs.WCS

    Raises
    ------
    AstrometryError
        With too few points for the requested order or non-finite input.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    ra, dec = np.asarray(ra, float), np.asarray(dec, float)
    if not (x.shape == y.shape == ra.shape == dec.shape):
        raise AstrometryError("x, y, ra and dec must have the same length")
    if not np.all(np.isfinite(np.r_[x, y, ra, dec])):
        raise AstrometryError("the positions to fit contain NaN or infinite values")
    order = max(int(sip_order), 1)
    if order > MAX_SIP_ORDER:
        raise AstrometryError(f"SIP order {sip_order} is too high: use at most {MAX_SIP_ORDER}")
    terms = polynomial_terms(order)
    if len(x) < max(len(terms) + 1, 3):
        raise AstrometryError(
            f"{len(x)} matched stars cannot constrain a SIP order-{order} WCS "
            f"({len(terms)} coefficients per axis); use a lower order or more stars"
        )
    if crpix is None:
        if shape is not None:
            crpix = ((shape[1] + 1) / 2.0, (shape[0] + 1) / 2.0)
        else:
            crpix = (float(np.mean(x)) + 1.0, float(np.mean(y)) + 1.0)
    u, v = x + 1.0 - crpix[0], y + 1.0 - crpix[1]
    norm = max(float(np.max(np.abs(np.r_[u, v]))), 1.0)  # keeps the design well conditioned
    design = _design(u / norm, v / norm, terms)
    sqrt_w = None if weights is None else np.sqrt(np.clip(np.asarray(weights, float), 0, None))
    ra0, dec0 = crval if crval is not None else _mean_position(ra, dec)
    for _ in range(MAX_CRVAL_PASSES):
        xi, eta = gnomonic_project(ra, dec, ra0, dec0)
        coeffs = least_squares(design, np.c_[xi, eta], sqrt_w)
        shift_xi, shift_eta = coeffs[0]
        ra0, dec0 = (float(c) for c in gnomonic_deproject(shift_xi, shift_eta, ra0, dec0))
        if np.hypot(shift_xi, shift_eta) < CRVAL_TOLERANCE_DEG:
            break
    xi, eta = gnomonic_project(ra, dec, ra0, dec0)
    coeffs = least_squares(design, np.c_[xi, eta], sqrt_w)
    scales = np.array([norm ** -(p + q) for p, q in terms])
    coeffs = coeffs * scales[:, None]  # back to unscaled u, v
    cd = np.array([[coeffs[1, 0], coeffs[2, 0]], [coeffs[1, 1], coeffs[2, 1]]])
    return _build_wcs(ra0, dec0, crpix, cd, terms, coeffs, order, shape, x, y)


def _build_wcs(ra0, dec0, crpix, cd, terms, coeffs, order, shape, x, y) -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.crpix = crpix
    wcs.wcs.crval = [ra0, dec0]
    wcs.wcs.cd = cd
    wcs.wcs.radesys = "ICRS"
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    if shape is not None:
        wcs.pixel_shape = (int(shape[1]), int(shape[0]))
    if order >= 2:
        cd_inv = np.linalg.inv(cd)
        a = np.zeros((order + 1, order + 1))
        b = np.zeros((order + 1, order + 1))
        for k, (p, q) in enumerate(terms):
            if p + q >= 2:
                a[p, q], b[p, q] = cd_inv @ coeffs[k]
        if shape is not None:
            extent = (0.0, shape[1] - 1.0, 0.0, shape[0] - 1.0)
        else:
            extent = (x.min(), x.max(), y.min(), y.max())
        ap, bp = fit_inverse_sip(a, b, crpix, extent, order + 1)
        wcs.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
        wcs.sip = Sip(a, b, ap, bp, crpix)
    wcs.wcs.set()
    return wcs


def evaluate_polynomial(coeffs: NDArray, u: NDArray, v: NDArray) -> NDArray:
    """``sum coeffs[p, q] * u**p * v**q`` (the SIP array convention)."""
    out = np.zeros(np.broadcast(u, v).shape)
    for (p, q), c in np.ndenumerate(coeffs):
        if c != 0.0:
            out = out + c * u**p * v**q
    return out


def fit_inverse_sip(
    a: NDArray,
    b: NDArray,
    crpix: tuple[float, float],
    extent: tuple[float, float, float, float],
    order: int,
    grid: int = 41,
) -> tuple[NDArray, NDArray]:
    """Inverse SIP polynomials AP/BP fitted over ``extent`` (0-based x0, x1, y0, y1)."""
    x0, x1, y0, y1 = extent
    pad_x, pad_y = 0.05 * (x1 - x0) + 1, 0.05 * (y1 - y0) + 1
    gx, gy = np.meshgrid(
        np.linspace(x0 - pad_x, x1 + pad_x, grid), np.linspace(y0 - pad_y, y1 + pad_y, grid)
    )
    u, v = gx.ravel() + 1.0 - crpix[0], gy.ravel() + 1.0 - crpix[1]
    fu, fv = u + evaluate_polynomial(a, u, v), v + evaluate_polynomial(b, u, v)
    terms = polynomial_terms(order, 1)
    norm = max(float(np.max(np.abs(np.r_[fu, fv]))), 1.0)
    design = _design(fu / norm, fv / norm, terms)
    solution = least_squares(design, np.c_[u - fu, v - fv])
    ap = np.zeros((order + 1, order + 1))
    bp = np.zeros((order + 1, order + 1))
    for k, (p, q) in enumerate(terms):
        scale = norm ** -(p + q)
        ap[p, q], bp[p, q] = solution[k, 0] * scale, solution[k, 1] * scale
    return ap, bp


def wcs_to_sip(wcs: WCS, shape: tuple[int, int], sip_order: int = 3, grid: int = 33) -> WCS:
    """Approximate any celestial WCS (TPV, ZPN, SIP, ...) by a TAN-SIP fitted over the image.

    Useful to hand a SCAMP (TPV) solution to programs that only read SIP.
    """
    ny, nx = shape
    gx, gy = np.meshgrid(np.linspace(0, nx - 1, grid), np.linspace(0, ny - 1, grid))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ra, dec = wcs.all_pix2world(gx.ravel(), gy.ravel(), 0)
    return fit_tan_sip(gx.ravel(), gy.ravel(), ra, dec, sip_order=sip_order, shape=shape)
