"""Detection limits against the simulator's analytic limit (2048² Moffat sky, seed 1).

Objects are detected and measured by the pipeline (default 1·FWHM aperture, the
simulator's median FWHM, S/N ≥ 3) and calibrated against the simulator's catalogue.

Truth. ``sky.truth.limit_sn5`` is the magnitude of a g−r = 0 star whose flux in an
aperture of radius 1 FWHM is measured at S/N 5 from sky, read and source Poisson noise
(``sky.truth.limit_formula``); the limits here are therefore asked for colour 0. The
measured errors also carry the error of the local background (≈6 % more variance
with the default annulus) and the simulator's aperture fraction ignores pixel
integration (≈0.015 mag): agreement to 0.1 mag is the acceptance criterion.

The background-only (local) limits leave out the source's own Poisson noise; the
analytic background-only limit is computed here from the truth with the same formula
minus that term, and the gap between the two kinds of limit must match the gap
between the two analytic ones.
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table

from pipeline.calibration_plots import plot_detection_limit, plot_limit_histogram
from pipeline.limits import (
    MAG_LIMIT_COLUMN,
    NoiseModel,
    add_local_limits,
    catalog_magnitudes_in_image,
    detection_limits,
    fit_noise_model,
    local_limits,
)
from pipeline.simulate.detector import pixel_variance

LIMIT_TOL = 0.1  # mag, acceptance


def analytic_background_limit(truth, snr: float = 5.0) -> float:
    """The truth formula without the source Poisson term: F_ap = snr·sqrt(A·s²)."""
    area = np.pi * truth.fwhm_median**2
    variance = pixel_variance(truth.sky_level, truth.gain, truth.read_noise)
    flux_ap = snr * np.sqrt(area * variance)
    fraction = truth.psf_field.encircled_fraction(truth.fwhm_median, truth.fwhm_median)
    return float(truth.zp_median - 2.5 * np.log10(flux_ap / fraction))


def test_limit_matches_truth(sky, objects, calibration):
    limits = detection_limits(objects, calibration, sn=5.0, color=0.0)
    assert abs(limits.limit - sky.truth.limit_sn5) <= LIMIT_TOL, (
        f"S/N=5 limit {limits.limit:.3f}, truth {sky.truth.limit_sn5:.3f}"
    )
    assert limits.limits[3.0] > limits.limits[5.0] > limits.limits[10.0]
    for level, value in limits.limits.items():
        assert float(limits.noise_model.sn(value)) == pytest.approx(level, rel=1e-6)
    assert limits.n_used > 0.95 * limits.n_objects > 1000
    assert limits.warnings == []
    assert limits.calibrated and limits.color == 0.0
    assert "g-r = 0.000" in limits.description
    # the measured objects really reach S/N 5 near that magnitude
    mag = calibration.magnitude(objects["mag"], objects["x"], objects["y"], color=0.0)[0]
    sn = np.asarray(objects["flux"] / objects["fluxerr"])
    near = np.abs(mag - limits.limit) < 0.1
    assert np.median(sn[near]) == pytest.approx(5.0, rel=0.1)


def test_configured_sn_and_default_colour(objects, calibration):
    limits = detection_limits(objects, calibration, sn=7.0)
    assert set(limits.limits) == {3.0, 5.0, 7.0, 10.0}
    assert limits.limit == limits.limits[7.0]
    # default colour: the calibration's colour for objects of unknown colour
    assert limits.color == pytest.approx(calibration.model.default_color)
    at_zero = detection_limits(objects, calibration, sn=7.0, color=0.0)
    shift = calibration.color_term * calibration.model.default_color
    assert limits.limit - at_zero.limit == pytest.approx(shift, abs=0.01)
    data = limits.to_dict()
    assert data["limits"]["7"] == round(limits.limit, 4)
    assert isinstance(data["noise_model"]["a"], float)


def test_local_limits(sky, objects, calibration):
    limits = detection_limits(objects, calibration, sn=5.0, color=0.0)
    truth_gap = analytic_background_limit(sky.truth) - sky.truth.limit_sn5
    assert abs(limits.local_limit_median - analytic_background_limit(sky.truth)) <= LIMIT_TOL
    # background-only limits are fainter by the missing source noise, as in the truth
    measured_gap = limits.local_limit_median - limits.limit
    assert measured_gap == pytest.approx(truth_gap, abs=0.02)
    table = objects.copy()
    add_local_limits(table, calibration, 5.0, color=0.0)
    local = np.asarray(table[MAG_LIMIT_COLUMN])
    assert np.isfinite(local).mean() > 0.99
    # local limits follow the zero point: brighter in the corners, where ZP is lower
    corner = (table["x"] < 300) & (table["y"] < 300)
    centre = (np.abs(table["x"] - 1024) < 300) & (np.abs(table["y"] - 1024) < 300)
    assert np.median(local[centre]) > np.median(local[corner])


def test_instrumental_without_calibration(tmp_path, objects, calibration):
    calibrated = detection_limits(objects, calibration, sn=5.0)
    instrumental = detection_limits(objects, None, sn=5.0)
    assert not instrumental.calibrated
    assert any("instrumental" in text for text in instrumental.warnings)
    offset = calibration.stats["zp_median"] + calibration.color_term * calibrated.color
    assert instrumental.limit + offset == pytest.approx(calibrated.limit, abs=0.05)
    raw = local_limits(objects, None, 5.0)
    assert np.nanmedian(raw) < 0  # instrumental magnitudes of a few hundred ADU
    plot_detection_limit(objects, None, instrumental, tmp_path / "instrumental.png")
    assert (tmp_path / "instrumental.png").stat().st_size > 5_000


def test_noise_model_fit_on_exact_data():
    truth = NoiseModel(a=0.02, b=0.003, m0=18.0)
    mag = np.linspace(12, 21, 400)
    sn = truth.sn(mag) * np.exp(np.random.default_rng(1).normal(0, 0.01, mag.size))
    sn[::50] *= 5  # a few outliers (e.g. blends measured with too little noise)
    model, used = fit_noise_model(mag, sn)
    assert not used[::50].any()
    for level in (3.0, 5.0, 10.0, 100.0):
        assert model.limit(level) == pytest.approx(truth.limit(level), abs=0.01)
    assert float(truth.sn(truth.limit(5.0))) == pytest.approx(5.0)
    # background-only noise: b = 0 is a valid fit
    flat = NoiseModel(a=0.01, b=0.0, m0=18.0)
    model, _ = fit_noise_model(mag, flat.sn(mag))
    assert model.limit(5.0) == pytest.approx(flat.limit(5.0), abs=0.01)


def test_extrapolation_is_reported(objects, calibration):
    bright = objects[np.asarray(objects["flux"] / objects["fluxerr"]) > 100]
    limits = detection_limits(bright, calibration, sn=5.0)
    assert any("extrapolated" in text for text in limits.warnings)


def test_bad_input(objects):
    with pytest.raises(ValueError, match="lacks fluxerr"):
        detection_limits(objects[["x", "y", "flux", "mag"]])
    with pytest.raises(ValueError, match="must be positive"):
        detection_limits(objects, sn=0.0)
    with pytest.raises(ValueError, match="at least 5 are needed"):
        detection_limits(objects[:3])
    with pytest.raises(ValueError, match="no bg_fluxerr column"):
        local_limits(Table({"x": [1.0], "y": [1.0]}))
    with pytest.raises(ValueError, match="degenerate"):
        NoiseModel(0.0, 0.0, 20.0).limit(5.0)


def test_catalogue_in_image_and_plots(tmp_path, sky, objects, calibration):
    in_image = catalog_magnitudes_in_image(sky.catalog, "rmag", sky.truth.wcs, sky.image.shape)
    stars = sky.truth.stars
    expected = int(np.sum(stars["in_image"] & np.isfinite(stars["mag_cat"])))
    assert abs(in_image.size - expected) <= 2  # stars on the very edge may round either way
    limits = detection_limits(objects, calibration, sn=5.0)
    table = objects.copy()
    calibration.apply(table, color=calibration.object_colors)
    plot_detection_limit(table, calibration, limits, tmp_path / "limit_sn.png")
    plot_limit_histogram(
        table["mag_calib"], table["flags"], in_image, limits, tmp_path / "limit_hist.png"
    )
    for name in ("limit_sn.png", "limit_hist.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000
    # completeness seen in the histogram: nearly every catalogue star 1 mag above the
    # limit is detected
    window = (in_image > limits.limit - 1.5) & (in_image < limits.limit - 1.0)
    detected = np.asarray(table["mag_calib"])
    found = ((detected > limits.limit - 1.5) & (detected < limits.limit - 1.0)).sum()
    assert found >= 0.9 * window.sum()
