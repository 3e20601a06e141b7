"""The SExtractor adapter gives the same table as the sep engine."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import ascii, fits
from scipy.spatial import cKDTree

from pipeline.detection import DETECTION_COLUMNS, DetectionConfig, detect_objects
from pipeline.flags import ObjectFlag
from pipeline.masking import MaskBit
from pipeline.sextractor import SEXTRACTOR_FLAG_MAP, find_sextractor
from pipeline.simulate import simulate_sky
from tests.paths import REAL_DATA

REAL = REAL_DATA

pytestmark = [
    pytest.mark.requires_sextractor,
    pytest.mark.skipif(
        find_sextractor() is None,
        reason="source-extractor binary not installed (apt-get install source-extractor)",
    ),
]


@pytest.fixture(scope="module")
def both_engines():
    sky = simulate_sky(size=1024, psf="moffat", seed=4)
    mask = np.zeros(sky.image.shape, np.uint8)
    mask[sky.image >= sky.truth.saturation] |= np.uint8(MaskBit.SATURATED)
    mask[sky.truth.cosmic_mask] |= np.uint8(MaskBit.COSMIC)
    mask[100:200, 300:400] |= np.uint8(MaskBit.CUSTOM)
    kwargs = dict(saturation=sky.truth.saturation, gain=sky.truth.gain)
    sep_result = detect_objects(sky.image, mask, DetectionConfig(), "sep", **kwargs)
    sex_result = detect_objects(sky.image, mask, DetectionConfig(), "sextractor", **kwargs)
    return sky, mask, sep_result, sex_result


def test_same_columns_and_images(both_engines):
    sky, _, _, sex = both_engines
    assert sex.engine == "sextractor"
    assert tuple(sex.objects.colnames) == DETECTION_COLUMNS
    for image in (sex.segmentation, sex.background.level, sex.background.rms, sex.filtered):
        assert image.shape == sky.image.shape
    assert set(np.unique(sex.segmentation)) - {0} == set(sex.objects["id"])


def test_engines_agree(both_engines):
    """Same threshold convention: counts within 10 %, ≥ 95 % cross-matched, same
    positions (0-based) to 0.1 px and background within 0.5 %."""
    _, _, sep_result, sex = both_engines
    a, b = sep_result.objects, sex.objects
    assert abs(len(a) - len(b)) < 0.1 * len(a)
    distance, index = cKDTree(np.c_[b["x"], b["y"]]).query(np.c_[a["x"], a["y"]])
    matched = distance < 1.0
    assert matched.mean() > 0.95
    bright = matched & (a["flux_auto"] / a["fluxerr_auto"] > 50)
    assert np.median(distance[bright]) < 0.1
    ratio = b["flux_auto"][index[bright]] / a["flux_auto"][bright]
    assert np.median(ratio) == pytest.approx(1.0, abs=0.03)
    assert np.median(b["flux_radius"][index[bright]] / a["flux_radius"][bright]) == pytest.approx(
        1.0, abs=0.05
    )
    level = np.median(sex.background.level) / np.median(sep_result.background.level)
    assert level == pytest.approx(1.0, abs=0.005)


def test_masks_and_flags(both_engines):
    sky, mask, _, sex = both_engines
    assert not np.any(sex.segmentation[(mask & MaskBit.CUSTOM) != 0])
    stars = sky.truth.stars[sky.truth.stars["in_image"] & sky.truth.stars["saturated"]]
    distance, index = cKDTree(np.c_[sex.objects["x"], sex.objects["y"]]).query(
        np.c_[stars["x"], stars["y"]]
    )
    assert np.all(np.asarray(sex.objects["flags"])[index[distance < 3]] & ObjectFlag.SATURATED)
    assert SEXTRACTOR_FLAG_MAP[2] == ObjectFlag.DEBLENDED


@pytest.mark.filterwarnings("ignore::astropy.utils.exceptions.AstropyUserWarning")
def test_eso_emmi_against_reference_catalogue():
    """The binary reproduces ≥ 85 % of the reference catalogue of the same frame."""
    image = fits.getdata(REAL / "sep_eso_emmi_image.fits").astype(np.float32)
    catalogue = ascii.read(REAL / "sep_eso_emmi_image.cat", format="sextractor")
    result = detect_objects(image, None, DetectionConfig(bg_size=64), "sextractor")
    distance, _ = cKDTree(np.c_[result.objects["x"], result.objects["y"]]).query(
        np.c_[catalogue["X_IMAGE"] - 1, catalogue["Y_IMAGE"] - 1]
    )
    assert (distance < 1.5).mean() >= 0.85
