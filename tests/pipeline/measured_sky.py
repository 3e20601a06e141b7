"""A simulated sky measured by the pipeline's own functions, shared by science tests.

The mask is made from the truth (saturation, cosmic rays, bad columns) as the
inspection step would make it, so tests of later stages do not depend on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.table import Table

from pipeline.detection import DetectionConfig, DetectionResult, detect_objects, windowed_positions
from pipeline.masking import MaskBit
from pipeline.measurement import measure_positions
from pipeline.simulate import SimulatedSky


@dataclass
class MeasuredSky:
    sky: SimulatedSky
    mask: np.ndarray
    detection: DetectionResult
    objects: Table


def truth_mask(sky: SimulatedSky) -> np.ndarray:
    truth = sky.truth
    mask = np.zeros(sky.image.shape, np.uint8)
    mask[sky.image >= truth.saturation] |= np.uint8(MaskBit.SATURATED)
    mask[truth.cosmic_mask] |= np.uint8(MaskBit.COSMIC)
    mask[truth.bad_column_mask] |= np.uint8(MaskBit.CUSTOM)
    return mask


def measure_sky(sky: SimulatedSky, sn_min: float = 3.0) -> MeasuredSky:
    """Detect and measure the objects of ``sky`` with a 1·FWHM aperture (true FWHM)."""
    truth = sky.truth
    mask = truth_mask(sky)
    detection = detect_objects(
        sky.image, mask, DetectionConfig(), saturation=truth.saturation, gain=truth.gain
    )
    found = detection.objects
    data = sky.image - detection.background.level
    found["x"], found["y"] = windowed_positions(
        data, found["x"].data, found["y"].data, truth.fwhm_median, mask != 0
    )
    objects = measure_positions(
        sky.image,
        found,
        fwhm=truth.fwhm_median,
        mask=mask,
        background=detection.background.level,
        noise=detection.background.rms,
        gain=truth.gain,
        segmentation=detection.segmentation,
        wcs=truth.wcs,
        sn_min=sn_min,
    )
    return MeasuredSky(sky, mask, detection, objects)
