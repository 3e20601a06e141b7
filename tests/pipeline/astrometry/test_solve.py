"""solve_astrometry: choosing between refinement and blind solving, hints, final checks."""

from __future__ import annotations

import json

import pytest

from pipeline.astrometry import (
    AstrometryConfig,
    AstrometryError,
    PoorSolutionError,
    SolverUnavailable,
    solve_astrometry,
    wcs_grid_difference,
)
from pipeline.astrometry.solve import blind_hints, header_pixel_scale


def test_header_wcs_refined_by_default(small_field):
    header = small_field.header_with(small_field.approximate(20.0, 0.2))
    solution = solve_astrometry(
        small_field.objects, small_field.sky.catalog, header, small_field.shape
    )
    assert solution.method == "builtin"
    assert wcs_grid_difference(solution.wcs, small_field.truth, small_field.shape)[0] <= 0.1
    summary = solution.summary()
    assert json.loads(json.dumps(summary)) == summary and summary["total_seconds"] > 0
    cards = solution.fits_cards()
    assert cards["ASTRNMAT"][0] == solution.n_matches and cards["ASTRMETH"][0] == "builtin"


def test_keep_header_wcs_only_evaluates_it(small_field):
    solution = solve_astrometry(
        small_field.objects,
        small_field.sky.catalog,
        small_field.sky.header,
        small_field.shape,
        AstrometryConfig(astrometry_method="none"),
    )
    assert solution.method == "header"
    assert wcs_grid_difference(solution.wcs, small_field.truth, small_field.shape)[1] < 1e-6
    assert solution.n_matches > 200 and solution.rms_px < 0.4


def test_no_wcs_and_blind_solving_off(small_field):
    with pytest.raises(AstrometryError, match=r"no usable WCS .* blind solving is off"):
        solve_astrometry(
            small_field.objects,
            small_field.sky.catalog,
            small_field.sky.variant("no_wcs"),
            small_field.shape,
            AstrometryConfig(blind_solve="never"),
        )


def test_nova_without_key(small_field):
    with pytest.raises(SolverUnavailable, match=r"no nova\.astrometry\.net API key"):
        solve_astrometry(
            small_field.objects,
            small_field.sky.catalog,
            small_field.sky.header,
            small_field.shape,
            AstrometryConfig(blind_solve="always", blind_solver="nova"),
        )


def test_final_quality_limits(small_field):
    header = small_field.header_with(small_field.approximate(20.0, 0.2))
    with pytest.raises(PoorSolutionError, match=r"residual RMS .* exceeds 0\.01 px"):
        solve_astrometry(
            small_field.objects,
            small_field.sky.catalog,
            header,
            small_field.shape,
            AstrometryConfig(max_rms_px=0.01),
        )


def test_repaired_header_is_reported(small_field):
    header = small_field.sky.header.copy()
    header["RADECSYS"] = header.pop("RADESYS")  # an old spelling astropy would misread
    solution = solve_astrometry(
        small_field.objects, small_field.sky.catalog, header, small_field.shape
    )
    assert any("RADECSYS renamed" in text for text in solution.warnings)


def test_blind_hints_from_config_header_and_wcs(small_field):
    header = small_field.sky.variant("no_wcs")
    shape = small_field.shape
    from_header = blind_hints(header, shape, AstrometryConfig(), None)
    assert from_header.ra == pytest.approx(150.0, abs=0.02)  # RA/DEC cards, 25″ off
    assert from_header.radius_deg == 1.0 and not from_header.has_scale
    configured = blind_hints(
        header, shape, AstrometryConfig(blind_ra=10.0, blind_dec=-5.0, pixel_scale_hint=0.8), None
    )
    assert (configured.ra, configured.dec) == (10.0, -5.0)
    assert configured.scale_low == pytest.approx(0.64) and configured.scale_high == pytest.approx(
        0.96
    )
    del header["RA"], header["DEC"]
    assert not blind_hints(header, shape, AstrometryConfig(), None).has_position
    from_wcs = blind_hints(header, shape, AstrometryConfig(), small_field.truth)
    assert from_wcs.ra == pytest.approx(150.0, abs=1e-3)
    assert from_wcs.scale_low == pytest.approx(0.8 * 0.8, rel=1e-3)
    header["SECPIX"] = 1.25
    assert header_pixel_scale(header) == 1.25
