"""The real DECam pair (no transient, only dipoles) through the subtraction step itself.

``Stack-DEC-OBS18_sci.fits`` (2016) and ``Stack-DEC-OBS04_ref.fits`` (2018) are 256²
stacks of the same DECam field: what the difference holds are misregistration dipoles
(bright stars moved by up to a pixel: proper motions and astrometric residuals),
PSF-mismatch rings and a galaxy core that differs between the stacks. The task folder is
made as the portal makes it: the science stack is the image, inspected and measured by
the real steps (no catalogue calibration: the tests have no network), and the reference
stack is the uploaded template.
"""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
from astropy.io import fits

from pipeline.steps import StepContext, run_step
from tests.paths import REAL_DATA

PAIR = REAL_DATA / "sfft_decam"


@pytest.fixture(scope="module")
def decam(tmp_path_factory):
    if not PAIR.exists():
        pytest.skip(f"real data {PAIR} is missing")
    folder = tmp_path_factory.mktemp("decam")
    shutil.copy(PAIR / "Stack-DEC-OBS18_sci.fits", folder / "image.fits")
    shutil.copy(PAIR / "Stack-DEC-OBS04_ref.fits", folder / "custom_template.fits")
    ctx = StepContext(task_dir=folder, log=logging.getLogger("test.decam"))
    run_step("inspect", ctx)
    run_step("photometry", ctx, {"calibrate": False})
    return ctx, run_step("subtraction", ctx, {"template": "custom"})


def test_no_candidate_survives_the_dipole_filter(decam):
    ctx, result = decam
    summary = result.summary
    # measured: 5 detections above 5σ (after the S/N cut), every one explained by the
    # adjustment; before the star-measured priors and the model error, up to 3 survived
    assert summary["n_detections"] >= 3, summary
    assert summary["n_dipole_rejected"] == summary["n_detections"], summary
    assert summary["n_candidates"] == 0
    with fits.open(ctx.task_dir / "candidates.fits") as hdul:
        assert len(hdul[1].data) == 0


def test_correlated_noise_of_the_stacks_is_calibrated(decam):
    """Resampled stacks have correlated noise the per-pixel propagation does not know:
    ZOGY's S_corr comes out ~1.7× too wide, and the step rescales it (and the noise
    map) to unit robust scatter before detecting anything."""
    ctx, result = decam
    assert 1.3 < result.summary["significance_scale"] < 2.2
    assert 1.0 < result.summary["noise_scale"] < 1.3
    scorr = fits.getdata(ctx.task_dir / "sub_scorr.fits")
    core = scorr[20:-20, 20:-20]
    mad = 1.4826 * np.median(np.abs(core - np.median(core)))
    assert 0.9 < mad < 1.1
