"""FWHM of the stellar profile: per object, for the image, and as a map over the field.

Why not ``2·FLUX_RADIUS`` (what STDWeb uses): the half-light diameter equals the
FWHM only for a Gaussian; for a Moffat β≈3 profile it is ~25 % larger. We
measure the half-maximum width itself, in two ways:

* :func:`fit_moffat_fwhm` fits a pixel-integrated elliptical Moffat profile
  (β free, so a Gaussian is the β→∞ limit) to stamps of bright isolated stars.
  Integrating the model over each pixel matters: a 3-pixel FWHM star looks
  ~2.5 % wider in its pixel values than its true profile.
* :func:`core_fwhm` is a fast vectorised estimate for every object: a weighted
  fit of ``log I = c0 + c1 r² + c2 r⁴`` to the pixels above 20 % of the peak,
  solved for the half-maximum radius. It is biased by pixelisation, so it is
  rescaled by the median ratio to the Moffat fits of the same stars.

The image FWHM is the median of the Moffat fits; the map is a robust low-order
polynomial in (x, y) through them.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from pydantic import Field
from scipy.optimize import least_squares
from scipy.spatial import cKDTree

from pipeline.steps.base import StepConfig

SUBPIXELS = 3  # model sub-sampling per axis; keeps the pixel-integration error < 1 %
BETA_MIN, BETA_MAX = 1.2, 60.0  # Moffat index range; β≥60 is Gaussian to < 0.5 % in FWHM
CORE_LEVEL = 0.2  # pixels above this fraction of the peak enter the core fit
MIN_FIT_STARS = 5


class FwhmConfig(StepConfig):
    """Parameters of the FWHM measurement (part of the photometry step config)."""

    fwhm_override: float | None = Field(
        None, gt=0, description="Use this FWHM (pixels) instead of measuring it."
    )
    fwhm_min_sn: float = Field(
        20.0, gt=0, description="Minimum S/N of the stars used to measure the FWHM."
    )
    fwhm_max_stars: int = Field(
        150, ge=5, le=5000, description="At most this many stars get a full profile fit."
    )
    fwhm_map_order: int = Field(
        2, ge=0, le=4, description="Polynomial order of the FWHM map over the field."
    )


@dataclass
class FwhmMap:
    """A smooth FWHM(x, y) surface: a polynomial in normalised coordinates.

    Evaluation is clipped to ``[low, high]`` so that extrapolation to a corner
    without stars cannot run away.
    """

    coefficients: np.ndarray
    order: int
    shape: tuple[int, int]
    low: float
    high: float

    def __call__(self, x: np.ndarray | float, y: np.ndarray | float) -> np.ndarray:
        design = _poly_design(np.atleast_1d(x), np.atleast_1d(y), self.shape, self.order)
        return np.clip(design @ self.coefficients, self.low, self.high)

    def grid(self, n: int = 32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The map on an ``n``×``n`` grid of pixel centres: (x, y, fwhm) 2-D arrays."""
        ny, nx = self.shape
        gx, gy = np.meshgrid(np.linspace(0, nx - 1, n), np.linspace(0, ny - 1, n))
        return gx, gy, self(gx.ravel(), gy.ravel()).reshape(gx.shape)


@dataclass
class FwhmResult:
    """Outcome of :func:`measure_fwhm`.

    Attributes
    ----------
    fwhm : float
        Image FWHM in pixels.
    per_object : numpy.ndarray
        FWHM of every object (NaN where the core fit failed).
    fwhm_map : FwhmMap
    used : numpy.ndarray of bool
        Objects whose profile fit entered the image FWHM and the map.
    beta : float
        Median fitted Moffat index (large for Gaussian-like profiles).
    """

    fwhm: float
    per_object: np.ndarray
    fwhm_map: FwhmMap
    used: np.ndarray
    beta: float

    @property
    def fwhm_min(self) -> float:
        return float(self.fwhm_map.grid()[2].min())

    @property
    def fwhm_max(self) -> float:
        return float(self.fwhm_map.grid()[2].max())


def _poly_design(x: np.ndarray, y: np.ndarray, shape: tuple[int, int], order: int) -> np.ndarray:
    ny, nx = shape
    u = 2.0 * np.asarray(x, float) / max(nx - 1, 1) - 1.0
    v = 2.0 * np.asarray(y, float) / max(ny - 1, 1) - 1.0
    columns = [u**i * v**j for i in range(order + 1) for j in range(order + 1 - i)]
    return np.stack(columns, axis=-1)


def fit_fwhm_map(
    x: np.ndarray, y: np.ndarray, fwhm: np.ndarray, shape: tuple[int, int], order: int = 2
) -> FwhmMap:
    """Robust (3σ-clipped) polynomial fit of FWHM over the field.

    The order is lowered until there are at least 8 stars per coefficient.
    """
    good = np.isfinite(fwhm)
    x, y, fwhm = np.asarray(x)[good], np.asarray(y)[good], np.asarray(fwhm)[good]
    if len(fwhm) == 0:
        raise ValueError("no FWHM values to map")
    while order > 0 and len(fwhm) < 8 * (order + 1) * (order + 2) // 2:
        order -= 1
    keep = np.ones(len(fwhm), bool)
    design = _poly_design(x, y, shape, order)
    for _ in range(5):
        coefficients = np.linalg.lstsq(design[keep], fwhm[keep], rcond=None)[0]
        residual = fwhm - design @ coefficients
        scatter = 1.4826 * np.median(np.abs(residual[keep])) + 1e-6
        new_keep = np.abs(residual) < 3 * scatter
        if new_keep.sum() < design.shape[1] or (new_keep == keep).all():
            break
        keep = new_keep
    kept = fwhm[keep]
    return FwhmMap(coefficients, order, shape, float(kept.min()), float(kept.max()))


def gather_stamps(
    data: np.ndarray, x: np.ndarray, y: np.ndarray, half: int, bad: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Square stamps centred on the nearest pixels, NaN outside the image or where ``bad``.

    Returns the (N, 2h+1, 2h+1) stamps and the offsets of each position from its
    stamp centre pixel (dx, dy).
    """
    ix = np.rint(x).astype(int)
    iy = np.rint(y).astype(int)
    offsets = np.arange(-half, half + 1)
    rows = iy[:, None] + offsets[None, :]
    cols = ix[:, None] + offsets[None, :]
    ny, nx = data.shape
    inside = ((rows >= 0) & (rows < ny))[:, :, None] & ((cols >= 0) & (cols < nx))[:, None, :]
    rr = np.clip(rows, 0, ny - 1)[:, :, None]
    cc = np.clip(cols, 0, nx - 1)[:, None, :]
    stamps = data[rr, cc].astype(float)
    if bad is not None:
        inside &= ~bad[rr, cc]
    stamps[~inside] = np.nan
    return stamps, x - ix, y - iy


def core_fwhm(
    data: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    fwhm_guess: float,
    bad: np.ndarray | None = None,
    noise: np.ndarray | float = 0.0,
    batch: int = 4096,
) -> np.ndarray:
    """Fast per-object FWHM of the pixel values (no pixel-integration correction).

    Fits ``log I = c0 + c1 r² + c2 r⁴`` to pixels above ``CORE_LEVEL`` of the
    peak (and above 2× ``noise``), weighted by intensity, and solves for the
    radius where the profile falls to half its fitted peak.

    Parameters
    ----------
    data : numpy.ndarray
        Background-subtracted image.
    x, y : numpy.ndarray
        Object centres (0-based).
    fwhm_guess : float
        Rough FWHM, sets the stamp size.
    bad : numpy.ndarray of bool, optional
        Pixels to ignore.
    noise : float or numpy.ndarray
        Background noise per object (or one value).

    Returns
    -------
    numpy.ndarray
        FWHM per object in pixels, NaN where fewer than 4 pixels qualify or the
        fit is not a peaked profile.
    """
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    noise = np.broadcast_to(np.asarray(noise, float), x.shape)
    half = max(2, math.ceil(1.5 * fwhm_guess))
    out = np.full(len(x), np.nan)
    grid = np.arange(-half, half + 1, dtype=float)
    for start in range(0, len(x), batch):
        part = slice(start, start + batch)
        stamps, dx, dy = gather_stamps(data, x[part], y[part], half, bad)
        r2 = (grid[None, None, :] - dx[:, None, None]) ** 2 + (
            grid[None, :, None] - dy[:, None, None]
        ) ** 2
        # Peak from the pixels near the centre only, so a brighter neighbour in the
        # stamp does not set the level.
        centre = np.where(r2 <= 2.0, stamps, np.nan)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN stamps at masked spots
            peak = np.nanmax(centre.reshape(len(dx), -1), axis=1)
            level = np.maximum(CORE_LEVEL * peak, 2.0 * noise[part])
            use = (stamps > level[:, None, None]) & (r2 <= (1.2 * fwhm_guess + 1.0) ** 2)
            v = np.where(use, stamps, 1.0)
            w = np.where(use, v, 0.0) ** 2  # log-space errors scale as σ/I
            logv = np.log(v)
        t = r2
        basis = (np.ones_like(t), t, t * t)
        normal = np.empty((len(dx), 3, 3))
        rhs = np.empty((len(dx), 3))
        for i in range(3):
            rhs[:, i] = np.einsum("nij,nij->n", w * basis[i], logv)
            for j in range(i, 3):
                normal[:, i, j] = normal[:, j, i] = np.einsum("nij,nij->n", w * basis[i], basis[j])
        count = use.sum(axis=(1, 2))
        # three coefficients need pixels at three or more distinct radii (else singular)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            r2_used = np.where(use, r2, np.nan).reshape(len(dx), -1)
            low, high = np.nanmin(r2_used, axis=1), np.nanmax(r2_used, axis=1)
        between = use & (r2 > low[:, None, None] + 1e-9) & (r2 < high[:, None, None] - 1e-9)
        ok = (count >= 4) & np.isfinite(peak) & (peak > 0) & between.any(axis=(1, 2))
        normal[~ok] = np.eye(3)
        rhs[~ok] = 0.0
        with np.errstate(all="ignore"):
            coef = np.linalg.solve(normal + 1e-12 * np.eye(3), rhs[..., None])[..., 0]
            c1, c2 = coef[:, 1], coef[:, 2]
            ln2 = math.log(2.0)
            linear_t = -ln2 / c1
            disc = c1 * c1 - 4.0 * c2 * ln2
            quad_t = (-c1 - np.sqrt(np.where(disc > 0, disc, np.nan))) / (2.0 * c2)
            quad_t = np.where(quad_t > 0, quad_t, (-c1 + np.sqrt(np.maximum(disc, 0))) / (2 * c2))
            t_half = np.where(np.abs(c2) > 1e-9 * np.abs(c1) ** 2, quad_t, linear_t)
            t_half = np.where(np.isfinite(t_half) & (t_half > 0), t_half, linear_t)
            fwhm = 2.0 * np.sqrt(t_half)
        out[part] = np.where(ok & (c1 < 0) & np.isfinite(fwhm), fwhm, np.nan)
    return out


def _beta(s: float) -> float:
    """Moffat index from the unbounded fit parameter (logistic between the limits)."""
    return BETA_MIN + (BETA_MAX - BETA_MIN) / (1.0 + math.exp(-s))


class _MoffatModel:
    """Pixel-integrated elliptical Moffat model with its analytic Jacobian.

    Parameters: amplitude, xc, yc, log c11, c12, log c22, s (→ β), offset, with
    ``q = c11 dx² + 2 c12 dx dy + c22 dy²`` and ``I = A (1 + q)^-β``.
    """

    def __init__(self, xs: np.ndarray, ys: np.ndarray, values: np.ndarray, sub: int):
        self.xs, self.ys, self.values, self.sub = xs, ys, values, sub
        self._cache_key: tuple | None = None

    def _terms(self, params):
        key = tuple(params)
        if key != self._cache_key:
            _, xc, yc, l11, c12, l22, s, _ = params
            dx = self.xs - xc
            dy = self.ys - yc
            c11, c22 = math.exp(l11), math.exp(l22)
            base = 1.0 + np.maximum(c11 * dx * dx + 2.0 * c12 * dx * dy + c22 * dy * dy, 0.0)
            beta = _beta(s)
            power = np.power(base, -beta)
            self._cache_key = key
            self._cache = (dx, dy, c11, c22, base, beta, power)
        return self._cache

    def _pixel_mean(self, values: np.ndarray) -> np.ndarray:
        return values.reshape(-1, self.sub * self.sub).mean(axis=1)

    def residual(self, params) -> np.ndarray:
        power = self._terms(params)[-1]
        return params[0] * self._pixel_mean(power) + params[7] - self.values

    def jacobian(self, params) -> np.ndarray:
        amplitude, _, _, _, c12, _, _, _ = params
        dx, dy, c11, c22, base, beta, power = self._terms(params)
        slope = -beta * amplitude * power / base  # d I / d q
        dbeta = (beta - BETA_MIN) * (BETA_MAX - beta) / (BETA_MAX - BETA_MIN)
        columns = [
            power,
            slope * -(2.0 * c11 * dx + 2.0 * c12 * dy),
            slope * -(2.0 * c12 * dx + 2.0 * c22 * dy),
            slope * c11 * dx * dx,
            slope * 2.0 * dx * dy,
            slope * c22 * dy * dy,
            -amplitude * power * np.log(base) * dbeta,
        ]
        jac = np.empty((len(self.values), 8))
        for i, column in enumerate(columns):
            jac[:, i] = self._pixel_mean(column)
        jac[:, 7] = 1.0
        return jac


def fit_moffat_fwhm(stamp: np.ndarray, dx: float, dy: float, fwhm_guess: float) -> tuple:
    """Fit a pixel-integrated elliptical Moffat profile to one star stamp.

    Parameters
    ----------
    stamp : numpy.ndarray
        Square background-subtracted stamp with the star near its centre pixel;
        NaN pixels are ignored.
    dx, dy : float
        Offset of the star from the centre pixel.
    fwhm_guess : float
        Starting FWHM.

    Returns
    -------
    tuple
        ``(fwhm, beta, ellipticity)`` with fwhm the geometric mean of the major-
        and minor-axis FWHMs; NaNs if the fit failed.
    """
    half = stamp.shape[0] // 2
    offsets = (np.arange(SUBPIXELS) + 0.5) / SUBPIXELS - 0.5
    grid = np.arange(-half, half + 1, dtype=float)
    gy, gx = np.meshgrid(grid, grid, indexing="ij")
    good = np.isfinite(stamp).ravel()
    if good.sum() < 12:
        return math.nan, math.nan, math.nan
    sub_x = (gx.ravel()[good, None, None] + offsets[None, None, :]) + 0.0 * offsets[None, :, None]
    sub_y = (gy.ravel()[good, None, None] + offsets[None, :, None]) + 0.0 * offsets[None, None, :]
    xs, ys = sub_x.ravel(), sub_y.ravel()
    values = stamp.ravel()[good]
    beta0 = 3.0
    alpha0 = fwhm_guess / (2.0 * math.sqrt(2.0 ** (1 / beta0) - 1.0))
    start = [
        float(np.nanmax(values)),
        dx,
        dy,
        math.log(1 / alpha0**2),
        0.0,
        math.log(1 / alpha0**2),
        -math.log((BETA_MAX - BETA_MIN) / (beta0 - BETA_MIN) - 1.0),
        0.0,
    ]
    model = _MoffatModel(xs, ys, values, SUBPIXELS)
    try:
        fit = least_squares(
            model.residual, start, jac=model.jacobian, method="lm", x_scale="jac", max_nfev=200
        )
    except (ValueError, np.linalg.LinAlgError):
        return math.nan, math.nan, math.nan
    amplitude, xc, yc, l11, c12, l22, s, _ = fit.x
    beta = _beta(s)
    eigen = np.linalg.eigvalsh(np.array([[math.exp(l11), c12], [c12, math.exp(l22)]]))
    if not fit.success or amplitude <= 0 or eigen[0] <= 0 or max(abs(xc), abs(yc)) > half / 2:
        return math.nan, math.nan, math.nan
    axes = 2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0) / np.sqrt(eigen)  # major, minor
    return float(math.sqrt(axes[0] * axes[1])), float(beta), float(1.0 - axes[1] / axes[0])


def select_psf_stars(
    x: np.ndarray,
    y: np.ndarray,
    sn: np.ndarray,
    flags: np.ndarray,
    min_sn: float,
    isolation: float,
    max_stars: int,
    seed: int = 0,
) -> np.ndarray:
    """Indices of unflagged, isolated objects with S/N above ``min_sn``.

    Isolation: no other detection within ``isolation`` pixels. If more than
    ``max_stars`` qualify, a random but reproducible subset is taken so that
    the whole field stays covered.
    """
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    candidates = (np.asarray(flags) == 0) & (np.asarray(sn) > min_sn) & np.isfinite(sn)
    if len(x) > 1:
        distance, _ = cKDTree(np.column_stack([x, y])).query(np.column_stack([x, y]), k=2)
        candidates &= distance[:, 1] > isolation
    chosen = np.flatnonzero(candidates)
    if len(chosen) > max_stars:
        chosen = np.sort(np.random.default_rng(seed).choice(chosen, max_stars, replace=False))
    return chosen


def measure_fwhm(
    data: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    sn: np.ndarray,
    flags: np.ndarray,
    fwhm_guess: float,
    config: FwhmConfig,
    bad: np.ndarray | None = None,
    noise: np.ndarray | float = 0.0,
) -> FwhmResult:
    """Image FWHM, FWHM map and per-object FWHM from the detected objects.

    Parameters
    ----------
    data : numpy.ndarray
        Background-subtracted image.
    x, y, sn, flags : numpy.ndarray
        Object positions, S/N (e.g. of the auto flux) and flags.
    fwhm_guess : float
        Rough FWHM (e.g. twice the median half-light radius).
    config : FwhmConfig
    bad : numpy.ndarray of bool, optional
        Pixels to ignore.
    noise : float or numpy.ndarray
        Background noise (per object or one value).

    Raises
    ------
    ValueError
        If no star is good enough to measure a FWHM.
    """
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    if not (np.isfinite(fwhm_guess) and fwhm_guess > 0):
        fwhm_guess = 3.0
    core = core_fwhm(data, x, y, fwhm_guess, bad, noise)
    min_sn = config.fwhm_min_sn
    stars = np.zeros(0, int)
    # Lower the S/N bar step by step on shallow images (as STDWeb does for astrometry).
    while min_sn >= 5:
        stars = select_psf_stars(x, y, sn, flags, min_sn, 3.0 * fwhm_guess, config.fwhm_max_stars)
        if len(stars) >= MIN_FIT_STARS * 4 or min_sn <= 5:
            break
        min_sn /= 2
    half = max(3, math.ceil(2.0 * fwhm_guess))
    stamps, dx, dy = gather_stamps(data, x[stars], y[stars], half, bad)
    fits = np.array(
        [
            fit_moffat_fwhm(s, ddx, ddy, fwhm_guess)
            for s, ddx, ddy in zip(stamps, dx, dy, strict=True)
        ]
    ).reshape(-1, 3)
    ok = np.isfinite(fits[:, 0]) & (fits[:, 0] > 0.5) & (fits[:, 0] < 10 * fwhm_guess)
    if ok.sum() < MIN_FIT_STARS:
        raise ValueError(
            f"only {int(ok.sum())} stars were good enough to measure the FWHM "
            f"(unflagged, isolated, S/N > {min_sn:g}); the image may hold no stars. "
            "Set fwhm_override to go on."
        )
    stars, fit_fwhm, beta = stars[ok], fits[ok, 0], fits[ok, 1]
    # Clip the fits to their core distribution before they define anything.
    median = np.median(fit_fwhm)
    scatter = 1.4826 * np.median(np.abs(fit_fwhm - median))
    inlier = np.abs(fit_fwhm - median) < 4 * scatter + 0.02 * median
    stars, fit_fwhm, beta = stars[inlier], fit_fwhm[inlier], beta[inlier]
    fwhm_map = fit_fwhm_map(x[stars], y[stars], fit_fwhm, data.shape, config.fwhm_map_order)
    ratio = fit_fwhm / core[stars]
    scale = float(np.nanmedian(ratio)) if np.isfinite(ratio).any() else 1.0
    used = np.zeros(len(x), bool)
    used[stars] = True
    return FwhmResult(
        fwhm=float(np.median(fit_fwhm)),
        per_object=core * scale,
        fwhm_map=fwhm_map,
        used=used,
        beta=float(np.median(beta)),
    )


def fixed_fwhm(value: float, shape: tuple[int, int], n_objects: int) -> FwhmResult:
    """A :class:`FwhmResult` for a user-given FWHM (flat map, no per-object values)."""
    flat = FwhmMap(np.array([value]), 0, shape, value, value)
    return FwhmResult(
        fwhm=float(value),
        per_object=np.full(n_objects, np.nan),
        fwhm_map=flat,
        used=np.zeros(n_objects, bool),
        beta=math.nan,
    )
