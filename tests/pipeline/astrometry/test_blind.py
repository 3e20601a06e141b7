"""Blind solving with solve-field on the object list, offline, with indexes built from the
simulated catalogue; then refinement to the acceptance accuracy."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from pipeline.astrometry import (
    AstrometryConfig,
    BlindHints,
    PoorSolutionError,
    SolverCancelled,
    SolverFailed,
    SolverUnavailable,
    build_catalog_indexes,
    index_scales,
    run_solve_field,
    solve_astrometry,
    solve_field_available,
    wcs_grid_difference,
)
from pipeline.astrometry.blind import write_xylist
from pipeline.astrometry.indexes import (
    catalog_extent_arcmin,
    catalog_hash,
    preset_quad_range,
    write_backend_config,
)
from pipeline.astrometry.sources import reference_stars, select_detections

GRID_RMS_PX = 0.1  # the same acceptance tolerance as the refinement from a header WCS

needs_solvefield = pytest.mark.skipif(
    not solve_field_available(),
    reason="astrometry.net solve-field not installed (apt-get install astrometry.net)",
)


# --- no binary needed ------------------------------------------------------------------


def test_index_scales_cover_a_tenth_to_the_whole_field():
    assert preset_quad_range(0) == pytest.approx((2.0, 2.8))
    assert preset_quad_range(2) == pytest.approx((4.0, 5.6))
    presets = index_scales(27.3)  # the 2048² simulated field at 0.8″/px
    assert presets[0] == 0 and presets[-1] == 7
    low, high = preset_quad_range(presets[0])[1], preset_quad_range(presets[-1])[0]
    assert low >= 2.73 and high <= 27.3
    assert index_scales(3.0)[0] == -5  # tiny fields use the smallest preset
    assert index_scales(5000.0)[-1] == 19


def test_xylist_is_one_based_and_brightest_first(small_field, tmp_path):
    detections = select_detections(small_field.objects)
    n = write_xylist(detections, small_field.shape, tmp_path / "field.xyls")
    with fits.open(tmp_path / "field.xyls") as hdul:
        table = hdul[1].data
        assert hdul[1].header["IMAGEW"] == 1024
        assert np.allclose(table["X"], detections.x[:n] + 1.0)
        assert np.all(np.diff(table["FLUX"]) <= 0)


def test_catalogue_hash_and_extent(small_field):
    refs = reference_stars(small_field.sky.catalog)
    assert catalog_hash(refs) == catalog_hash(reference_stars(small_field.sky.catalog.copy()))
    moved = small_field.sky.catalog.copy()
    moved["RAJ2000"][0] += 1e-4
    assert catalog_hash(reference_stars(moved)) != catalog_hash(refs)
    # 1024 px at 0.8″ plus the 40-px margin, across the diagonal: ~20 arcmin
    assert 18 < catalog_extent_arcmin(refs) < 24


def test_backend_config_lists_indexes(tmp_path):
    path = write_backend_config(
        tmp_path / "astrometry.cfg",
        index_files=[tmp_path / "a.fits"],
        index_dirs=[tmp_path],
        cpu_limit_s=12.5,
    )
    lines = path.read_text().splitlines()
    assert f"index {tmp_path / 'a.fits'}" in lines
    assert f"add_path {tmp_path}" in lines and "autoindex" in lines and "cpulimit 13" in lines
    assert "inparallel" in lines  # small index sets share one CPU limit


def test_missing_program_is_reported(small_field, tmp_path):
    with pytest.raises(SolverUnavailable, match="not installed"):
        run_solve_field(
            select_detections(small_field.objects),
            small_field.shape,
            index_files=[tmp_path / "x.fits"],
            program="no-such-solve-field",
        )


# --- with solve-field ------------------------------------------------------------------


@pytest.fixture(scope="module")
def index_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("index-cache")


@pytest.fixture(scope="module")
def foreign_indexes(field, tmp_path_factory):
    """Indexes of another sky (the 2048² field's catalogue moved 3° north)."""
    if not solve_field_available():
        pytest.skip("astrometry.net not installed (apt-get install astrometry.net)")
    other = field.sky.catalog.copy()
    other["DEJ2000"] = np.asarray(other["DEJ2000"]) + 3.0
    folder = tmp_path_factory.mktemp("foreign-indexes")
    return build_catalog_indexes(reference_stars(other), index_scales(13.6), folder)


@pytest.mark.requires_solvefield
@needs_solvefield
@pytest.mark.parametrize("hints", ["header", "none"])
def test_blind_solved_offline_then_refined(field, index_cache, hints):
    header = field.sky.variant("no_wcs")  # RA/DEC pointing hints stay, 25″ off the truth
    if hints == "none":
        del header["RA"], header["DEC"]
    config = AstrometryConfig(index_cache_dir=str(index_cache), use_system_indexes=False)
    solution = solve_astrometry(field.objects, field.sky.catalog, header, field.shape, config)
    assert solution.method == "solve-field + builtin"
    assert wcs_grid_difference(solution.wcs, field.truth, field.shape)[0] <= GRID_RMS_PX
    assert solution.details["blind_matches"] > 100
    expected = "no hints" if hints == "none" else "RA 149."
    assert solution.details["blind_hints"].startswith(expected)
    # one index per preset for fields from a quarter of the catalogue's size to all of it
    extent = catalog_extent_arcmin(reference_stars(field.sky.catalog))
    assert len(list(index_cache.glob("*/index-*.fits"))) == len(index_scales(extent / 4, extent))


@pytest.mark.requires_solvefield
@needs_solvefield
def test_indexes_are_cached(small_field, tmp_path):
    refs = reference_stars(small_field.sky.catalog)
    first = build_catalog_indexes(refs, [2, 3], tmp_path)
    stamps = [path.stat().st_mtime_ns for path in first]
    again = build_catalog_indexes(refs, [2, 3], tmp_path)
    assert again == first and [path.stat().st_mtime_ns for path in again] == stamps


@pytest.mark.requires_solvefield
@needs_solvefield
def test_solve_field_result_and_scale_hints(small_field, tmp_path):
    refs = reference_stars(small_field.sky.catalog)
    files = build_catalog_indexes(refs, index_scales(13.6), tmp_path)
    result = run_solve_field(
        select_detections(small_field.objects),
        small_field.shape,
        index_files=files,
        hints=BlindHints(scale_low=0.7, scale_high=0.9),
        cpu_limit_s=30,
        work_dir=tmp_path,
    )
    # solve-field's order-2 tweak of an order-3 field: right to a pixel, not to 0.1 px
    assert wcs_grid_difference(result.wcs, small_field.truth, small_field.shape)[0] < 1.0
    assert result.wcs.sip is not None and result.wcs.sip.a_order == 2
    assert result.index.startswith("index-") and result.log_odds > 20
    assert not list(tmp_path.glob("skysift-solve-*"))  # the scratch folder was removed


@pytest.mark.requires_solvefield
@needs_solvefield
def test_field_not_in_the_indexes_fails(small_field, foreign_indexes):
    files = foreign_indexes
    with pytest.raises(SolverFailed, match="solve-field found no solution"):
        run_solve_field(
            select_detections(small_field.objects),
            small_field.shape,
            index_files=files,
            hints=BlindHints(scale_low=0.7, scale_high=0.9),
            cpu_limit_s=3,
        )


@pytest.mark.requires_solvefield
@needs_solvefield
def test_blind_solution_checked_against_the_catalogue(small_field, tmp_path):
    """solve-field solves the field from an index folder, but the catalogue given for the
    check belongs elsewhere: the solution is rejected, not passed on."""
    files = build_catalog_indexes(
        reference_stars(small_field.sky.catalog), index_scales(13.6), tmp_path / "cache"
    )
    wrong = small_field.sky.catalog.copy()
    wrong["DEJ2000"] = np.asarray(wrong["DEJ2000"]) + 0.05  # 3 arcmin north
    config = AstrometryConfig(
        build_indexes=False, index_dir=str(files[0].parent), blind_time_limit_s=20
    )
    with pytest.raises(PoorSolutionError, match="the blind solution was rejected"):
        solve_astrometry(
            small_field.objects,
            wrong,
            small_field.sky.variant("no_wcs"),
            small_field.shape,
            config,
        )


@pytest.mark.requires_solvefield
@needs_solvefield
def test_cancellation_stops_solve_field(small_field, foreign_indexes):
    files = foreign_indexes  # the field is not in them: solve-field would run on and on
    calls = []

    def cancelled() -> bool:
        calls.append(1)
        return len(calls) > 2  # let it start, then ask it to stop

    with pytest.raises(SolverCancelled, match="cancelled"):
        run_solve_field(
            select_detections(small_field.objects),
            small_field.shape,
            index_files=files,
            cpu_limit_s=60,
            cancelled=cancelled,
        )
