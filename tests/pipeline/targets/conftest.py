"""Shared fixtures of the target tests: local services and one simulated, calibrated field.

The field: a 1024² simulated sky (Moffat PSF, seed 3) with 16 injected transients, its
objects detected and measured by the pipeline (mask from the truth, as inspection makes
it; the simulator's median FWHM) and calibrated by ``pipeline.calibration`` against the
simulator's Pan-STARRS-layout catalogue, with ``calib_unknown_color="zero"`` so that
targets of unknown colour are calibrated for g−r = 0, the colour of the injected
transients (the truth magnitudes are then directly comparable).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from astropy.table import Table

from pipeline.calibration import CalibrationConfig, CalibrationResult, calibrate_photometry
from pipeline.detection import DetectionResult
from pipeline.simulate import SimulatedSky, simulate_sky
from pipeline.simulate.transients import isolated_positions
from tests.fixture_servers.hips2fits import hips2fits_server  # noqa: F401  (pytest fixture)
from tests.fixture_servers.sesame import sesame_server  # noqa: F401  (pytest fixture)
from tests.fixture_servers.tns import fink_server, tns_server  # noqa: F401  (pytest fixtures)
from tests.pipeline.measured_sky import measure_sky


@dataclass
class Field:
    sky: SimulatedSky
    mask: np.ndarray
    detection: DetectionResult
    objects: Table
    calibration: CalibrationResult

    @property
    def fwhm(self) -> float:
        return self.sky.truth.fwhm_median

    def empty_positions(self, n: int, seed: int = 0) -> np.ndarray:
        """(n, 2) positions with nothing there: clear of every catalogue star (farther from
        bright ones), galaxy and transient of the truth, and 60 px from the edges."""
        truth = self.sky.truth
        stars, galaxies, transients = truth.stars, truth.galaxies, truth.transients
        avoid = np.concatenate(
            [
                np.c_[stars["x"], stars["y"]],
                np.c_[galaxies["x"], galaxies["y"]],
                np.c_[transients["x"], transients["y"]],
            ]
        )
        brightness = np.clip(truth.limit_sn5 + 2.0 - np.asarray(stars["mag"]), 0, None)
        radius = np.concatenate(
            [
                12.0 + 3.0 * brightness,
                8.0 * np.asarray(galaxies["r_eff"]) + 12.0,
                np.full(len(transients), 20.0),
            ]
        )
        ny, nx = self.sky.image.shape
        rng = np.random.default_rng(seed)
        positions = isolated_positions(n, nx, ny, avoid, radius, rng, edge=60)
        assert len(positions) == n, "the simulated field is too crowded for empty positions"
        return positions

    def measurement_inputs(self) -> dict:
        """Keyword arguments the photometry step measures objects with."""
        return {
            "mask": self.mask,
            "background": self.detection.background.level,
            "noise": self.detection.background.rms,
            "gain": self.sky.truth.gain,
            "segmentation": self.detection.segmentation,
            "wcs": self.sky.truth.wcs,
        }


@pytest.fixture(scope="session")
def field() -> Field:
    sky = simulate_sky(size=1024, seed=3, psf="moffat", n_transients=16)
    truth = sky.truth
    measured = measure_sky(sky)
    mask, detection, objects = measured.mask, measured.detection, measured.objects
    calibration = calibrate_photometry(
        objects,
        sky.catalog,
        "r",
        shape=sky.image.shape,
        fwhm=truth.fwhm_median,
        wcs=truth.wcs,
        catalog_title="Pan-STARRS DR1",
        config=CalibrationConfig(calib_unknown_color="zero"),
    )
    assert calibration.model.default_color == 0.0
    return Field(sky, mask, detection, objects, calibration)
