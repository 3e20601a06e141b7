"""Atlas images: survey choice, the cutout's TAN grid, and hips2fits through a local server.

The local hips2fits reprojects a simulated template (another epoch of the same sky, with
its own pointing, rotation and distortion) onto the requested grid, as the real service
reprojects a HiPS survey.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from reproject import reproject_interp

from pipeline.cutouts import stamp_origin, stamp_wcs
from pipeline.simulate import simulate_sky
from pipeline.targets import AtlasUnavailable, atlas_survey, atlas_wcs, fetch_atlas

SIZE = 64
SHORT_TIMEOUT = 0.5  # s; the slow server waits 3 s
PS1 = "CDS/P/PanSTARRS/DR1/r"


@pytest.mark.parametrize(
    ("filter_name", "dec", "hips"),
    [
        ("r", 20.0, "CDS/P/PanSTARRS/DR1/r"),
        ("u", 20.0, "CDS/P/PanSTARRS/DR1/g"),
        ("y", -29.9, "CDS/P/PanSTARRS/DR1/y"),
        ("z", 45.0, "CDS/P/PanSTARRS/DR1/z"),
        ("R", 10.0, "CDS/P/PanSTARRS/DR1/r"),
        ("Rc", 10.0, "CDS/P/PanSTARRS/DR1/r"),
        ("sdss_g", 10.0, "CDS/P/PanSTARRS/DR1/g"),
        ("I", 10.0, "CDS/P/PanSTARRS/DR1/i"),
        ("clear", 10.0, "CDS/P/PanSTARRS/DR1/r"),
        (None, 10.0, "CDS/P/PanSTARRS/DR1/r"),
        ("r", -30.5, "CDS/P/Skymapper/DR4/r"),
        ("u", -60.0, "CDS/P/Skymapper/DR4/g"),
        ("z", -60.0, "CDS/P/Skymapper/DR4/i"),
        ("y", -60.0, "CDS/P/Skymapper/DR4/i"),
        ("J", -60.0, "CDS/P/2MASS/J"),
        ("H", 60.0, "CDS/P/2MASS/H"),
        ("Ks", 60.0, "CDS/P/2MASS/K"),
    ],
)
def test_survey_choice(filter_name, dec, hips):
    choice = atlas_survey(filter_name, dec)
    assert choice.hips == hips
    assert choice.label.endswith(hips.rsplit("/", 1)[-1])


@pytest.fixture(scope="module")
def sky():
    return simulate_sky(size=512, seed=5, psf="moffat")


@pytest.fixture
def served(hips2fits_server, sky):
    template = sky.template
    hips2fits_server.surveys[PS1] = (template.model, template.wcs)
    return hips2fits_server


def _grid(sky, x=300.3, y=211.8):
    x0, y0 = stamp_origin(x, y, SIZE)
    return x0, y0, atlas_wcs(sky.truth.wcs, x, y, x0, y0, SIZE)


def test_atlas_grid_follows_the_image_wcs(sky):
    """The TAN grid maps every cutout pixel where the image's SIP WCS maps it."""
    x0, y0, grid = _grid(sky)
    assert grid.pixel_shape == (SIZE, SIZE)
    i, j = np.meshgrid(np.arange(0, SIZE, 7), np.arange(0, SIZE, 7))
    ra, dec = sky.truth.wcs.all_pix2world(i.ravel() + x0, j.ravel() + y0, 0)
    back_x, back_y = grid.all_world2pix(ra, dec, 0)
    shift = np.hypot(back_x - i.ravel(), back_y - j.ravel())
    assert shift.max() < 0.05  # pixels: the distortion over one cutout is negligible


def test_fetch_atlas_on_the_cutout_grid(served, sky):
    x0, y0, grid = _grid(sky)
    atlas = fetch_atlas(PS1, grid, url=served.url, timeout=5)
    assert atlas.shape == (SIZE, SIZE) and atlas.dtype == np.float32
    params = served.params()
    assert (params["hips"], params["format"]) == (PS1, "fits")
    header = json.loads(params["wcs"])
    assert (header["NAXIS1"], header["NAXIS2"]) == (SIZE, SIZE)
    assert served.requests[-1].path == "/hips-image-services/hips2fits"
    # the same template put straight onto the image's own (SIP) stamp grid
    template = sky.template
    expected, _ = reproject_interp(
        (template.model, template.wcs), stamp_wcs(sky.truth.wcs, x0, y0, SIZE), (SIZE, SIZE)
    )
    inner = np.s_[2:-2, 2:-2]
    sources = expected[inner] - np.median(expected[inner])
    residual = atlas[inner] - expected[inner]
    # sub-pixel grid differences only: residual RMS well below the sources' RMS
    assert np.sqrt(np.mean(residual**2)) < 0.02 * np.sqrt(np.mean(sources**2))


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("down", "cannot connect to hips2fits (connection refused)"),
        ("slow", f"hips2fits did not answer within {SHORT_TIMEOUT:g} s"),
        ("error", "hips2fits answered HTTP 500"),
        ("empty", "the survey has no data at this position"),
    ],
)
def test_fetch_atlas_failures(served, sky, mode, reason):
    _, _, grid = _grid(sky)
    url = served.url
    served.mode = mode
    with pytest.raises(AtlasUnavailable) as raised:
        fetch_atlas(PS1, grid, url=url, timeout=SHORT_TIMEOUT)
    assert str(raised.value) == reason


def test_fetch_atlas_unknown_survey(served, sky):
    _, _, grid = _grid(sky)
    with pytest.raises(AtlasUnavailable, match=r"HTTP 404 \(HiPS not found: no HiPS with the id"):
        fetch_atlas("CDS/P/Skymapper/DR4/r", grid, url=served.url, timeout=5)
