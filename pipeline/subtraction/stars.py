"""Stars seen alike in both images: where kernel-fitting engines learn the matching kernel.

SFFT solves its kernel from the pixels around such stars only, and HOTPANTS places its
sub-stamps on them. A usable star is detected in both images at the same place, is
unsaturated and clear of masked pixels and of the sub-image border, and has the flux ratio
of the pair: a transient, a variable star or a blend is far off the median ratio and is
dropped, so that it cannot bend the kernel towards subtracting itself.
"""

from __future__ import annotations

import numpy as np
import sep
from scipy import ndimage

from pipeline.background import as_sep_array
from pipeline.subtraction.base import SubtractionInputs

SATURATION_MARGIN = 0.8  # peaks above this fraction of saturation may be non-linear
RATIO_APERTURE_FWHM = 2.0  # radius of the flux-ratio aperture, FWHM of the broader image
RATIO_CLIP = 3.0  # drop stars this many robust sigmas off the median flux ratio


def _detect(data: np.ndarray, bad: np.ndarray, noise: float, thresh: float) -> np.ndarray:
    work = as_sep_array(np.where(bad, 0.0, data))
    try:
        return sep.extract(
            work, thresh, err=float(noise), mask=as_sep_array(bad, np.uint8), minarea=5
        )
    except Exception:  # sep's pixel-stack overflow on pathological inputs: no stars
        return np.zeros(0, dtype=[("x", float), ("y", float)])


def _ratio_outliers(ratio: np.ndarray) -> np.ndarray:
    """True for ratios more than RATIO_CLIP robust sigmas from the median (log scale)."""
    log = np.log(np.clip(ratio, 1e-12, None))
    med = np.median(log)
    mad = 1.4826 * np.median(np.abs(log - med))
    return np.abs(log - med) > RATIO_CLIP * max(mad, 0.02)


def matched_stars(
    inputs: SubtractionInputs,
    thresh: float = 10.0,
    max_stars: int = 300,
    border: float = 0.0,
) -> np.ndarray:
    """Positions (N, 2; x, y, 0-based) of stars usable for kernel fitting, brightest first.

    Parameters
    ----------
    inputs : SubtractionInputs
        The (sub-)image pair.
    thresh : float
        Detection threshold in each image, in units of its background noise.
    max_stars : int
        At most this many stars are returned.
    border : float
        Stars closer than this to the edge or to a masked pixel are dropped (pixels).
    """
    fwhm = max(inputs.image_fwhm, inputs.template_fwhm)
    sci = _detect(inputs.image, inputs.image_bad, inputs.image_noise, thresh)
    tpl = _detect(inputs.template, inputs.template_bad, inputs.template_noise, thresh)
    if len(sci) == 0 or len(tpl) == 0:
        return np.zeros((0, 2))
    ok = sci["flag"] == 0
    ok &= sci["b"] / np.maximum(sci["a"], 1e-3) > 0.5
    if inputs.image_saturation is not None:
        ok &= sci["peak"] < SATURATION_MARGIN * inputs.image_saturation
    sci = sci[ok]
    # the nearest template detection within half a FWHM is the same star
    d2 = (sci["x"][:, None] - tpl["x"][None, :]) ** 2 + (sci["y"][:, None] - tpl["y"][None, :]) ** 2
    nearest = np.argmin(d2, axis=1) if len(sci) else np.zeros(0, int)
    ok = d2[np.arange(len(sci)), nearest] < (0.5 * fwhm) ** 2 if len(sci) else np.zeros(0, bool)
    twin = tpl[nearest]
    ok &= twin["flag"] == 0
    if inputs.template_saturation is not None:
        ok &= twin["peak"] < SATURATION_MARGIN * inputs.template_saturation
    x, y = sci["x"][ok], sci["y"][ok]
    ny, nx = inputs.image.shape
    ok = (x >= border) & (x <= nx - 1 - border) & (y >= border) & (y <= ny - 1 - border)
    bad = inputs.image_bad | inputs.template_bad
    if bad.any() and border > 0:
        near_bad = ndimage.binary_dilation(bad, iterations=int(np.ceil(border)))
        ok &= ~near_bad[
            np.clip(np.rint(y), 0, ny - 1).astype(int), np.clip(np.rint(x), 0, nx - 1).astype(int)
        ]
    x, y = x[ok], y[ok]
    if len(x) == 0:
        return np.zeros((0, 2))
    radius = RATIO_APERTURE_FWHM * fwhm
    mask = as_sep_array(bad, np.uint8)
    f_sci, _, fl1 = sep.sum_circle(as_sep_array(inputs.image), x, y, radius, mask=mask)
    f_tpl, _, fl2 = sep.sum_circle(as_sep_array(inputs.template), x, y, radius, mask=mask)
    ok = (f_sci > 0) & (f_tpl > 0) & (fl1 == 0) & (fl2 == 0)
    x, y, f_sci, f_tpl = x[ok], y[ok], f_sci[ok], f_tpl[ok]
    if len(x) >= 3:
        keep = ~_ratio_outliers(f_tpl / f_sci)
        x, y, f_sci = x[keep], y[keep], f_sci[keep]
    order = np.argsort(-f_sci)[:max_stars]
    return np.column_stack([x[order], y[order]])


def star_footprints(shape: tuple[int, int], positions: np.ndarray, radius: float) -> np.ndarray:
    """Boolean map of the discs of ``radius`` pixels around ``positions`` (x, y)."""
    keep = np.zeros(shape, bool)
    r = int(np.ceil(radius))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    ny, nx = shape
    for x, y in positions:
        ix, iy = round(float(x)), round(float(y))
        disc = (xx + ix - x) ** 2 + (yy + iy - y) ** 2 <= radius**2
        y0, y1 = max(iy - r, 0), min(iy + r + 1, ny)
        x0, x1 = max(ix - r, 0), min(ix + r + 1, nx)
        keep[y0:y1, x0:x1] |= disc[y0 - iy + r : y1 - iy + r, x0 - ix + r : x1 - ix + r]
    return keep
