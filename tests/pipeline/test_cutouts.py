"""Cutouts: stamps at the edges, the stamp WCS, the FITS file round trip and the figure."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from matplotlib.image import imread

from pipeline.cutouts import (
    CircleMark,
    CutoutPanel,
    blink_frames,
    display_limits,
    make_cutout,
    plot_cutout,
    read_cutout,
    stamp,
    stamp_origin,
    stamp_wcs,
    write_blink_strip,
    write_cutout,
)
from pipeline.simulate import simulate_sky


@pytest.fixture(scope="module")
def sky():
    return simulate_sky(size=256, seed=2, psf="gaussian")


def test_stamp_origin_centres_the_pixel():
    assert stamp_origin(10.2, 20.7, 8) == (6, 17)  # pixel (10, 21) at stamp (4, 4)
    assert stamp_origin(10.5, -0.49, 9) == (7, -4)


def test_stamp_pads_beyond_the_edges():
    array = np.arange(100, dtype=np.float32).reshape(10, 10)
    inside = stamp(array, 2, 3, 4)
    np.testing.assert_array_equal(inside, array[3:7, 2:6])
    corner = stamp(array, -2, -1, 4)
    assert np.isnan(corner[:, :2]).all() and np.isnan(corner[0]).all()
    np.testing.assert_array_equal(corner[1:, 2:], array[0:3, 0:2])
    mask = stamp(np.zeros((10, 10), np.uint8), 8, 8, 4, fill=2)
    assert mask.dtype == np.uint8
    assert mask[:2, :2].sum() == 0 and (mask[2:, :] == 2).all() and (mask[:, 2:] == 2).all()
    assert np.isnan(stamp(array, 50, 50, 3)).all()


def test_stamp_wcs_matches_the_parent(sky):
    """Every stamp pixel has the sky position of its parent pixel, SIP included."""
    wcs = sky.truth.wcs
    for x0, y0 in ((100, 40), (-10, 230)):
        moved = stamp_wcs(wcs, x0, y0, 32)
        i, j = np.meshgrid(np.arange(0, 32, 5), np.arange(0, 32, 5))
        ra1, dec1 = moved.all_pix2world(i.ravel(), j.ravel(), 0)
        ra2, dec2 = wcs.all_pix2world(i.ravel() + x0, j.ravel() + y0, 0)
        assert np.max(np.abs(ra1 - ra2)) < 1e-10 and np.max(np.abs(dec1 - dec2)) < 1e-10
        assert moved.pixel_shape == (32, 32)
    assert stamp_wcs(None, 0, 0, 4) is None


def _cutout(sky, size=32, x=40.3, y=250.6):
    mask = np.zeros(sky.image.shape, np.uint8)
    mask[248:252, 30:45] = 8
    atlas = CutoutPanel("atlas", None, "Pan-STARRS DR1 r", note="atlas unavailable: timeout")
    return make_cutout(
        x,
        y,
        size,
        [
            ("image", sky.image, "image", "image", np.nan),
            atlas,
            ("mask", mask, "mask", "mask", 2),
        ],
        sky.truth.wcs,
        {"NAME": "SN 2024abc", "MAGCALIB": 18.25, "MAGLIMIT": float("nan"), "TIME": "2023-03-15"},
    )


def test_make_cutout(sky):
    cutout = _cutout(sky)
    assert (cutout.x0, cutout.y0, cutout.size) == (24, 235, 32)
    assert cutout.center == pytest.approx((16.3, 15.6))
    image = cutout.panel("image").data
    assert image.shape == (32, 32)
    assert image[0, 0] == sky.image[235, 24]
    assert np.isnan(image[-1]).all()  # rows beyond the top edge (y = 256 ...)
    mask = cutout.panel("mask").data
    assert mask[250 - 235, 40 - 24] == 8 and (mask[-1] == 2).all()
    with pytest.raises(KeyError, match="no 'template' panel"):
        cutout.panel("template")
    with pytest.raises(ValueError, match="not the 32×32 stamp"):
        make_cutout(1, 1, 32, [CutoutPanel("atlas", np.zeros((8, 8)), "atlas")])


def test_fits_round_trip(tmp_path, sky):
    cutout = _cutout(sky)
    path = tmp_path / "target_0001.fits"
    write_cutout(cutout, path)
    with fits.open(path) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "IMAGE", "ATLAS", "MASK"]
        assert hdul["ATLAS"].data is None
        assert hdul["ATLAS"].header["NOTE"] == "atlas unavailable: timeout"
        assert hdul[0].header["NAME"] == "SN 2024abc"
        assert "MAGLIMIT" not in hdul[0].header  # NaN is no FITS value: left out
    back = read_cutout(path)
    assert (back.x, back.y, back.x0, back.y0, back.size) == (
        cutout.x,
        cutout.y,
        cutout.x0,
        cutout.y0,
        cutout.size,
    )
    assert [p.name for p in back.panels] == ["image", "atlas", "mask"]
    assert [p.kind for p in back.panels] == ["image", "image", "mask"]
    np.testing.assert_array_equal(back.panel("image").data, cutout.panel("image").data)
    np.testing.assert_array_equal(back.panel("mask").data, cutout.panel("mask").data)
    assert back.panel("atlas").note == "atlas unavailable: timeout"
    assert back.panel("atlas").title == "Pan-STARRS DR1 r"
    assert back.meta["MAGCALIB"] == 18.25
    ra1, dec1 = back.wcs.all_pix2world([3.0], [7.0], 0)
    ra2, dec2 = sky.truth.wcs.all_pix2world([3.0 + cutout.x0], [7.0 + cutout.y0], 0)
    assert abs(ra1[0] - ra2[0]) < 1e-9 and abs(dec1[0] - dec2[0]) < 1e-9


def test_figure(tmp_path, sky):
    cutout = _cutout(sky)
    path = tmp_path / "target.png"
    cx, cy = cutout.center
    plot_cutout(cutout, path, "SN 2024abc: r = 18.25 ± 0.05\nfilter r", [CircleMark(cx, cy, 3)])
    picture = imread(path)
    height, width = picture.shape[:2]
    assert width == 900 and height > 300  # three 3-inch panels at 100 dpi
    # a cutout of any number of panels (e.g. a transient candidate's)
    cutout.panels = cutout.panels[:1] * 5
    plot_cutout(cutout, tmp_path / "five.png")
    assert imread(tmp_path / "five.png").shape[1] == 1500


def test_display_limits():
    data = np.random.default_rng(1).normal(100.0, 5.0, (32, 32))
    low, high = display_limits(data)
    assert 80 < low < 100 < high < 120
    assert display_limits(np.full((4, 4), np.nan)) == (0.0, 1.0)
    assert display_limits(np.ones((4, 4))) == (1.0, 2.0)


def test_blink_strip_shows_only_what_changed(tmp_path):
    """Image and template share one stretch; the difference is centred on zero."""
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[0:31, 0:31]
    galaxy = 400 * np.exp(-((xx - 15) ** 2 + (yy - 15) ** 2) / 50.0)
    template = galaxy + rng.normal(0, 5, (31, 31))
    new = 300 * np.exp(-((xx - 24) ** 2 + (yy - 8) ** 2) / 4.0)  # on the faint outskirts
    image = galaxy + new + rng.normal(0, 5, (31, 31))
    image[0, :3] = np.nan  # beyond the parent's edge
    cutout = make_cutout(
        15,
        15,
        31,
        [
            ("image", image, "image", "image", np.nan),
            ("template", template, "template", "image", np.nan),
            ("difference", image - template, "difference", "image", np.nan),
            CutoutPanel("atlas", None, "atlas", note="service down"),
        ],
    )
    path = tmp_path / "c.blink.png"
    frames = [("image", "image"), ("atlas", "atlas"), ("template", "tmpl"), ("difference", "diff")]
    assert write_blink_strip(cutout, frames, path, "difference") == ["image", "tmpl", "diff"]
    assert blink_frames(path) == ["image", "tmpl", "diff"]
    strip = imread(path)[::-1, :, 0]  # back to bottom-up rows, one grey channel
    assert strip.shape == (31, 93)  # one screen pixel per image pixel, three frames
    shown_image, shown_template, shown_diff = strip[:, :31], strip[:, 31:62], strip[:, 62:]
    # the galaxy looks the same in both frames; the new source only in the image
    assert abs(shown_image[15, 10] - shown_template[15, 10]) < 0.1
    assert shown_image[8, 24] - shown_template[8, 24] > 0.3
    # the difference: flat grey (zero) except at the new source
    assert abs(np.median(shown_diff) - 0.5) < 0.05 and shown_diff[8, 24] > 0.9
    colour = imread(path)[::-1][0, 0, :3]
    assert np.allclose(colour, [0x35 / 255, 0x55 / 255, 0x7F / 255], atol=0.01)  # no data
    with pytest.raises(ValueError, match="no panel"):
        write_blink_strip(cutout, [("atlas", "atlas")], tmp_path / "none.png")
