"""Matching detections to reference stars projected through an approximate WCS.

Two stages. :func:`find_alignment` finds the rotation, scale and shift that
line the two lists up, by voting: for each trial rotation/scale (a grid fine
enough for the tolerance) every detection–reference difference vector inside
the search window goes into a 2-D histogram, and the true offset shows as a
peak far above the flat background of chance pairs. A coarse pass with large
cells picks the neighbourhood, a fine pass the exact trial. The pairs under
the peak give an affine transform, improved by nearest-neighbour matching.
:func:`match_nearest` then pairs stars one-to-one within a radius, which the
refinement shrinks as the WCS improves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.spatial import cKDTree

from pipeline.astrometry.errors import NoMatchError

COARSE_CELL_FACTOR = 4.0  # coarse cells are this many times the tolerance
MIN_SIGNIFICANCE = 5.0  # peak above the chance background, in Poisson sigmas
MAX_PAIRS_PER_TRIAL = 4_000_000  # memory guard for very dense lists


@dataclass
class Alignment:
    """How the projected reference stars line up with the detections.

    Attributes
    ----------
    transform : numpy.ndarray
        2×3 affine matrix taking projected reference pixels to detection pixels.
    rotation_deg, scale : float
        Rotation (counter-clockwise) and scale of the fitted transform.
    shift : tuple of float
        Where the transform moves the centre pixel to, relative to it (x, y pixels).
    det_index, ref_index : numpy.ndarray
        Matched pairs (indices into the lists given to :func:`find_alignment`).
    peak, background : float
        Pairs in the winning cell and the mean number expected by chance.
    significance : float
        ``(peak - background) / sqrt(background + 1)``.
    n_trials : int
        Rotation/scale trials evaluated.
    """

    transform: NDArray
    rotation_deg: float
    scale: float
    shift: tuple[float, float]
    det_index: NDArray
    ref_index: NDArray
    peak: float
    background: float
    significance: float
    n_trials: int

    def apply(self, xy: NDArray) -> NDArray:
        """Apply the affine transform to reference pixel positions (N×2)."""
        return apply_affine(self.transform, xy)


def apply_affine(transform: NDArray, xy: NDArray) -> NDArray:
    xy = np.asarray(xy, float).reshape(-1, 2)
    return xy @ transform[:, :2].T + transform[:, 2]


def fit_affine(src: NDArray, dst: NDArray) -> NDArray:
    """Least-squares 2×3 affine transform taking ``src`` to ``dst`` (N×2 each, N >= 3)."""
    design = np.c_[src, np.ones(len(src))]
    solution, *_ = np.linalg.lstsq(design, dst, rcond=None)
    return solution.T


def match_nearest(
    det_xy: NDArray, ref_xy: NDArray, radius: float
) -> tuple[NDArray, NDArray, NDArray]:
    """One-to-one nearest-neighbour pairs closer than ``radius`` pixels.

    Each detection takes its nearest reference star; when several detections
    take the same star, only the closest pair is kept.

    Returns
    -------
    det_index, ref_index, distance : numpy.ndarray
    """
    empty = (np.zeros(0, int), np.zeros(0, int), np.zeros(0))
    if len(det_xy) == 0 or len(ref_xy) == 0:
        return empty
    tree = cKDTree(ref_xy)
    distance, ref_index = tree.query(det_xy, distance_upper_bound=radius)
    found = np.isfinite(distance)
    det_index = np.flatnonzero(found)
    ref_index, distance = ref_index[found], distance[found]
    order = np.argsort(distance, kind="stable")
    _, first = np.unique(ref_index[order], return_index=True)
    keep = np.sort(order[first])
    return det_index[keep], ref_index[keep], distance[keep]


def _trial_grid(limit: float, step: float) -> NDArray:
    if limit <= 0 or step <= 0:
        return np.zeros(1)
    n = int(np.ceil(limit / step))
    return np.linspace(-n * step, n * step, 2 * n + 1)


def _transformed(ref_xy: NDArray, center: NDArray, angle: float, scale: float) -> NDArray:
    c, s = np.cos(angle), np.sin(angle)
    rel = ref_xy - center
    return center + scale * np.c_[c * rel[:, 0] - s * rel[:, 1], s * rel[:, 0] + c * rel[:, 1]]


def _candidate_pairs(det_xy: NDArray, ref_xy: NDArray, reach: float) -> tuple[NDArray, NDArray]:
    """All detection/reference pairs closer than ``reach`` pixels (indices)."""
    pairs = cKDTree(det_xy).sparse_distance_matrix(cKDTree(ref_xy), reach, output_type="ndarray")
    return pairs["i"].astype(int), pairs["j"].astype(int)


def _vote(diff: NDArray, max_shift: float, cell: float) -> tuple[float, tuple, float]:
    """Best 2×2-cell block of the offset histogram: (count, shift, chance count)."""
    dx, dy = diff[:, 0], diff[:, 1]
    inside = (np.abs(dx) < max_shift) & (np.abs(dy) < max_shift)
    dx, dy = dx[inside], dy[inside]
    n_side = max(int(np.ceil(2 * max_shift / cell)), 2)
    ix = np.clip(((dx + max_shift) / cell).astype(int), 0, n_side - 1)
    iy = np.clip(((dy + max_shift) / cell).astype(int), 0, n_side - 1)
    counts = np.bincount(iy * n_side + ix, minlength=n_side * n_side).reshape(n_side, n_side)
    # 2×2 block sums so that a peak split across cell edges still counts whole
    blocks = counts[:-1, :-1] + counts[1:, :-1] + counts[:-1, 1:] + counts[1:, 1:]
    by, bx = np.unravel_index(np.argmax(blocks), blocks.shape)
    shift = ((bx + 1) * cell - max_shift, (by + 1) * cell - max_shift)
    peak = float(blocks[by, bx])
    # chance pairs expected in a block, from the cells outside the peak block
    background = 4.0 * (len(dx) - peak) / max(counts.size - 4, 1)
    return peak, shift, background


def _search(det_xy, ref_xy, pairs, center, max_shift, cell, rotations, scales):
    """Try every rotation/scale on the candidate ``pairs``; the best by peak significance."""
    det_pts, ref_pts = det_xy[pairs[0]], ref_xy[pairs[1]]
    best = None
    for angle in rotations:
        for scale in scales:
            diff = det_pts - _transformed(ref_pts, center, angle, scale)
            peak, shift, background = _vote(diff, max_shift, cell)
            score = (peak - background) / np.sqrt(background + 1.0)
            if best is None or score > best[0]:
                best = (score, angle, scale, shift, peak, background)
    return best


def _limit_sizes(det_xy: NDArray, ref_xy: NDArray) -> tuple[NDArray, NDArray]:
    """Cut the lists (brightest first) so the candidate pairs stay within the memory guard."""
    n, m = len(det_xy), len(ref_xy)
    while n * m > MAX_PAIRS_PER_TRIAL:
        n, m = max(int(n * 0.8), 10), max(int(m * 0.8), 10)
    return det_xy[:n], ref_xy[:m]


def find_alignment(
    det_xy: NDArray,
    ref_xy: NDArray,
    *,
    center: tuple[float, float],
    max_shift: float,
    max_rotation_deg: float = 1.0,
    max_scale_error: float = 0.01,
    tolerance: float = 4.0,
    min_pairs: int = 6,
) -> Alignment:
    """Find the rotation/scale/shift that lines up detections and projected references.

    Parameters
    ----------
    det_xy, ref_xy : numpy.ndarray
        N×2 pixel positions, brightest first (a few hundred of each is plenty).
    center : (float, float)
        Pixel about which rotation and scale are tried (the image centre).
    max_shift : float
        Largest offset searched, pixels.
    max_rotation_deg, max_scale_error : float
        Largest rotation (degrees) and fractional scale error searched.
    tolerance : float
        Positional slack (pixels) for distortion left in the approximate WCS.
    min_pairs : int
        Fewest matched pairs accepted.

    Raises
    ------
    NoMatchError
        When no trial gives a significant peak or too few pairs match.
    """
    det_xy, ref_xy = _limit_sizes(np.asarray(det_xy, float), np.asarray(ref_xy, float))
    if len(det_xy) < 3 or len(ref_xy) < 3:
        raise NoMatchError(
            f"no match between {len(det_xy)} detections and {len(ref_xy)} catalogue stars: "
            "at least 3 of each are needed"
        )
    center = np.asarray(center, float)
    radius = max(float(np.max(np.hypot(*(det_xy - center).T))), 1.0)
    rot_limit, scale_limit = np.deg2rad(max_rotation_deg), max_scale_error
    coarse_cell = max(COARSE_CELL_FACTOR * tolerance, max_shift / 64.0)
    coarse_step = coarse_cell / radius
    # a pair can only vote if it is this close under some trial rotation/scale
    reach = np.sqrt(2) * (max_shift + coarse_cell) + radius * (rot_limit + scale_limit)
    pairs = _candidate_pairs(det_xy, ref_xy, reach)
    coarse = _search(
        det_xy,
        ref_xy,
        pairs,
        center,
        max_shift + coarse_cell,
        coarse_cell,
        _trial_grid(rot_limit, coarse_step),
        1.0 + _trial_grid(scale_limit, coarse_step),
    )
    n_trials = len(_trial_grid(rot_limit, coarse_step)) * len(_trial_grid(scale_limit, coarse_step))
    significance, angle0, scale0, shift0, peak, background = coarse
    fine_cell = max(tolerance, 1.0)
    fine_step = fine_cell / radius
    fine_rot = angle0 + _trial_grid(coarse_step if rot_limit > 0 else 0, fine_step)
    fine_scale = scale0 + _trial_grid(coarse_step if scale_limit > 0 else 0, fine_step)
    n_trials += len(fine_rot) * len(fine_scale)
    # the fine pass only needs a window around the coarse shift
    window = 1.5 * coarse_cell + fine_cell
    shifted_ref = ref_xy + np.asarray(shift0)
    near = _candidate_pairs(det_xy, shifted_ref, np.sqrt(2) * window + 2 * coarse_cell)
    _, angle, scale, shift, _, _ = _search(
        det_xy,
        shifted_ref,
        near,
        center + np.asarray(shift0),
        window,
        fine_cell,
        fine_rot,
        fine_scale,
    )
    shift = (shift[0] + shift0[0], shift[1] + shift0[1])
    moved = _transformed(ref_xy, center, angle, scale) + np.asarray(shift)
    transform = _initial_transform(center, angle, scale, shift)
    det_index, ref_index = _grow_matches(det_xy, ref_xy, moved, transform, fine_cell)
    if significance < MIN_SIGNIFICANCE or len(det_index) < min_pairs:
        raise NoMatchError(
            f"no match between {len(det_xy)} detections and {len(ref_xy)} catalogue stars "
            f"within {max_shift:.0f} pixels and {max_rotation_deg:g}° of the approximate WCS "
            f"(best offset has {peak:.0f} pairs where {background:.1f} are expected by "
            f"chance): the WCS may be too far off — enlarge the search or solve blindly"
        )
    transform = fit_affine(ref_xy[ref_index], det_xy[det_index])
    # report the fitted transform, not the trial cell it was found in
    matrix = transform[:, :2]
    moved_center = apply_affine(transform, center)[0] - center
    return Alignment(
        transform=transform,
        rotation_deg=float(np.rad2deg(np.arctan2(matrix[1, 0] - matrix[0, 1], matrix.trace()))),
        scale=float(np.sqrt(abs(np.linalg.det(matrix)))),
        shift=(float(moved_center[0]), float(moved_center[1])),
        det_index=det_index,
        ref_index=ref_index,
        peak=peak,
        background=background,
        significance=float(significance),
        n_trials=n_trials,
    )


def _initial_transform(center, angle, scale, shift) -> NDArray:
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    matrix = np.array([[c, -s], [s, c]])
    offset = center + np.asarray(shift) - matrix @ center
    return np.c_[matrix, offset]


def _grow_matches(det_xy, ref_xy, moved, transform, radius, passes: int = 3):
    """Nearest-neighbour pairs under the transform, refitting an affine between passes."""
    det_index, ref_index, _ = match_nearest(det_xy, moved, radius)
    for _ in range(passes):
        if len(det_index) < 6:
            break
        transform = fit_affine(ref_xy[ref_index], det_xy[det_index])
        moved = apply_affine(transform, ref_xy)
        new_det, new_ref, _ = match_nearest(det_xy, moved, radius)
        if len(new_det) <= len(det_index) and np.array_equal(new_det, det_index):
            break
        det_index, ref_index = new_det, new_ref
    return det_index, ref_index
