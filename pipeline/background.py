"""Smooth background and background-noise maps of an image (sep's mesh estimator).

The maps feed detection (threshold in units of the local noise), measurement
(global background removed before the local annulus correction, per-pixel noise
for the error model) and the ``image_bg.fits`` / ``image_rms.fits`` outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sep

# Below this many pixels per mesh cell the mode estimate is too noisy to be useful.
MIN_MESH = 8


@dataclass
class BackgroundMaps:
    """Background level and noise over the image, in image units.

    Attributes
    ----------
    level, rms : numpy.ndarray
        Full-resolution float32 maps, same shape as the image.
    global_level, global_rms : float
        sep's global (mesh-median) background and noise.
    mesh : int
        The mesh size actually used, in pixels.
    """

    level: np.ndarray
    rms: np.ndarray
    global_level: float
    global_rms: float
    mesh: int


def effective_mesh(shape: tuple[int, int], mesh: int) -> int:
    """Mesh size to use: ``mesh``, or half the shorter image side if that is smaller."""
    return int(max(MIN_MESH, min(mesh, min(shape) // 2)))


def as_sep_array(array: np.ndarray, dtype: type = np.float32) -> np.ndarray:
    """A native-byte-order C-contiguous copy-if-needed of ``array`` (sep needs both)."""
    return np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder("="))


def estimate_background(
    image: np.ndarray,
    bad: np.ndarray | None = None,
    mesh: int = 256,
    filter_size: int = 3,
) -> BackgroundMaps:
    """Estimate the background level and noise maps with sep's mesh estimator.

    Parameters
    ----------
    image : numpy.ndarray
        2-D image; non-finite pixels are ignored.
    bad : numpy.ndarray of bool, optional
        Pixels to leave out of the estimate (masked, saturated, cosmic, custom).
    mesh : int
        Requested mesh cell size in pixels (capped at half the shorter side).
    filter_size : int
        Median filter size applied to the mesh, in cells.

    Returns
    -------
    BackgroundMaps
        Level and noise maps; noise is floored at a tiny positive value so that
        later divisions by it are safe.

    Raises
    ------
    ValueError
        If no usable pixel remains.
    """
    finite = np.isfinite(image)
    excluded = ~finite if bad is None else (~finite | bad)
    if excluded.all():
        raise ValueError("no usable pixels for the background estimate: all are masked or NaN")
    data = as_sep_array(np.where(finite, image, 0.0))
    size = effective_mesh(image.shape, mesh)
    bkg = sep.Background(
        data,
        mask=as_sep_array(excluded, np.uint8),
        bw=size,
        bh=size,
        fw=filter_size,
        fh=filter_size,
    )
    level = bkg.back(dtype=np.float32)
    rms = bkg.rms(dtype=np.float32)
    # sep leaves the noise at zero in cells where every pixel is excluded: use the
    # global noise there so that thresholds and errors stay defined.
    global_rms = float(bkg.globalrms)
    floor = max(global_rms, 1e-12) if np.isfinite(global_rms) and global_rms > 0 else 1e-12
    np.copyto(rms, np.float32(floor), where=~(rms > 0))
    return BackgroundMaps(
        level=level,
        rms=rms,
        global_level=float(bkg.globalback),
        global_rms=floor,
        mesh=size,
    )
