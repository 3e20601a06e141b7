"""The subtraction step on a simulated sky with its template (truth known)."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from pipeline.steps import StepContext, StepError, run_step

MATCH_RADIUS = 1.5  # px between a candidate and an injected transient


@pytest.fixture(scope="module")
def result(task):
    return run_step("subtraction", task, {"template": "custom", "template_gain": 4.0})


def _matches(candidates: Table, truth: Table) -> list[int | None]:
    out = []
    for row in truth:
        d = np.hypot(candidates["x"] - row["x"], candidates["y"] - row["y"])
        out.append(int(np.argmin(d)) if len(d) and d.min() < MATCH_RADIUS else None)
    return out


def test_isolated_transients_found_with_right_magnitudes(task, result, sky):
    candidates = Table.read(task.task_dir / "candidates.fits")
    truth = sky.truth.transients
    isolated = truth[~truth["on_galaxy"]]
    assert len(isolated) >= 3
    for row, index in zip(isolated, _matches(candidates, isolated), strict=True):
        assert index is not None, f"transient at ({row['x']:.1f}, {row['y']:.1f}) missed"
        mag = candidates["mag_calib"][index]
        err = candidates["mag_calib_err"][index]
        # within 3σ of truth, or 0.1 mag when the error is tiny
        assert abs(mag - row["mag"]) < max(3 * err, 0.1), (mag, err, row["mag"])


def test_few_false_candidates_and_some_galaxy_transients(task, result, sky):
    candidates = Table.read(task.task_dir / "candidates.fits")
    truth = sky.truth.transients
    matched = {i for i in _matches(candidates, truth) if i is not None}
    false = len(candidates) - len(matched)
    # measured with seed 1: 3 false candidates (a hot column the inspection does not
    # mask, and star residuals); allow a few
    assert false <= 5, f"{false} false candidates"
    on_galaxy = truth[truth["on_galaxy"]]
    found = sum(i is not None for i in _matches(candidates, on_galaxy))
    assert found >= len(on_galaxy) // 2  # measured: 2 of 4 (the others: dipole test, mask)


def test_outputs_listed_and_noise_map_calibrated(task, result):
    record = json.loads((task.task_dir / "subtraction.result.json").read_text())
    assert set(record["files"]) == set(result.files)
    for name in result.files:
        assert (task.task_dir / name).is_file(), name
    diff = fits.getdata(task.task_dir / "sub_diff.fits")
    noise = fits.getdata(task.task_dir / "sub_noise.fits")
    conv = fits.getdata(task.task_dir / "sub_conv.fits")
    # pixels far from any source: difference / noise must be unit-variance noise (±10 %)
    quiet = (np.abs(conv) < 1.0) & (noise > 0) & (diff != 0)
    quiet[:, 930:960] = False  # the simulated hot column
    ratio = (diff / np.where(noise > 0, noise, 1))[quiet]
    assert 0.9 < np.std(ratio[np.abs(ratio) < 10]) < 1.1
    cutouts = [f for f in result.files if f.endswith(".cutout.fits")]
    assert len(cutouts) == result.summary["n_candidates"]
    with fits.open(task.task_dir / cutouts[0]) as hdul:
        names = [h.name for h in hdul[1:]]
    assert names == ["IMAGE", "TEMPLATE", "CONVOLVED", "DIFFERENCE", "FOOTPRINT", "MASK"]


def test_target_mode_forced_photometry(task, sky, tmp_path):
    truth = sky.truth.transients
    folder = tmp_path / "t"
    shutil.copytree(task.task_dir, folder)
    targets = Table(
        {
            "name": ["a", "b"],
            "ra": [truth["ra"][0], sky.truth.wcs.all_pix2world(500, 500, 0)[0]],
            "dec": [truth["dec"][0], sky.truth.wcs.all_pix2world(500, 500, 0)[1]],
        }
    )
    targets.write(folder / "targets.fits")
    ctx = StepContext(task_dir=folder, log=logging.getLogger("t"))
    result = run_step("subtraction", ctx, {"mode": "target", "template_gain": 4.0})
    table = Table.read(folder / "sub_targets.fits")
    assert result.summary["n_targets"] == 2
    assert table["detected"][0] and abs(table["mag_calib"][0] - truth["mag"][0]) < 0.2
    # an empty sky position: not detected, with an upper limit near the image's depth
    assert not table["detected"][1]
    assert abs(table["mag_limit"][1] - sky.truth.limit_sn5) < 0.5


def test_missing_template_and_missing_wcs(task, tmp_path):
    folder = tmp_path / "t"
    shutil.copytree(task.task_dir, folder)
    (folder / "custom_template.fits").unlink()
    ctx = StepContext(task_dir=folder, log=logging.getLogger("t"))
    with pytest.raises(StepError, match="no template was uploaded"):
        run_step("subtraction", ctx)
    # an image without WCS (and no refined image.wcs)
    (folder / "image.wcs").unlink()
    data, header = fits.getdata(folder / "image.fits", header=True)
    for key in list(header):
        if key[:5] in ("CTYPE", "CRVAL", "CRPIX", "CD1_1", "CD1_2", "CD2_1", "CD2_2", "CDELT"):
            del header[key]
    fits.PrimaryHDU(data, header).writeto(folder / "image.fits", overwrite=True)
    with pytest.raises(StepError, match="no usable WCS"):
        run_step("subtraction", ctx)
