"""Solution checks, WCS comparisons and the residual map."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table

from pipeline.astrometry import check_solution, plot_residual_map, wcs_grid_difference
from pipeline.astrometry.quality import binned_residuals
from pipeline.astrometry.solution import AstrometrySolution, residual_table


def test_true_wcs_accepted_wrong_one_rejected(field):
    good = check_solution(field.truth, field.objects, field.sky.catalog, field.shape)
    assert good.accepted and good.reason == ""
    assert good.n_matches > 500 and good.n_expected < 30
    assert good.rms_arcsec < 0.5
    wrong = check_solution(
        field.approximate(60.0, 0.5), field.objects, field.sky.catalog, field.shape
    )
    assert not wrong.accepted
    assert "expected by chance" in wrong.reason
    strict = check_solution(
        field.truth, field.objects, field.sky.catalog, field.shape, max_rms_arcsec=0.01
    )
    assert not strict.accepted and "exceeds the limit" in strict.reason


def test_empty_catalogue_is_rejected_with_the_reason(small_field):
    empty = small_field.sky.catalog[:0]
    report = check_solution(small_field.truth, small_field.objects, empty, small_field.shape)
    assert not report.accepted
    assert "0 catalogue stars: is the field outside the catalogue?" in report.reason


def test_grid_difference_measures_a_known_shift(small_field):
    assert wcs_grid_difference(small_field.truth, small_field.truth, small_field.shape) == (
        pytest.approx(0.0, abs=1e-7),
        pytest.approx(0.0, abs=1e-7),
    )
    tan = small_field.approximate(0.0, 0.0)  # no SIP: moving CRPIX is then a pure shift
    moved = tan.deepcopy()
    moved.wcs.crpix = moved.wcs.crpix + np.array([0.3, -0.4])
    moved.wcs.set()
    rms, worst = wcs_grid_difference(moved, tan, small_field.shape)
    assert rms == pytest.approx(0.5, abs=1e-6) and worst == pytest.approx(0.5, abs=1e-6)


def _solution_with_offset(wcs, shape, dx: float, n: int = 400) -> AstrometrySolution:
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, shape[1] - 1, n), rng.uniform(0, shape[0] - 1, n)
    ra, dec = wcs.all_pix2world(x + dx, y, 0)  # catalogue stars dx pixels to the right
    matches = residual_table(wcs, x, y, ra, dec)
    return AstrometrySolution(wcs, "builtin", matches, 3, n, n)


def test_residual_table_and_binned_medians(small_field):
    solution = _solution_with_offset(small_field.truth, small_field.shape, 0.25)
    assert np.allclose(solution.matches["dx"], 0.25, atol=1e-6)
    assert np.allclose(solution.matches["dy"], 0.0, atol=1e-6)
    assert solution.rms_px == pytest.approx(0.25, abs=1e-6)
    assert solution.rms_arcsec == pytest.approx(0.25 * 0.8, rel=1e-3)
    cx, _, mdx, mdy, count = binned_residuals(solution.matches, small_field.shape, bins=4)
    assert cx.shape == (4, 4) and count.sum() == 400
    assert np.allclose(mdx, 0.25, atol=1e-6) and np.allclose(mdy, 0.0, atol=1e-6)


def test_residual_map_png(small_field, output_dir):
    solution = _solution_with_offset(small_field.truth, small_field.shape, 0.1)
    path = output_dir / "residual_map.png"
    plot_residual_map(solution, small_field.shape, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    empty = AstrometrySolution(small_field.truth, "builtin", solution.matches[:0], 1, 0, 0)
    plot_residual_map(empty, small_field.shape, output_dir / "empty.png")  # no crash
    assert isinstance(solution.matches, Table)
