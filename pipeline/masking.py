"""The image mask: which pixels later steps must ignore, and why.

``mask.fits`` is a uint8 image whose bits say why each pixel is masked
(:class:`MaskBit`): not finite, outside the data section (or in the
overscan), saturated, hit by a cosmic ray, or masked by the user. Cosmic rays
are found with astroscrappy (L.A.Cosmic) fed with an empirical noise model, so
they are found on sky-subtracted images and with wrong gains too.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from enum import IntFlag
from pathlib import Path
from typing import Any

import astroscrappy
import numpy as np
from astropy.io import fits
from scipy import ndimage

from pipeline.fitsio import write_atomic
from pipeline.header import Section

log = logging.getLogger("skysift.masking")


class MaskBit(IntFlag):
    """Bits of ``mask.fits``; a pixel is masked when any bit is set."""

    NONFINITE = 1
    OUTSIDE_DATA = 2  # outside TRIMSEC/DATASEC, or in the overscan
    SATURATED = 4  # at or above saturation, grown by one pixel
    COSMIC = 8
    CUSTOM = 16  # drawn or uploaded by the user


MASK_BIT_DESCRIPTIONS: dict[MaskBit, str] = {
    MaskBit.NONFINITE: "pixel value is NaN or infinite",
    MaskBit.OUTSIDE_DATA: "outside the data section (TRIMSEC/DATASEC) or in the overscan",
    MaskBit.SATURATED: "saturated, or next to a saturated pixel",
    MaskBit.COSMIC: "cosmic-ray hit",
    MaskBit.CUSTOM: "masked by the user",
}

REGION_SHAPES = ("box", "circle", "polygon")
COSMIC_OVERLAP = 48  # rows shared by neighbouring strips; L.A.Cosmic's filters reach < 20 px
COSMIC_EDGE_PAD = 16  # mirrored margin, pixels
NEGATIVE_OUTLIER_SIGMA = 10.0  # deep negative pixels are defects, not sky: keep them out


# ------------------------------------------------------------------ simple masks


def section_mask(
    shape: tuple[int, int], data_section: Section | None, overscan: Section | None = None
) -> np.ndarray:
    """True outside the data section and inside the overscan region."""
    outside = np.zeros(shape, dtype=bool)
    if data_section is not None:
        outside[:] = True
        outside[data_section.slices] = False
    if overscan is not None:
        outside[overscan.slices] = True
    return outside


def saturation_mask(data: np.ndarray, saturation: float | None, grow: int) -> np.ndarray:
    """Pixels at or above ``saturation``, grown by ``grow`` pixels (bleed edges)."""
    if saturation is None:
        return np.zeros(data.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        saturated = data >= saturation
    if grow > 0 and saturated.any():
        saturated = ndimage.binary_dilation(saturated, np.ones((3, 3), bool), iterations=grow)
    return saturated


# ------------------------------------------------------------------ user regions


def _numbers(region: dict[str, Any], keys: Sequence[str], index: int) -> list[float]:
    try:
        values = [float(region[key]) for key in keys]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(
            f"region {index} ({region.get('shape')}): needs numbers {', '.join(keys)}"
        ) from exc
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"region {index} ({region.get('shape')}): values must be finite")
    return values


def _window(
    shape: tuple[int, int], xmin: float, xmax: float, ymin: float, ymax: float
) -> tuple[slice, slice, np.ndarray, np.ndarray] | None:
    """Pixel-centre grid of the image part that a bounding box touches."""
    ny, nx = shape
    x0, x1 = max(math.floor(xmin), 0), min(math.ceil(xmax) + 1, nx)
    y0, y1 = max(math.floor(ymin), 0), min(math.ceil(ymax) + 1, ny)
    if x1 <= x0 or y1 <= y0:
        return None
    ys, xs = np.mgrid[y0:y1, x0:x1]
    return slice(y0, y1), slice(x0, x1), xs.astype(float), ys.astype(float)


def _inside_polygon(xs: np.ndarray, ys: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Even-odd rule: count crossings of a ray towards +x with each edge."""
    inside = np.zeros(xs.shape, dtype=bool)
    x_a, y_a = points[-1]
    for x_b, y_b in points:
        crosses = (y_a > ys) != (y_b > ys)
        if y_b != y_a:
            x_cross = x_a + (ys - y_a) * (x_b - x_a) / (y_b - y_a)
            inside ^= crosses & (xs < x_cross)
        x_a, y_a = x_b, y_b
    return inside


def _rasterise(region: dict[str, Any], shape: tuple[int, int], index: int) -> tuple | None:
    kind = region.get("shape")
    if kind == "circle":
        x, y, radius = _numbers(region, ("x", "y", "radius"), index)
        window = _window(shape, x - radius, x + radius, y - radius, y + radius)
        if window is None:
            return None
        rows, cols, xs, ys = window
        return rows, cols, (xs - x) ** 2 + (ys - y) ** 2 <= radius**2
    if kind == "box":
        x, y, width, height = _numbers(region, ("x", "y", "width", "height"), index)
        angle = math.radians(float(region.get("angle", 0.0) or 0.0))
        reach = 0.5 * math.hypot(width, height)
        window = _window(shape, x - reach, x + reach, y - reach, y + reach)
        if window is None:
            return None
        rows, cols, xs, ys = window
        # rotate pixel offsets into the box frame (angle counter-clockwise from +x)
        u = (xs - x) * math.cos(angle) + (ys - y) * math.sin(angle)
        v = -(xs - x) * math.sin(angle) + (ys - y) * math.cos(angle)
        # half-open edges: an aligned box of integer size covers exactly width × height pixels
        inside = (-width / 2 <= u) & (u < width / 2) & (-height / 2 <= v) & (v < height / 2)
        return rows, cols, inside
    if kind == "polygon":
        try:
            points = np.asarray(region["points"], dtype=float)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"region {index} (polygon): needs 'points' as [[x, y], ...]") from exc
        if points.ndim != 2 or points.shape[1] != 2 or len(points) < 3:
            raise ValueError(f"region {index} (polygon): needs at least 3 [x, y] points")
        if not np.all(np.isfinite(points)):
            raise ValueError(f"region {index} (polygon): points must be finite")
        window = _window(
            shape, points[:, 0].min(), points[:, 0].max(), points[:, 1].min(), points[:, 1].max()
        )
        if window is None:
            return None
        rows, cols, xs, ys = window
        return rows, cols, _inside_polygon(xs, ys, points)
    raise ValueError(
        f"region {index}: unknown shape {kind!r}; use one of {', '.join(REGION_SHAPES)}"
    )


def mask_from_regions(
    regions: Sequence[dict[str, Any]], shape: tuple[int, int], invert: bool = False
) -> np.ndarray:
    """Rasterise user-drawn regions into a boolean mask.

    Coordinates are 0-based pixels (the centre of the first pixel is 0, 0);
    a pixel is inside when its centre is. Box edges are half-open (left and
    bottom inclusive), so an aligned box of integer size covers exactly
    ``width × height`` pixels; circle and polygon edges are inclusive.

    Parameters
    ----------
    regions : sequence of dict
        ``{"shape": "box", "x", "y", "width", "height", "angle" (deg, optional)}``
        (centre and size), ``{"shape": "circle", "x", "y", "radius"}`` or
        ``{"shape": "polygon", "points": [[x, y], ...]}``.
    shape : tuple of int
        ``(ny, nx)`` of the image.
    invert : bool
        If True the regions mark the usable area and everything else is masked.

    Raises
    ------
    ValueError
        For an unknown shape or missing/invalid coordinates.
    """
    mask = np.zeros(shape, dtype=bool)
    for index, region in enumerate(regions):
        if not isinstance(region, dict):
            raise ValueError(f"region {index}: expected an object, got {type(region).__name__}")
        painted = _rasterise(region, shape, index)
        if painted is not None:
            rows, cols, inside = painted
            mask[rows, cols] |= inside
    return ~mask if invert else mask


def load_regions(path: str | os.PathLike) -> tuple[list[dict[str, Any]], bool]:
    """Read ``custom_mask.json``: a list of regions, or ``{"regions": [...], "invert": bool}``."""
    try:
        content = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read the custom mask regions {Path(path).name}: {exc}") from exc
    if isinstance(content, list):
        return content, False
    if isinstance(content, dict) and isinstance(content.get("regions"), list):
        return content["regions"], bool(content.get("invert", False))
    raise ValueError(
        f"{Path(path).name} must hold a list of regions or an object with a 'regions' list"
    )


# ------------------------------------------------------------------ cosmic rays


def noise_variance(data: np.ndarray, level: np.ndarray, rms: np.ndarray, gain: float) -> np.ndarray:
    """Per-pixel variance: empirical sky noise plus Poisson noise of the sources.

    Using the measured background RMS instead of ``sky / gain`` keeps the model
    right on sky-subtracted images and when the gain is wrong.
    """
    signal = np.clip(data - level, 0.0, None)
    return (rms.astype(np.float32) ** 2 + signal / np.float32(gain)).astype(np.float32)


def _single_openmp_thread(active: bool) -> contextlib.AbstractContextManager:
    """Limit OpenMP to one thread per caller while our own threads provide the parallelism."""
    if not active:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits  # installed with scikit-learn
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="openmp")


def _strips(ny: int, count: int, overlap: int) -> list[tuple[slice, slice, slice]]:
    """Row strips: (rows to process, rows of the result they own, same rows within strip)."""
    edges = np.linspace(0, ny, count + 1).round().astype(int)
    strips = []
    for start, stop in itertools.pairwise(edges):
        lo, hi = max(start - overlap, 0), min(stop + overlap, ny)
        strips.append((slice(lo, hi), slice(start, stop), slice(start - lo, stop - lo)))
    return strips


def cosmic_ray_mask(
    data: np.ndarray,
    bad: np.ndarray,
    level: np.ndarray,
    rms: np.ndarray,
    gain: float,
    *,
    sigclip: float,
    sigfrac: float,
    objlim: float,
    niter: int,
    workers: int,
    progress: Callable[[float], None] | None = None,
) -> np.ndarray:
    """Find cosmic-ray hits with astroscrappy (L.A.Cosmic).

    The image is cut into ``workers`` overlapping row strips processed in
    parallel threads (astroscrappy's heavy loops release the GIL), and each
    strip keeps the rows it owns.

    Parameters
    ----------
    data : numpy.ndarray
        Image in ADU.
    bad : numpy.ndarray of bool
        Pixels astroscrappy must ignore (non-finite, saturated, outside data, user).
    level, rms : numpy.ndarray
        Background level and noise maps (ADU).
    gain : float
        e-/ADU, only for the Poisson term of the sources.
    sigclip, sigfrac, objlim, niter : float, float, float, int
        L.A.Cosmic detection threshold, neighbour threshold fraction,
        fine-structure contrast limit and number of iterations.
    workers : int
        Number of parallel strips.
    progress : callable, optional
        Called with the fraction of strips done.

    Returns
    -------
    numpy.ndarray of bool
    """
    filled = np.where(np.isfinite(data), data, level).astype(np.float32)
    variance = noise_variance(filled, level, rms, gain)
    with np.errstate(invalid="ignore"):
        ignore = bad | (filled < level - NEGATIVE_OUTLIER_SIGMA * rms)
    # astroscrappy's filters are one-sided at the array border and flag whole stars
    # there; mirrored margins give them a symmetric neighbourhood.
    pad = min(COSMIC_EDGE_PAD, min(data.shape) - 1)
    filled, variance, ignore = (np.pad(a, pad, mode="reflect") for a in (filled, variance, ignore))
    found_padded = np.zeros(filled.shape, dtype=bool)
    count = max(1, min(workers, filled.shape[0] // (4 * COSMIC_OVERLAP)))
    strips = _strips(filled.shape[0], count, COSMIC_OVERLAP)

    def run(strip: tuple[slice, slice, slice]) -> None:
        rows, own, own_local = strip
        found, _ = astroscrappy.detect_cosmics(
            np.ascontiguousarray(filled[rows]),
            inmask=np.ascontiguousarray(ignore[rows]),
            invar=np.ascontiguousarray(variance[rows]),
            sigclip=sigclip,
            sigfrac=sigfrac,
            objlim=objlim,
            gain=1.0,  # data and variance are both in ADU; the noise model is ours
            readnoise=0.0,
            satlevel=np.inf,  # saturated pixels are already in ``bad``
            niter=niter,
            cleantype="medmask",
        )
        found_padded[own] = found[own_local]

    done = 0
    # astroscrappy's OpenMP loops and our strip threads would compete for the same
    # cores (measured: 2 strips with 2 OpenMP threads each run slower than 1 strip).
    with _single_openmp_thread(len(strips) > 1), ThreadPoolExecutor(len(strips)) as pool:
        for future in [pool.submit(run, strip) for strip in strips]:
            future.result()
            done += 1
            if progress is not None:
                progress(done / len(strips))
    ny, nx = data.shape
    return found_padded[pad : pad + ny, pad : pad + nx] & ~bad


# ---------------------------------------------------------------- mask file


def combine_masks(layers: dict[MaskBit, np.ndarray | None], shape: tuple[int, int]) -> np.ndarray:
    """OR boolean layers into one uint8 bit mask."""
    bits = np.zeros(shape, dtype=np.uint8)
    for bit, layer in layers.items():
        if layer is not None:
            bits[layer] |= np.uint8(bit)
    return bits


def bit_counts(bits: np.ndarray) -> dict[str, int]:
    """Number of pixels carrying each bit, keyed by the bit's name in lower case."""
    return {bit.name.lower(): int(np.count_nonzero(bits & bit)) for bit in MaskBit}


def write_mask(path: str | os.PathLike, bits: np.ndarray) -> None:
    """Write a bit mask as uint8 FITS with the meaning of each bit in the header."""
    header = fits.Header()
    for bit, text in MASK_BIT_DESCRIPTIONS.items():
        header[f"MASKB{int(bit)}"] = (bit.name, text[:46])
    header["COMMENT"] = "Pixel is masked when non-zero; bits are OR-ed together."
    write_atomic(fits.PrimaryHDU(data=bits.astype(np.uint8), header=header), path)


def write_custom_mask(path: str | os.PathLike, mask: np.ndarray) -> None:
    """Write the user's mask as uint8 FITS (1 = masked)."""
    header = fits.Header()
    header["COMMENT"] = "SkySift custom mask: 1 = masked by the user."
    write_atomic(fits.PrimaryHDU(data=mask.astype(np.uint8), header=header), path)


def read_custom_mask(path: str | os.PathLike, shape: tuple[int, int]) -> np.ndarray:
    """Read an uploaded ``custom_mask.fits`` (non-zero = masked) and check its shape."""
    with fits.open(path) as hdul:
        images = [h for h in hdul if h.data is not None and h.data.ndim == 2]
        if not images:
            raise ValueError(f"{Path(path).name} holds no 2-D mask image")
        mask = np.asarray(images[0].data)
    if mask.shape != tuple(shape):
        raise ValueError(
            f"{Path(path).name} is {mask.shape[1]}×{mask.shape[0]} pixels but the image is "
            f"{shape[1]}×{shape[0]}; draw or upload a mask of the image's size"
        )
    if mask.dtype.kind == "f":
        return (mask != 0) & np.isfinite(mask)
    return mask != 0
