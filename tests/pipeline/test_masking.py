"""Masks: user regions, sections, saturation, and cosmic rays against simulated truth."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from astropy.io import fits
from scipy import ndimage

from pipeline import masking
from pipeline.background import estimate_background
from pipeline.fitsio import load_image
from pipeline.header import Section
from pipeline.simulate import simulate_sky
from pipeline.steps.inspect import InspectConfig

COSMIC = {
    name: getattr(InspectConfig(), f"cosmics_{name}")
    for name in ("sigclip", "sigfrac", "objlim", "niter")
}


# ------------------------------------------------------------------ regions


def test_axis_aligned_box_covers_exact_pixels():
    mask = masking.mask_from_regions(
        [{"shape": "box", "x": 10, "y": 20, "width": 5, "height": 3}], (40, 40)
    )
    assert mask.sum() == 15
    assert mask[19:22, 8:13].all()  # centres 8..12 in x, 19..21 in y (0-based)


def test_rotated_box():
    regions = [{"shape": "box", "x": 20, "y": 20, "width": 11, "height": 3, "angle": 90}]
    mask = masking.mask_from_regions(regions, (40, 40))
    assert mask[15:26, 19:22].all() and mask.sum() == 33
    diagonal = masking.mask_from_regions(
        [{"shape": "box", "x": 50, "y": 50, "width": 40, "height": 10, "angle": 45}], (100, 100)
    )
    # pixel centres on a 45° lattice: 15 diagonals fit in the 10 px width (±8 %)
    assert diagonal.sum() == pytest.approx(400, rel=0.08)
    assert diagonal[50 + 10, 50 + 10] and not diagonal[50 + 10, 50 - 10]


def test_circle_area():
    mask = masking.mask_from_regions(
        [{"shape": "circle", "x": 50, "y": 40, "radius": 20}], (100, 100)
    )
    assert mask.sum() == pytest.approx(math.pi * 20**2, rel=0.01)
    assert mask[40, 50] and mask[40, 70] and not mask[40, 71]


def test_polygon_area_and_orientation():
    triangle = {"shape": "polygon", "points": [[10, 10], [90, 10], [10, 70]]}
    mask = masking.mask_from_regions([triangle], (100, 100))
    assert mask.sum() == pytest.approx(0.5 * 80 * 60, rel=0.03)
    assert mask[20, 20] and not mask[65, 80]  # (x=20, y=20) inside; (x=80, y=65) outside


def test_concave_polygon():
    # a U shape: the notch between the arms stays unmasked
    points = [[0, 0], [30, 0], [30, 30], [20, 30], [20, 10], [10, 10], [10, 30], [0, 30]]
    mask = masking.mask_from_regions([{"shape": "polygon", "points": points}], (40, 40))
    assert mask[5, 15] and mask[20, 5] and mask[20, 25]
    assert not mask[20, 15]


def test_invert_regions_and_out_of_image():
    regions = [{"shape": "box", "x": 5, "y": 5, "width": 4, "height": 4},
               {"shape": "circle", "x": 500, "y": 500, "radius": 3}]  # fmt: skip
    mask = masking.mask_from_regions(regions, (20, 20), invert=True)
    assert mask.sum() == 400 - 16


@pytest.mark.parametrize(
    ("region", "message"),
    [
        ({"shape": "ellipse", "x": 1, "y": 1}, "unknown shape 'ellipse'"),
        ({"shape": "box", "x": 1, "y": 1, "width": 3}, "needs numbers x, y, width, height"),
        ({"shape": "circle", "x": "a", "y": 1, "radius": 2}, "needs numbers"),
        ({"shape": "polygon", "points": [[0, 0], [1, 1]]}, "at least 3"),
        ({"shape": "circle", "x": float("nan"), "y": 1, "radius": 2}, "finite"),
        ("box", "expected an object"),
    ],
)
def test_bad_regions(region, message):
    with pytest.raises(ValueError, match=message):
        masking.mask_from_regions([region], (20, 20))


def test_load_regions(tmp_path):
    path = tmp_path / "custom_mask.json"
    path.write_text(json.dumps([{"shape": "circle", "x": 1, "y": 2, "radius": 3}]))
    assert masking.load_regions(path) == ([{"shape": "circle", "x": 1, "y": 2, "radius": 3}], False)
    path.write_text(json.dumps({"regions": [], "invert": True}))
    assert masking.load_regions(path) == ([], True)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read"):
        masking.load_regions(path)
    path.write_text(json.dumps({"shapes": []}))
    with pytest.raises(ValueError, match="must hold a list"):
        masking.load_regions(path)


# -------------------------------------------------------- sections, saturation


def test_section_mask():
    outside = masking.section_mask((10, 20), Section(2, 18, 0, 10), Section(0, 1, 0, 10))
    assert outside[:, :2].all() and outside[:, 18:].all() and not outside[:, 2:18].any()
    assert not masking.section_mask((10, 20), None).any()


def test_saturation_mask_is_grown():
    data = np.zeros((20, 20), np.float32)
    data[10, 10] = 100.0
    data[0, 0] = np.nan
    assert masking.saturation_mask(data, 100.0, grow=0).sum() == 1
    assert masking.saturation_mask(data, 100.0, grow=1).sum() == 9
    assert not masking.saturation_mask(data, None, grow=1).any()


def test_mask_file_bits(tmp_path):
    layers = {
        masking.MaskBit.NONFINITE: np.eye(4, dtype=bool),
        masking.MaskBit.COSMIC: np.eye(4, dtype=bool),
        masking.MaskBit.CUSTOM: None,
    }
    bits = masking.combine_masks(layers, (4, 4))
    assert bits.dtype == np.uint8 and bits[0, 0] == 1 | 8
    assert masking.bit_counts(bits)["cosmic"] == 4 and masking.bit_counts(bits)["custom"] == 0
    masking.write_mask(tmp_path / "mask.fits", bits)
    with fits.open(tmp_path / "mask.fits") as hdul:
        assert hdul[0].data.dtype == np.uint8
        np.testing.assert_array_equal(hdul[0].data, bits)
        assert hdul[0].header["MASKB8"] == "COSMIC" and hdul[0].header["MASKB16"] == "CUSTOM"


def test_read_custom_mask(tmp_path):
    mask = np.zeros((30, 40), np.uint8)
    mask[5:10, 5:10] = 1
    masking.write_custom_mask(tmp_path / "m.fits", mask)
    assert masking.read_custom_mask(tmp_path / "m.fits", (30, 40)).sum() == 25
    with pytest.raises(ValueError, match="40×30 pixels but the image is 20×20"):
        masking.read_custom_mask(tmp_path / "m.fits", (20, 20))


# ------------------------------------------------------------------ cosmic rays


@pytest.fixture(scope="module")
def sky():
    # 1024² with the default cosmic-ray density (hits and grazing tracks) and saturated stars
    return simulate_sky(size=1024, seed=21, template=False, n_cosmic_hits=150, n_cosmic_tracks=20)


def _cosmics(image, sky, gain, saturation, workers=2):
    truth = sky.truth
    bad = masking.saturation_mask(image, saturation, grow=1) | truth.bad_column_mask
    bg = estimate_background(image, bad=bad)
    found = masking.cosmic_ray_mask(image, bad, bg.level, bg.rms, gain, workers=workers, **COSMIC)
    return found, bad, bg


def _score(found, bad, bg, sky, image, model):
    """Fraction of hits found, of significant CR pixels found, of clean star peaks masked."""
    truth = sky.truth
    hits = truth.cosmic_events[truth.cosmic_events["kind"] == "hit"]
    hx, hy = np.asarray(hits["x"], int), np.asarray(hits["y"], int)
    usable = ~bad[hy, hx]
    significant = truth.cosmic_mask & (image - model > 5 * bg.rms) & ~bad
    stars = truth.stars[truth.stars["in_image"] & ~truth.stars["saturated"]]
    sx, sy = np.rint(stars["x"]).astype(int), np.rint(stars["y"]).astype(int)
    # a star whose peak a cosmic ray actually hit may rightly be masked: leave those out
    clean = ~ndimage.binary_dilation(truth.cosmic_mask, iterations=2)[sy, sx]
    return (
        found[hy, hx][usable].mean(),
        found[significant].mean(),
        found[sy, sx][clean].mean(),
        int(usable.sum()),
        int(clean.sum()),
    )


def test_cosmic_rays_are_found_and_stars_kept(sky):
    found, bad, bg = _cosmics(sky.image, sky, sky.truth.gain, sky.truth.saturation)
    hit_rate, pixel_rate, star_rate, n_hits, n_stars = _score(
        found, bad, bg, sky, sky.image, sky.model
    )
    assert n_hits > 100 and n_stars > 1000
    assert hit_rate >= 0.90  # acceptance: at least 90 % of cosmic-ray hits masked
    assert pixel_rate >= 0.90  # and of the cosmic-ray pixels above 5 sigma
    assert star_rate < 0.005  # at most 0.5 % of star peaks masked


def test_cosmic_rays_on_sky_subtracted_image_with_wrong_gain(sky):
    # sky-subtracted and rescaled by 1/50, with gain still claimed to be 1:
    # the empirical noise model must keep working
    image = (sky.image - sky.background) / 50.0
    model = (sky.model - sky.background) / 50.0
    saturation = (sky.truth.saturation - float(sky.background.max())) / 50.0
    found, bad, bg = _cosmics(image, sky, 1.0, saturation)
    hit_rate, pixel_rate, star_rate, _, _ = _score(found, bad, bg, sky, image, model)
    assert hit_rate >= 0.90 and pixel_rate >= 0.90
    assert star_rate < 0.005


def test_strips_give_the_same_mask_as_one_pass(sky):
    crop = sky.image[:400, :500]
    bad = np.zeros(crop.shape, bool)
    bg = estimate_background(crop)
    one = masking.cosmic_ray_mask(crop, bad, bg.level, bg.rms, 2.0, workers=1, **COSMIC)
    two = masking.cosmic_ray_mask(crop, bad, bg.level, bg.rms, 2.0, workers=2, **COSMIC)
    assert one.sum() > 10
    np.testing.assert_array_equal(one, two)


def test_bad_pixels_are_never_cosmic(sky):
    crop = sky.image[:300, :300].copy()
    bad = np.zeros(crop.shape, bool)
    bad[:, :150] = True
    bg = estimate_background(crop)
    found = masking.cosmic_ray_mask(crop, bad, bg.level, bg.rms, 2.0, workers=1, **COSMIC)
    assert not found[:, :150].any()


def test_star_at_the_image_edge_is_not_a_cosmic_ray(real_data):
    # a bright, well-sampled DECam star touching the left edge (rows 120-133, columns 0-10):
    # L.A.Cosmic's one-sided filters flagged all 74 of its pixels before the mirrored margin
    data, header = load_image(real_data / "sfft_decam" / "Stack-DEC-OBS04_ref.fits")
    bg = estimate_background(data, mesh=128)
    bad = np.zeros(data.shape, bool)
    found = masking.cosmic_ray_mask(
        data, bad, bg.level, bg.rms, float(header["GAIN"]), workers=2, **COSMIC
    )
    assert not found[110:145, 0:15].any()
    assert found.sum() <= 5  # a stack: essentially no cosmic rays left
