"""A simulated task folder after inspection and photometry, with its template uploaded."""

from __future__ import annotations

import logging

import pytest
from astropy.io import fits

from pipeline.simulate import simulate_sky
from pipeline.steps import StepContext, run_step


@pytest.fixture(scope="package")
def sky():
    return simulate_sky(size=1024, seed=1)


@pytest.fixture(scope="package")
def task(sky, tmp_path_factory):
    folder = tmp_path_factory.mktemp("subtask")
    fits.PrimaryHDU(sky.image, sky.header).writeto(folder / "image.fits")
    sky.catalog.write(folder / "catalog.fits")
    fits.PrimaryHDU(sky.template.image, sky.template.header).writeto(
        folder / "custom_template.fits"
    )
    ctx = StepContext(task_dir=folder, log=logging.getLogger("test.subtraction"))
    run_step("inspect", ctx)
    run_step("photometry", ctx, {"catalog": "ps1", "catalog_file": "catalog.fits"})
    return ctx
