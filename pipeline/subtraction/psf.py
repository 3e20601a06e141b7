"""Point-spread functions measured from the image itself: a stack of bright isolated stars.

ZOGY needs the PSF of both images on the same pixel grid. We find stars with sep,
keep bright, unsaturated, unmasked, round objects whose neighbours are far enough away,
recentre each stamp to sub-pixel precision, normalise it to unit flux and take the
median: robust to a stray cosmic ray or a faint neighbour in any one stamp.
"""

from __future__ import annotations

import numpy as np
import sep
from scipy import ndimage
from scipy.spatial import cKDTree

from pipeline.background import as_sep_array

MIN_STARS = 5  # fewer stamps than this do not make a trustworthy median
MAX_STARS = 60  # more add little to the median and cost time
ISOLATION_FWHM = 4.0  # nearest detected neighbour at least this many FWHM away


class PsfError(ValueError):
    """No usable PSF could be measured (too few clean stars)."""


def stamp_half_size(fwhm: float) -> int:
    """Half side of a PSF stamp: wide enough for Moffat wings of a few FWHM."""
    return int(max(6, np.ceil(3.0 * fwhm)))


def _isolated(x: np.ndarray, y: np.ndarray, distance: float) -> np.ndarray:
    """True for points whose nearest other point is farther than ``distance``."""
    if len(x) < 2:
        return np.ones(len(x), bool)
    # a k-d tree: the pairwise matrix is O(N²) and a 4096² frame has ~10⁴ detections
    nearest, _ = cKDTree(np.column_stack([x, y])).query(np.column_stack([x, y]), k=2)
    return nearest[:, 1] > distance


def _clear_of(bad: np.ndarray, ix: np.ndarray, iy: np.ndarray, half: int) -> np.ndarray:
    """True where the (2·half+1)² box centred on (ix, iy) holds no bad pixel."""
    # a few thousand small boxes cost far less than a max filter over the whole image
    clear = np.empty(len(ix), bool)
    for i, (cx, cy) in enumerate(zip(ix, iy, strict=True)):
        box = bad[max(cy - half, 0) : cy + half + 1, max(cx - half, 0) : cx + half + 1]
        clear[i] = not box.any()
    return clear


def masked_sep_array(data: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """``data`` as sep wants it (float32, C order), zero where ``bad``; never a view."""
    work = as_sep_array(data)
    if np.shares_memory(work, data):
        work = work.copy()
    work[bad] = 0.0
    return work


def detect_bright(data: np.ndarray, bad: np.ndarray, noise: float) -> np.ndarray:
    """sep objects 10σ above the noise (the candidates for PSF and flux-ratio stars)."""
    work = masked_sep_array(data, bad)
    mask = as_sep_array(bad, np.uint8)
    try:
        return sep.extract(work, 10.0, err=float(noise), mask=mask, minarea=5)
    except Exception as exc:  # sep overflows on pathological inputs
        raise PsfError(f"star detection for the PSF failed: {exc}") from exc


def select_psf_stars(
    data: np.ndarray,
    bad: np.ndarray,
    noise: float,
    fwhm: float,
    saturation: float | None = None,
    max_stars: int = MAX_STARS,
    objects: np.ndarray | None = None,
) -> np.ndarray:
    """Positions (N, 2) of bright isolated stars in a background-subtracted image.

    ``objects`` are the :func:`detect_bright` detections of the same image when the
    caller already has them (they are found here otherwise).
    """
    if objects is None:
        objects = detect_bright(data, bad, noise)
    if len(objects) == 0:
        return np.zeros((0, 2))
    x, y = objects["x"], objects["y"]
    half = stamp_half_size(fwhm) + 2
    ny, nx = data.shape
    ok = (x > half) & (x < nx - 1 - half) & (y > half) & (y < ny - 1 - half)
    ok &= objects["flag"] == 0
    ok &= objects["b"] / np.maximum(objects["a"], 1e-3) > 0.6
    ok &= _isolated(x, y, ISOLATION_FWHM * fwhm)
    if saturation is not None:
        ok &= objects["peak"] < 0.5 * saturation  # also clear of non-linearity
    ok &= objects["peak"] > 20 * noise
    # a star touching a masked pixel gives a biased stamp
    ix, iy = np.rint(x).astype(int), np.rint(y).astype(int)
    ok[ok] = _clear_of(bad, ix[ok], iy[ok], half)
    order = np.argsort(-objects["flux"][ok])[:max_stars]
    x, y = x[ok][order], y[ok][order]
    if len(x):  # Gaussian-windowed centroids: unbiased to a small fraction of a pixel
        sig = max(fwhm, 1.0) / 2.3548
        work = masked_sep_array(data, bad)
        wx, wy, wflag = sep.winpos(
            work, x, y, np.full(len(x), sig), mask=as_sep_array(bad, np.uint8)
        )
        good = (wflag == 0) & (np.hypot(wx - x, wy - y) < 1.0)
        x, y = np.where(good, wx, x), np.where(good, wy, y)
    return np.column_stack([x, y])


def stack_psf(data: np.ndarray, positions: np.ndarray, fwhm: float) -> np.ndarray:
    """Median of recentred, unit-flux star stamps (odd square, centred, sum 1)."""
    half = stamp_half_size(fwhm)
    big = half + 2
    stamps = []
    for x, y in positions:
        ix, iy = round(x), round(y)
        stamp = data[iy - big : iy + big + 1, ix - big : ix + big + 1].astype(float)
        if stamp.shape != (2 * big + 1, 2 * big + 1):
            continue
        cx, cy = x - ix, y - iy  # centroid offset from the stamp's central pixel
        shifted = ndimage.shift(stamp, (-cy, -cx), order=3, mode="constant")
        cut = shifted[2:-2, 2:-2]
        flux = cut.sum()
        if flux > 0:
            stamps.append(cut / flux)
    if len(stamps) < MIN_STARS:
        raise PsfError(
            f"only {len(stamps)} clean isolated stars for the PSF (need {MIN_STARS}); "
            "the field is too sparse or the image too shallow for image subtraction"
        )
    psf = np.median(np.array(stamps), axis=0)
    # the median of normalised stamps is slightly biased in the wings; trim negative noise
    psf = np.clip(psf, 0, None)
    return psf / psf.sum()


def measure_psf(
    data: np.ndarray,
    bad: np.ndarray,
    noise: float,
    fwhm: float,
    saturation: float | None = None,
    objects: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """The stacked PSF of a background-subtracted image and the number of stars used.

    ``objects``: the image's :func:`detect_bright` detections, if already found.
    """
    positions = select_psf_stars(data, bad, noise, fwhm, saturation, objects=objects)
    return stack_psf(data, positions, fwhm), len(positions)


def psf_fwhm(psf: np.ndarray) -> float:
    """FWHM (px) of a stamp: radius where the azimuthal profile (interpolated) halves."""
    half = psf.shape[0] // 2
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    r = np.hypot(xx, yy).ravel()
    v = psf.ravel() / psf.max()
    edges = np.arange(0, half + 1, 0.5)
    idx = np.digitize(r, edges)
    prof = np.array(
        [v[idx == i].mean() if np.any(idx == i) else np.nan for i in range(1, len(edges))]
    )
    mid = 0.5 * (edges[1:] + edges[:-1])
    mid[0] = 0.0
    good = np.isfinite(prof)
    prof, mid = prof[good], mid[good]
    below = np.nonzero(prof < 0.5)[0]
    if len(below) == 0 or below[0] == 0:
        return float("nan")
    i = below[0]
    frac = (prof[i - 1] - 0.5) / (prof[i - 1] - prof[i])
    return float(2.0 * (mid[i - 1] + frac * (mid[i] - mid[i - 1])))


def encircled_energy(psf: np.ndarray, radius: float) -> float:
    """Fraction of the PSF flux within ``radius`` pixels of the stamp centre."""
    half = psf.shape[0] // 2
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    # 5×5 sub-pixel sampling of the circle edge
    sub = (np.arange(5) + 0.5) / 5 - 0.5
    inside = np.zeros_like(psf)
    for dy in sub:
        for dx in sub:
            inside += (xx + dx) ** 2 + (yy + dy) ** 2 <= radius**2
    return float((psf * inside / 25).sum() / psf.sum())
