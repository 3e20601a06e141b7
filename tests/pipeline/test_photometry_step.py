"""The photometry step in a task folder: outputs, summary, real frames, bad input."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from pipeline.fitsio import write_task_image
from pipeline.measurement import OBJECT_COLUMNS
from pipeline.prefilter import apply_prefilter, load_prefilter
from pipeline.sextractor import find_sextractor
from pipeline.simulate import simulate_sky
from pipeline.steps import StepContext, StepError, run_step
from pipeline.steps.photometry import (
    BACKGROUND_FILE,
    FILTERED_FILE,
    PREFILTER_FILE,
    RMS_FILE,
    SEGMENTATION_FILE,
    PhotometryConfig,
)
from tests.paths import REAL_DATA

REAL = REAL_DATA
SUMMARY_KEYS = {
    "fwhm",
    "fwhm_min",
    "fwhm_max",
    "n_objects",
    "n_flagged",
    "n_prefilter_outliers",
    "aperture_radius",
    "bg_median",
    "bg_rms",
}


def task_with(tmp_path: Path, image: np.ndarray, header: fits.Header | None = None) -> StepContext:
    fits.PrimaryHDU(np.asarray(image, np.float32), header).writeto(tmp_path / "image.fits")
    return StepContext(task_dir=tmp_path, log=logging.getLogger("test.photometry"))


@pytest.fixture(scope="module")
def sky():
    return simulate_sky(size=1024, psf="moffat", seed=3)


@pytest.fixture(scope="module")
def after_inspection(sky, tmp_path_factory):
    ctx = task_with(tmp_path_factory.mktemp("task"), sky.image, sky.header)
    sky.catalog.write(ctx.task_dir / "catalog.fits")
    run_step("inspect", ctx)
    # the full step: the simulated catalogue stands in for VizieR
    result = run_step("photometry", ctx, {"catalog": "ps1", "catalog_file": "catalog.fits"})
    return ctx, result


def test_summary_and_files(after_inspection, sky):
    ctx, result = after_inspection
    assert set(result.summary) >= SUMMARY_KEYS
    json.dumps(result.summary)  # plain JSON values only
    record = json.loads((ctx.task_dir / "photometry.result.json").read_text())
    assert set(record["files"]) == set(result.files)
    for name in result.files:
        assert (ctx.task_dir / name).is_file(), name
    for name in (
        SEGMENTATION_FILE,
        BACKGROUND_FILE,
        RMS_FILE,
        FILTERED_FILE,
        PREFILTER_FILE,
        "objects.fits",
        "fwhm.png",
        "fwhm_mag.png",
        "prefilter.png",
        "objects.png",
    ):
        assert name in result.files
    assert result.summary["fwhm"] == pytest.approx(sky.truth.fwhm_median, rel=0.05)
    assert result.summary["fwhm_min"] <= result.summary["fwhm"] <= result.summary["fwhm_max"]
    assert result.summary["aperture_radius"] == pytest.approx(result.summary["fwhm"], rel=1e-3)
    assert result.summary["bg_median"] == pytest.approx(np.median(sky.background), rel=0.01)
    assert result.summary["gain"] == pytest.approx(sky.truth.gain)


def test_objects_table(after_inspection, sky):
    ctx, result = after_inspection
    table = Table.read(ctx.task_dir / "objects.fits")
    assert tuple(table.colnames[: len(OBJECT_COLUMNS)]) == OBJECT_COLUMNS
    assert len(table) == result.summary["n_objects"]
    assert np.all(table["flux"] / table["fluxerr"] >= PhotometryConfig().sn)
    assert np.count_nonzero(table["flags"]) == result.summary["n_flagged"]
    assert np.all(np.isfinite(table["ra"]))  # the simulated header has a WCS
    segmentation = fits.getdata(ctx.task_dir / SEGMENTATION_FILE)
    assert segmentation.shape == sky.image.shape
    # The saved prefilter judges the saved table the same way.
    model = load_prefilter(ctx.task_dir / PREFILTER_FILE)
    outliers = apply_prefilter(model, table)
    assert outliers.sum() == result.summary["n_prefilter_outliers"]


def test_rerun_clears_outputs(after_inspection):
    ctx, _ = after_inspection
    result = run_step(
        "photometry", ctx, {"make_plots": False, "prefilter_detections": False, "calibrate": False}
    )
    assert not (ctx.task_dir / "fwhm.png").exists()
    assert not (ctx.task_dir / PREFILTER_FILE).exists()
    assert result.summary["n_prefilter_outliers"] == 0


def test_without_inspection_warns(sky, tmp_path):
    ctx = task_with(tmp_path, sky.image, sky.header)
    result = run_step("photometry", ctx, {"make_plots": False, "calibrate": False})
    assert any("inspection" in warning for warning in result.warnings)
    assert result.summary["n_objects"] > 100


@pytest.mark.requires_sextractor
@pytest.mark.skipif(find_sextractor() is None, reason="source-extractor binary not installed")
def test_sextractor_engine(sky, tmp_path):
    ctx = task_with(tmp_path, sky.image, sky.header)
    result = run_step(
        "photometry",
        ctx,
        {"detection_engine": "sextractor", "make_plots": False, "calibrate": False},
    )
    assert result.summary["detection_engine"] == "sextractor"
    assert result.summary["fwhm"] == pytest.approx(sky.truth.fwhm_median, rel=0.05)


def test_real_sdss_frame(tmp_path):
    """Sky-subtracted SDSS g frame in nanomaggies, no GAIN: a sensible FWHM (2–4 px)."""
    write_task_image(REAL / "sdss_g_run1737_c5_f47_full.fits.bz2", tmp_path / "image.fits")
    ctx = StepContext(task_dir=tmp_path)
    result = run_step("photometry", ctx, {"make_plots": False, "calibrate": False})
    assert 2.0 < result.summary["fwhm"] < 4.0
    assert result.summary["n_objects"] > 200
    assert result.summary["has_wcs"]


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.full((64, 64), np.nan), "no finite pixels"),
        (np.full((64, 64), 7.0), "constant"),
        (np.random.default_rng(0).normal(100, 5, (10, 10)), "only 10×10 pixels"),
        (np.random.default_rng(0).normal(100, 5, (256, 256)), "no objects"),
    ],
    ids=["all-nan", "constant", "10x10", "no-stars"],
)
def test_bad_input(tmp_path, image, message):
    ctx = task_with(tmp_path, image)
    with pytest.raises(StepError, match=message):
        run_step("photometry", ctx, {"calibrate": False})


def test_missing_image(tmp_path):
    with pytest.raises(StepError, match="missing"):
        run_step("photometry", StepContext(task_dir=tmp_path))


def test_config_defaults_documented():
    for name, field in PhotometryConfig.model_fields.items():
        assert field.description, name
    with pytest.raises(ValueError):
        PhotometryConfig(rel_aper=8, rel_bg1=5)
