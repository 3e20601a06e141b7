"""Offset/rotation voting and nearest-neighbour matching on synthetic star lists."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.astrometry.errors import NoMatchError
from pipeline.astrometry.match import apply_affine, find_alignment, fit_affine, match_nearest

CENTER = (1023.5, 1023.5)


def _lists(rotation_deg, scale, shift, n=400, n_extra=150, missing=0.25, noise=0.3, seed=0):
    """Reference positions and detections = reference turned, scaled, shifted, with
    noise, a fraction missing and unrelated extra detections (cosmics, galaxies)."""
    rng = np.random.default_rng(seed)
    ref = rng.uniform(0, 2047, (n, 2))
    t = np.deg2rad(rotation_deg)
    matrix = scale * np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    moved = (ref - CENTER) @ matrix.T + CENTER + shift + rng.normal(0, noise, (n, 2))
    keep = rng.uniform(size=n) > missing
    det = np.vstack([moved[keep], rng.uniform(0, 2047, (n_extra, 2))])
    order = rng.permutation(len(det))  # detections are not in reference order
    truth_ref = np.r_[np.flatnonzero(keep), np.full(n_extra, -1)][order]
    return det[order], ref, truth_ref, matrix


@pytest.mark.parametrize(
    ("rotation", "scale", "shift"),
    [(0.2, 1.0, (25.0, -12.0)), (-0.9, 1.006, (-60.0, 40.0)), (0.0, 0.994, (3.0, 0.5))],
)
def test_alignment_recovers_rotation_scale_shift(rotation, scale, shift):
    det, ref, truth_ref, _ = _lists(rotation, scale, np.array(shift))
    found = find_alignment(det, ref, center=CENTER, max_shift=80.0)
    assert found.rotation_deg == pytest.approx(rotation, abs=0.01)
    assert found.scale == pytest.approx(scale, abs=3e-4)
    assert found.shift == pytest.approx(shift, abs=0.2)
    # the returned pairs are true pairs (an extra detection may by chance sit within the
    # 4-pixel tolerance of a star whose own detection is missing: ~0.7 such cases expected)
    assert np.sum(truth_ref[found.det_index] != found.ref_index) <= 2
    assert len(found.det_index) >= 0.95 * np.sum(truth_ref >= 0)
    assert found.significance > 20
    # the affine transform maps references onto detections to the noise level
    residual = apply_affine(found.transform, ref[found.ref_index]) - det[found.det_index]
    assert np.sqrt(np.mean(residual**2)) < 0.5


def test_unrelated_lists_give_no_match():
    rng = np.random.default_rng(3)
    det, ref = rng.uniform(0, 2047, (300, 2)), rng.uniform(0, 2047, (600, 2))
    with pytest.raises(NoMatchError, match="no match between 300 detections and 600 catalogue"):
        find_alignment(det, ref, center=CENTER, max_shift=80.0)


def test_shift_beyond_the_search_is_not_invented():
    det, ref, _, _ = _lists(0.1, 1.0, np.array([300.0, 0.0]))
    with pytest.raises(NoMatchError, match="too far off"):
        find_alignment(det, ref, center=CENTER, max_shift=80.0)


def test_too_few_stars_is_a_clear_error():
    with pytest.raises(NoMatchError, match="at least 3 of each"):
        find_alignment(np.zeros((2, 2)), np.zeros((10, 2)), center=CENTER, max_shift=10.0)


def test_match_nearest_is_one_to_one():
    ref = np.array([[0.0, 0.0], [10.0, 0.0], [20.0, 0.0]])
    det = np.array([[0.2, 0.0], [0.5, 0.0], [10.1, 0.1], [50.0, 50.0]])
    det_i, ref_i, distance = match_nearest(det, ref, radius=1.0)
    # two detections near ref 0: only the closer one keeps it; the far one matches nothing
    assert det_i.tolist() == [0, 2]
    assert ref_i.tolist() == [0, 1]
    assert distance == pytest.approx([0.2, np.hypot(0.1, 0.1)])
    assert [len(v) for v in match_nearest(det[:0], ref, 1.0)] == [0, 0, 0]


def test_fit_affine_exact():
    rng = np.random.default_rng(4)
    src = rng.uniform(0, 100, (20, 2))
    transform = np.array([[1.01, -0.02, 5.0], [0.03, 0.99, -7.0]])
    dst = apply_affine(transform, src)
    assert fit_affine(src, dst) == pytest.approx(transform, abs=1e-10)
