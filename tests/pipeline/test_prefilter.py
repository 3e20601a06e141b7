"""Shape prefilter on a simulated sky: cosmic rays and galaxies out, stars in."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table
from scipy.spatial import cKDTree

from pipeline.detection import DetectionConfig, detect_objects, windowed_positions
from pipeline.flags import ObjectFlag
from pipeline.fwhm import FwhmConfig, FwhmMap, measure_fwhm
from pipeline.measurement import measure_positions
from pipeline.prefilter import (
    FEATURES,
    apply_prefilter,
    feature_matrix,
    flag_outliers,
    load_prefilter,
    save_prefilter,
    train_prefilter,
)
from pipeline.simulate import simulate_sky


@pytest.fixture(scope="module")
def trained():
    """Moffat sky measured WITHOUT a cosmic-ray mask, so cosmic rays reach the prefilter."""
    sky = simulate_sky(size=2048, psf="moffat", seed=2)
    truth = sky.truth
    mask = np.zeros(sky.image.shape, np.uint8)
    mask[truth.bad_column_mask] = 16
    detection = detect_objects(
        sky.image, mask, DetectionConfig(), saturation=truth.saturation, gain=truth.gain
    )
    objects = detection.objects
    data = sky.image - detection.background.level
    guess = 2 * float(np.nanmedian(objects["flux_radius"][objects["flags"] == 0]))
    x, y = windowed_positions(data, objects["x"].data, objects["y"].data, guess)
    objects["x"], objects["y"] = x, y
    sn = np.asarray(objects["flux_auto"] / objects["fluxerr_auto"])
    fwhm = measure_fwhm(
        data,
        x,
        y,
        sn,
        np.asarray(objects["flags"]),
        guess,
        FwhmConfig(),
        noise=detection.background.global_rms,
    )
    objects["fwhm"] = fwhm.per_object
    table = measure_positions(
        sky.image,
        objects,
        fwhm=fwhm.fwhm,
        mask=mask,
        background=detection.background.level,
        noise=detection.background.rms,
        gain=truth.gain,
        sn_min=5,
        segmentation=detection.segmentation,
    )
    model = train_prefilter(table, fwhm.fwhm_map)
    outliers = apply_prefilter(model, table)
    return sky, table, model, outliers


def kinds(sky, table):
    xy = np.c_[table["x"], table["y"]]
    stars = sky.truth.stars
    star_distance, star_index = cKDTree(np.c_[stars["x"], stars["y"]]).query(xy)
    galaxies = sky.truth.galaxies
    galaxy_distance, _ = cKDTree(np.c_[galaxies["x"], galaxies["y"]]).query(xy)
    cy, cx = np.nonzero(sky.truth.cosmic_mask)
    cosmic_distance, _ = cKDTree(np.c_[cx, cy]).query(xy)
    neighbour, _ = cKDTree(np.c_[stars["x"], stars["y"]]).query(np.c_[stars["x"], stars["y"]], k=2)
    star = (star_distance < 1.0) & (galaxy_distance > 10) & (cosmic_distance > 3)
    isolated_star = star & (neighbour[star_index, 1] > 12) & ~stars["saturated"][star_index]
    galaxy = (galaxy_distance < 3) & (star_distance > 3)
    cosmic = (cosmic_distance < 1.0) & (star_distance > 3) & (galaxy_distance > 10)
    return isolated_star, galaxy, cosmic


def test_outliers_are_artefacts_not_stars(trained):
    """Tolerances: ≥ 85 % of cosmic rays and ≥ 50 % of galaxies flagged; ≤ 6 % of
    isolated unsaturated stars (faint undetected neighbours make some stars look extended)."""
    sky, table, _, outliers = trained
    star, galaxy, cosmic = kinds(sky, table)
    assert cosmic.sum() > 30 and galaxy.sum() > 10 and star.sum() > 500
    assert outliers[cosmic].mean() >= 0.85
    assert outliers[galaxy].mean() >= 0.5
    assert outliers[star].mean() <= 0.06


def test_saved_model_gives_same_answer(trained, tmp_path):
    _, table, model, outliers = trained
    save_prefilter(model, tmp_path / "prefilter.pkl")
    again = load_prefilter(tmp_path / "prefilter.pkl")
    assert np.array_equal(apply_prefilter(again, table), outliers)
    copy = table.copy()
    copy["flags"] = 0
    assert flag_outliers(copy, again) == outliers.sum()
    assert np.array_equal((np.asarray(copy["flags"]) & ObjectFlag.SHAPE_OUTLIER) != 0, outliers)


def test_load_rejects_other_pickles(tmp_path):
    import pickle

    path = tmp_path / "other.pkl"
    path.write_bytes(pickle.dumps({"not": "a model"}))
    with pytest.raises(ValueError, match="prefilter"):
        load_prefilter(path)


def test_features_and_missing_columns():
    flat = FwhmMap(np.array([3.0]), 0, (100, 100), 3.0, 3.0)
    table = Table(
        {
            "x": [10.0, 20.0],
            "y": [10.0, 20.0],
            "mag": [-8.0, -9.0],
            "fwhm": [3.0, np.nan],
            "flux_radius": [1.5, 1.6],
            "flux_auto": [1000.0, -5.0],
            "peak": [100.0, 200.0],
            "a": [1.2, 1.0],
            "b": [1.0, 1.0],
        }
    )
    features = feature_matrix(table, flat)
    assert features.shape == (2, len(FEATURES))
    assert features[0, 0] == pytest.approx(0.0)
    assert np.isnan(features[1, 0]) and np.isnan(features[1, 3])
    with pytest.raises(ValueError, match="columns"):
        feature_matrix(table[["x", "y"]], flat)
    table["flags"] = 0
    with pytest.raises(ValueError, match="too few"):
        train_prefilter(table, flat)
