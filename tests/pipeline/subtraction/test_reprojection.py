"""The grid-spline reprojection against reproject's exact per-pixel reprojection."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.wcs import WCS
from reproject import reproject_interp

from pipeline.simulate import simulate_sky
from pipeline.templates.reprojection import grid_mapping, reproject_template, template_wcs


@pytest.fixture(scope="module")
def sky():
    # SIP distortion of 3 px at the corners, a shifted and rotated template
    return simulate_sky(size=600, seed=3)


def _exact(sky, mask=None):
    values = np.asarray(sky.template.image, float).copy()
    if mask is not None:
        values[mask] = np.nan
    wcs = template_wcs(sky.template.header)
    out, _ = reproject_interp((values, wcs), WCS(sky.header).celestial, shape_out=sky.image.shape)
    return out


def test_grid_mapping_within_tolerance(sky):
    image_wcs = WCS(sky.header).celestial
    wcs = template_wcs(sky.template.header)
    mapping = grid_mapping(image_wcs, wcs, sky.image.shape)
    assert mapping is not None
    # exact positions at random pixels, off the nodes and the check points
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 599, 2000), rng.uniform(0, 599, 2000)
    tx, ty = wcs.world_to_pixel_values(*image_wcs.pixel_to_world_values(x, y))
    fx, fy = mapping
    error = np.hypot(fx(y, x, grid=False) - tx, fy(y, x, grid=False) - ty)
    assert error.max() < 1e-3  # px; measured 3e-10


@pytest.mark.parametrize("masked", [False, True])
def test_same_pixels_as_reproject_interp(sky, masked):
    mask = None
    if masked:  # a masked block: NaN must spread to the pixels that touch it, as in reproject
        mask = np.zeros(sky.template.image.shape, bool)
        mask[200:230, 300:340] = True
    exact = _exact(sky, mask)
    data, bad = reproject_template(
        sky.template.image, sky.template.header, mask, WCS(sky.header).celestial, sky.image.shape
    )
    assert np.array_equal(bad, ~np.isfinite(exact))
    scale = np.nanmax(np.abs(exact))
    assert np.max(np.abs(data[~bad] - exact[~bad])) < 1e-7 * scale
    assert np.all(data[bad] == 0)


def test_small_image_falls_back_to_exact(sky):
    # 60 px: fewer than four grid nodes a side, so the exact reprojection is used
    image_wcs = WCS(sky.header).celestial[270:330, 270:330]
    assert grid_mapping(image_wcs, template_wcs(sky.template.header), (60, 60)) is None
    data, bad = reproject_template(
        sky.template.image, sky.template.header, None, image_wcs, (60, 60)
    )
    values = np.asarray(sky.template.image, float)
    exact, _ = reproject_interp(
        (values, template_wcs(sky.template.header)), image_wcs, shape_out=(60, 60)
    )
    assert np.allclose(data[~bad], exact[~bad], rtol=0, atol=0)
