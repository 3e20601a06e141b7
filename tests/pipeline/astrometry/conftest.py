"""Shared simulated fields for the astrometry tests (built once per test session)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from pipeline.detection import DetectionConfig, detect_objects, windowed_positions
from pipeline.simulate import SimulatedSky, simulate_sky
from pipeline.simulate.wcs import perturb_wcs, replace_wcs


@dataclass
class Field:
    """A simulated sky, its detections (as the photometry step gives them) and helpers."""

    sky: SimulatedSky
    objects: Table

    @property
    def shape(self) -> tuple[int, int]:
        return self.sky.image.shape

    @property
    def truth(self) -> WCS:
        return self.sky.truth.wcs

    def approximate(self, shift_arcsec: float, rot_deg: float, keep_sip: bool = False) -> WCS:
        """The true WCS moved by ``shift_arcsec`` and turned by ``rot_deg``; SIP dropped."""
        wcs = perturb_wcs(self.truth, shift_arcsec, rot_deg, pa_deg=30.0)
        if not keep_sip:
            wcs.sip = None
            wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
            wcs.wcs.set()
        return wcs

    def header_with(self, wcs: WCS) -> fits.Header:
        return replace_wcs(self.sky.header, wcs)


def detect(sky: SimulatedSky) -> Table:
    """sep detection with windowed centroids: x, y (0-based), flux, mag, magerr, flags."""
    result = detect_objects(
        sky.image, None, DetectionConfig(), saturation=sky.truth.saturation, gain=sky.truth.gain
    )
    objects = result.objects
    data = sky.image - result.background.level
    x, y = windowed_positions(data, objects["x"].data, objects["y"].data, sky.truth.fwhm_median)
    objects["x"], objects["y"] = x, y
    flux = np.asarray(objects["flux_auto"], float)
    objects["flux"] = flux
    with np.errstate(divide="ignore", invalid="ignore"):
        objects["mag"] = -2.5 * np.log10(flux)
        objects["magerr"] = 1.0857 * np.asarray(objects["fluxerr_auto"]) / flux
    return objects


@pytest.fixture(scope="session")
def field() -> Field:
    """2048² simulated sky (0.8″/px, order-3 SIP reaching 3 px at the corners)."""
    sky = simulate_sky(size=2048, seed=1, template=False)
    return Field(sky, detect(sky))


@pytest.fixture(scope="session")
def small_field() -> Field:
    """1024² simulated sky with another seed, for quicker checks."""
    sky = simulate_sky(size=1024, seed=7, template=False)
    return Field(sky, detect(sky))
