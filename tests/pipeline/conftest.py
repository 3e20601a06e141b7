"""Shared science fixtures: one 2048² Moffat sky, measured and calibrated, for the session."""

from __future__ import annotations

import pytest

from pipeline.calibration import calibrate_photometry
from pipeline.simulate import simulate_sky
from tests.pipeline.measured_sky import measure_sky


@pytest.fixture(scope="session")
def sky():
    return simulate_sky(size=2048, seed=1, psf="moffat")


@pytest.fixture(scope="session")
def objects(sky):
    return measure_sky(sky).objects


@pytest.fixture(scope="session")
def calibration(sky, objects):
    """The catalogue calibration of ``objects`` in r with the g−r colour term."""
    return calibrate_photometry(
        objects,
        sky.catalog,
        "r",
        shape=sky.image.shape,
        fwhm=sky.truth.fwhm_median,
        wcs=sky.truth.wcs,
        catalog_title="Pan-STARRS DR1",
    )
