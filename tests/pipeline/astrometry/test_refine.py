"""Acceptance: the built-in refinement recovers the true WCS from a perturbed one."""

from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from pipeline.astrometry import (
    AstrometryError,
    NoMatchError,
    RefineSettings,
    plot_residual_map,
    refine_wcs,
    wcs_grid_difference,
)
from pipeline.astrometry.fit import min_stars_for_order
from pipeline.astrometry.wcsfile import wcs_from_header
from pipeline.detection import DetectionConfig, detect_objects, windowed_positions
from pipeline.simulate.wcs import perturb_wcs
from pipeline.wcs_header import sanitize_wcs_header

# Acceptance tolerance: pixel positions predicted by the refined and the true WCS over a
# 41x41 grid covering the image agree to 0.1 px RMS.
GRID_RMS_PX = 0.1


def test_perturbed_wcs_without_distortion_refined_to_truth(field, output_dir):
    approximate = field.approximate(shift_arcsec=20.0, rot_deg=0.2)
    before, _ = wcs_grid_difference(approximate, field.truth, field.shape)
    assert before > 20  # the starting point is really off (20″ = 25 px, plus rotation)
    solution = refine_wcs(field.objects, field.sky.catalog, approximate, field.shape)
    rms, worst = wcs_grid_difference(solution.wcs, field.truth, field.shape)
    assert rms <= GRID_RMS_PX
    assert worst < 0.3
    assert solution.method == "builtin"
    assert solution.sip_order == 3  # the 3-pixel order-3 distortion was fitted, not inherited
    assert solution.n_matches > 1000
    # the residuals are the centroid noise of the detections: ~0.2 px here
    assert solution.rms_arcsec < 0.3
    assert solution.rms_px == pytest.approx(solution.rms_arcsec / 0.8, rel=0.01)
    assert solution.pixel_scale_arcsec == pytest.approx(0.8, rel=1e-4)
    summary = solution.summary()
    assert json.loads(json.dumps(summary)) == summary  # plain JSON numbers only
    assert summary["n_matches"] == solution.n_matches
    plot = output_dir / "residuals.png"
    plot_residual_map(solution, field.shape, plot)
    assert plot.stat().st_size > 10_000


def test_matched_rows_point_at_the_right_objects_and_catalogue_stars(field):
    solution = refine_wcs(
        field.objects, field.sky.catalog, field.approximate(20.0, 0.2), field.shape
    )
    matches = solution.matches
    stars = field.sky.truth.stars  # row-aligned with the catalogue
    objects = field.objects[np.asarray(matches["object_index"])]
    true_x = np.asarray(stars["x"])[np.asarray(matches["catalog_index"])]
    true_y = np.asarray(stars["y"])[np.asarray(matches["catalog_index"])]
    offset = np.hypot(np.asarray(objects["x"]) - true_x, np.asarray(objects["y"]) - true_y)
    assert np.mean(offset < 1.0) > 0.995
    assert np.all(np.asarray(matches["x"]) == np.asarray(objects["x"]))


@pytest.mark.parametrize(
    ("shift", "rotation", "keep_sip"), [(60.0, 1.0, False), (5.0, -0.5, True), (40.0, 0.0, True)]
)
def test_other_starting_errors(field, shift, rotation, keep_sip):
    approximate = field.approximate(shift, rotation, keep_sip=keep_sip)
    solution = refine_wcs(field.objects, field.sky.catalog, approximate, field.shape)
    assert wcs_grid_difference(solution.wcs, field.truth, field.shape)[0] <= GRID_RMS_PX


def test_scale_error_within_the_search(small_field):
    approximate = small_field.approximate(15.0, 0.1)
    approximate.wcs.cd = approximate.wcs.cd * 1.008
    approximate.wcs.set()
    solution = refine_wcs(
        small_field.objects, small_field.sky.catalog, approximate, small_field.shape
    )
    # the catalogue projected through the too-large CD matrix must be stretched by 1.008
    assert abs(solution.details["alignment_scale"] - 1.008) < 1e-3
    assert wcs_grid_difference(solution.wcs, small_field.truth, small_field.shape)[0] <= GRID_RMS_PX


def test_catalogue_outside_the_field_fails_clearly(field):
    far = field.sky.catalog.copy()
    far["RAJ2000"] = (np.asarray(far["RAJ2000"]) + 5.0) % 360
    n_det = int(np.sum((np.asarray(field.objects["flags"]) == 0) & (field.objects["flux"] > 0)))
    with pytest.raises(NoMatchError) as error:
        refine_wcs(field.objects, far, field.approximate(20, 0.2), field.shape)
    assert str(error.value).startswith(
        f"no match between {n_det} detections and 0 catalogue stars: "
        "is the field outside the catalogue?"
    )


def test_unrelated_catalogue_over_the_field_is_not_matched(field):
    rng = np.random.default_rng(11)
    fake = field.sky.catalog.copy()
    ra0, dec0 = 150.0, 20.0
    fake["RAJ2000"] = ra0 + rng.uniform(-0.25, 0.25, len(fake)) / np.cos(np.deg2rad(dec0))
    fake["DEJ2000"] = dec0 + rng.uniform(-0.25, 0.25, len(fake))
    with pytest.raises(NoMatchError, match="no match between"):
        refine_wcs(field.objects, fake, field.approximate(20, 0.2), field.shape)


def test_few_stars_lower_the_sip_order_with_a_warning(small_field):
    objects = small_field.objects.copy()
    objects.sort("flux", reverse=True)
    objects = objects[:40]
    solution = refine_wcs(
        objects, small_field.sky.catalog, small_field.approximate(20, 0.2), small_field.shape
    )
    assert 10 <= solution.n_matches < min_stars_for_order(3)
    assert solution.sip_order == 2
    assert any("only support SIP order 2" in text for text in solution.warnings)
    # still a good solution in the middle: the header-level accuracy of a few stars
    assert wcs_grid_difference(solution.wcs, small_field.truth, small_field.shape)[0] < 1.0


def test_too_few_matches_for_the_settings(small_field):
    objects = small_field.objects.copy()
    objects.sort("flux", reverse=True)
    with pytest.raises(AstrometryError, match="min_matches"):
        refine_wcs(
            objects[:60],
            small_field.sky.catalog,
            small_field.approximate(20, 0.2),
            small_field.shape,
            RefineSettings(min_matches=500),
        )


def test_input_tables_without_positions_or_catalogue_columns(small_field):
    with pytest.raises(AstrometryError, match="lacks the column"):
        refine_wcs(
            Table({"flux": [1.0]}), small_field.sky.catalog, small_field.truth, small_field.shape
        )
    with pytest.raises(AstrometryError, match="no right ascension column"):
        refine_wcs(small_field.objects, Table({"mag": [1.0]}), small_field.truth, small_field.shape)
    no_stars = small_field.objects.copy()
    no_stars["flux"] = -1.0
    with pytest.raises(NoMatchError, match="no usable detections"):
        refine_wcs(no_stars, small_field.sky.catalog, small_field.truth, small_field.shape)


def test_real_decam_pixels(real_data):
    """Real detections: the DECam science stack refined against a 'catalogue' made of the
    reference stack's detections (both stacks share one TPV grid). Many sources are faint
    or extended, so the pairs scatter by ~1 px: this checks the matching on real data, to
    a pixel, from a 35-pixel starting error."""
    folder = real_data / "sfft_decam"
    reference_wcs, reference_objects, _ = _decam(folder / "Stack-DEC-OBS04_ref.fits")
    science_wcs, science_objects, shape = _decam(folder / "Stack-DEC-OBS18_sci.fits")
    clean = (np.asarray(reference_objects["flags"]) == 0) & (reference_objects["flux"] > 0)
    ra, dec = reference_wcs.all_pix2world(
        reference_objects["x"][clean], reference_objects["y"][clean], 0
    )
    catalog = Table(
        {
            "RAJ2000": ra,
            "DEJ2000": dec,
            "rmag": -2.5 * np.log10(np.asarray(reference_objects["flux"][clean])),
        }
    )
    approximate = perturb_wcs(science_wcs, 3.0, 0.2, 40.0)
    assert wcs_grid_difference(approximate, science_wcs, shape)[0] > 30
    solution = refine_wcs(
        science_objects,
        catalog,
        approximate,
        shape,
        RefineSettings(sip_order=1, max_offset_arcsec=10.0),
    )
    assert solution.n_matches >= 15
    assert wcs_grid_difference(solution.wcs, science_wcs, shape)[0] < 1.0


def _decam(path):
    data = fits.getdata(path).astype(np.float32)
    header = fits.getheader(path)
    wcs = wcs_from_header(sanitize_wcs_header(header)[0])
    result = detect_objects(
        data, None, DetectionConfig(), saturation=header["SATURATE"], gain=header["GAIN"]
    )
    objects = result.objects
    x, y = windowed_positions(
        data - result.background.level, objects["x"].data, objects["y"].data, 4.0
    )
    objects["x"], objects["y"], objects["flux"] = x, y, objects["flux_auto"]
    return wcs, objects, data.shape
