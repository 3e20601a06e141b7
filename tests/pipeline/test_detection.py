"""Detection on simulated skies (known truth) and on the real ESO/EMMI frame.

Truth mask used for the simulated skies (inspection is tested elsewhere):
saturated pixels (image ≥ SATURATE) get bit 4, the simulator's cosmic-ray
pixels bit 8 and its bad columns bit 16 (custom), as a user would mask them.
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import ascii, fits
from scipy.spatial import cKDTree

from pipeline.detection import (
    DETECTION_COLUMNS,
    DetectionConfig,
    detect_objects,
    gaussian_kernel,
    kernel_noise_factor,
    map_flags,
)
from pipeline.flags import ObjectFlag
from pipeline.masking import MaskBit
from pipeline.simulate import simulate_sky
from tests.paths import REAL_DATA

REAL = REAL_DATA


def truth_mask(sky) -> np.ndarray:
    mask = np.zeros(sky.image.shape, np.uint8)
    mask[sky.image >= sky.truth.saturation] |= np.uint8(MaskBit.SATURATED)
    mask[sky.truth.cosmic_mask] |= np.uint8(MaskBit.COSMIC)
    mask[sky.truth.bad_column_mask] |= np.uint8(MaskBit.CUSTOM)
    return mask


def expected_sn(sky) -> np.ndarray:
    """S/N of each in-image star in a 1·FWHM aperture from the truth (no neighbours)."""
    truth = sky.truth
    stars = truth.stars[truth.stars["in_image"]]
    fwhm = np.asarray(stars["fwhm"])
    if truth.psf == "gaussian":
        fraction = 1 - 2.0**-4  # Gaussian light inside r = FWHM
    else:
        alpha = fwhm / (2 * np.sqrt(2 ** (1 / truth.beta) - 1))
        fraction = 1 - (1 + (fwhm / alpha) ** 2) ** (1 - truth.beta)
    pixel_var = truth.sky_level / truth.gain + (truth.read_noise / truth.gain) ** 2
    flux = np.asarray(stars["flux"]) * fraction
    return flux / np.sqrt(flux / truth.gain + np.pi * fwhm**2 * pixel_var)


@pytest.fixture(scope="module", params=["moffat", "gaussian"])
def detected(request):
    sky = simulate_sky(size=2048, psf=request.param, seed=1)
    mask = truth_mask(sky)
    result = detect_objects(
        sky.image, mask, DetectionConfig(), saturation=sky.truth.saturation, gain=sky.truth.gain
    )
    return sky, mask, result


def test_columns_and_maps(detected):
    sky, _, result = detected
    table = result.objects
    assert tuple(table.colnames) == DETECTION_COLUMNS
    assert result.segmentation.dtype == np.int32
    assert result.segmentation.shape == sky.image.shape
    # Every object owns its segment label.
    labels = set(np.unique(result.segmentation)) - {0}
    assert labels == set(table["id"])
    # Background within 0.5 % of the true sky, noise within 5 % of the true sky noise.
    truth = sky.truth
    ratio = np.median(result.background.level) / np.median(sky.background)
    assert abs(ratio - 1) < 0.005
    noise = np.sqrt(truth.sky_level / truth.gain + (truth.read_noise / truth.gain) ** 2)
    assert abs(np.median(result.background.rms) / noise - 1) < 0.05
    assert result.filtered.shape == sky.image.shape


def test_completeness_sn10(detected):
    """≥ 98 % of true stars with S/N > 10 are detected (match radius max(1, FWHM/2) px).

    Stars within 2 FWHM of a bad column are left out: the column is custom-masked.
    """
    sky, _, result = detected
    stars = sky.truth.stars[sky.truth.stars["in_image"]]
    sn = expected_sn(sky)
    fwhm = np.asarray(stars["fwhm"])
    columns = np.array([c["x"] for c in sky.truth.bad_columns])
    near_column = np.min(np.abs(np.asarray(stars["x"])[:, None] - columns[None, :]), axis=1)
    selected = (sn > 10) & (near_column > 2 * fwhm)
    distance, _ = cKDTree(np.c_[result.objects["x"], result.objects["y"]]).query(
        np.c_[stars["x"], stars["y"]]
    )
    found = distance < np.maximum(1.0, 0.5 * fwhm)
    assert selected.sum() > 500
    assert found[selected].mean() >= 0.98


def test_saturated_stars_flagged(detected):
    sky, _, result = detected
    stars = sky.truth.stars[sky.truth.stars["in_image"] & sky.truth.stars["saturated"]]
    assert len(stars) > 3
    distance, index = cKDTree(np.c_[result.objects["x"], result.objects["y"]]).query(
        np.c_[stars["x"], stars["y"]]
    )
    matched = distance < 3
    assert matched.mean() > 0.9
    flags = np.asarray(result.objects["flags"])[index[matched]]
    assert np.all(flags & ObjectFlag.SATURATED)
    # And not the faint ones: saturation flags only where pixels reach saturation.
    n_saturated = np.count_nonzero(np.asarray(result.objects["flags"]) & ObjectFlag.SATURATED)
    assert n_saturated <= 3 * len(stars)


def test_cosmic_rays_flagged_footprint_masked(detected):
    sky, _, result = detected
    hits = np.unique(result.segmentation[sky.truth.cosmic_mask])
    hits = hits[hits > 0]
    assert len(hits) > 20
    flags = np.asarray(result.objects["flags"])[hits - 1]  # ids are row + 1
    assert np.all(flags & ObjectFlag.FOOTPRINT_MASKED)


def test_custom_mask_excluded(detected):
    _, mask, result = detected
    custom = (mask & MaskBit.CUSTOM) != 0
    # Nothing is detected on custom-masked pixels ...
    assert not np.any(result.segmentation[custom])
    # ... and objects bordering them are flagged.
    from scipy import ndimage

    border = ndimage.binary_dilation(custom) & ~custom
    touching = np.unique(result.segmentation[border])
    touching = touching[touching > 0]
    assert len(touching) > 0
    flags = np.asarray(result.objects["flags"])[touching - 1]
    assert np.all(flags & ObjectFlag.FOOTPRINT_MASKED)


def test_false_detections_on_pure_noise():
    """Default threshold: at most a few noise peaks on 4·10⁶ pixels (≈1 measured)."""
    rng = np.random.default_rng(3)
    image = (1000 + rng.normal(0, 20, (2048, 2048))).astype(np.float32)
    result = detect_objects(image, None, DetectionConfig())
    assert len(result.objects) <= 5
    # A threshold of 3σ would find hundreds: the test can tell the difference.
    loose = detect_objects(image, None, DetectionConfig(detect_thresh=3.0, detect_kernel_fwhm=3.0))
    assert len(loose.objects) > 50


def test_flag_mapping():
    import sep

    raw = np.array([0, sep.OBJ_MERGED, sep.OBJ_TRUNC, sep.OBJ_MERGED | sep.OBJ_SINGU], np.int16)
    flags = map_flags(raw)
    assert list(flags) == [
        0,
        ObjectFlag.DEBLENDED,
        ObjectFlag.EDGE_TRUNCATED,
        ObjectFlag.DEBLENDED | ObjectFlag.ISOPHOTAL_INCOMPLETE,
    ]


def test_kernel_noise_factor():
    kernel = gaussian_kernel(2.0)
    assert kernel.sum() == pytest.approx(1.0, rel=1e-6)
    rng = np.random.default_rng(0)
    from pipeline.detection import filter_image

    noise = rng.normal(0, 1, (512, 512)).astype(np.float32)
    measured = np.std(filter_image(noise, kernel)[10:-10, 10:-10])
    assert measured == pytest.approx(kernel_noise_factor(kernel), rel=0.03)
    assert gaussian_kernel(0) is None
    assert kernel_noise_factor(None) == 1.0


def test_bad_input():
    config = DetectionConfig()
    with pytest.raises(ValueError, match="2-D"):
        detect_objects(np.zeros(100), None, config)
    with pytest.raises(ValueError, match="engine"):
        detect_objects(np.zeros((64, 64)), None, config, engine="daophot")
    with pytest.raises(ValueError, match="no usable pixels"):
        detect_objects(np.full((64, 64), np.nan), None, config)
    with pytest.raises(ValueError, match="shape"):
        detect_objects(np.zeros((64, 64)), np.zeros((32, 32), np.uint8), config)


@pytest.mark.filterwarnings("ignore::astropy.utils.exceptions.AstropyUserWarning")
def test_eso_emmi_recovers_sextractor_catalogue():
    """≥ 85 % of the 65 objects SExtractor found in the real EMMI frame are found."""
    image = fits.getdata(REAL / "sep_eso_emmi_image.fits").astype(np.float32)
    catalogue = ascii.read(REAL / "sep_eso_emmi_image.cat", format="sextractor")
    result = detect_objects(image, None, DetectionConfig(bg_size=64))
    distance, _ = cKDTree(np.c_[result.objects["x"], result.objects["y"]]).query(
        np.c_[catalogue["X_IMAGE"] - 1, catalogue["Y_IMAGE"] - 1]
    )
    assert (distance < 1.5).mean() >= 0.85
