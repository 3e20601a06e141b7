"""Simulated task folders after inspection and photometry, with their template uploaded.

``task`` is a 1024² sky (1 Mpix, seed 1); ``wide_task`` a 2048² sky (4 Mpix, seed 1,
the same field as the shared science sky of ``tests/pipeline/conftest.py``) on which
the subtraction step runs once (``wide_result``), for the false-candidate rate per
4 Mpix. Each holds 8 injected transients, half of them on galaxies.
"""

from __future__ import annotations

import logging

import pytest
from astropy.io import fits

from pipeline.simulate import simulate_sky
from pipeline.steps import StepContext, run_step

SUBTRACTION = {"template": "custom", "template_gain": 4.0}


def _processed_task(sky, folder, name: str) -> StepContext:
    fits.PrimaryHDU(sky.image, sky.header).writeto(folder / "image.fits")
    sky.catalog.write(folder / "catalog.fits")
    fits.PrimaryHDU(sky.template.image, sky.template.header).writeto(
        folder / "custom_template.fits"
    )
    ctx = StepContext(task_dir=folder, log=logging.getLogger(f"test.subtraction.{name}"))
    run_step("inspect", ctx)
    run_step("photometry", ctx, {"catalog": "ps1", "catalog_file": "catalog.fits"})
    return ctx


@pytest.fixture(scope="package")
def sky():
    return simulate_sky(size=1024, seed=1)


@pytest.fixture(scope="package")
def task(sky, tmp_path_factory):
    return _processed_task(sky, tmp_path_factory.mktemp("subtask"), "1mpix")


@pytest.fixture(scope="package")
def wide_sky():
    return simulate_sky(size=2048, seed=1)


@pytest.fixture(scope="package")
def wide_task(wide_sky, tmp_path_factory):
    return _processed_task(wide_sky, tmp_path_factory.mktemp("widetask"), "4mpix")


@pytest.fixture(scope="package")
def wide_result(wide_task):
    return run_step("subtraction", wide_task, SUBTRACTION)
