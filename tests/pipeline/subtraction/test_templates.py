"""Template sources against fixture servers built from a simulated template."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.wcs import WCS

from pipeline.simulate import simulate_sky
from pipeline.steps.base import ServiceUnavailable
from pipeline.templates.bands import choose_band
from pipeline.templates.errors import TemplateError
from pipeline.templates.sources import TemplateSettings, get_template
from pipeline.templates.surveys import ps1_linear
from tests.fixture_servers.base import FixtureServer
from tests.fixture_servers.templates import template_answer, template_empty


@pytest.fixture(scope="module")
def small_sky():
    return simulate_sky(size=200, seed=5, pixel_scale=1.2)


@pytest.fixture(scope="module")
def server(small_sky):
    with FixtureServer(template_answer(small_sky.template), template_empty, slow_seconds=3) as s:
        yield s


def _settings(server, source: str, timeout: float = 30.0, **extra) -> TemplateSettings:
    return TemplateSettings(
        template=source,
        ps1_url=server.url,
        legacy_url=server.url,
        hips2fits_url=f"{server.url}/hips2fits",
        template_timeout=timeout,
        **extra,
    )


def _direct(sky):
    """The template reprojected straight onto the image grid (what a client must give)."""
    from reproject import reproject_interp

    data, _ = reproject_interp(
        (sky.template.image, sky.template.wcs), sky.truth.wcs, shape_out=sky.image.shape
    )
    return data


@pytest.mark.parametrize("source", ["ps1", "ls", "decaps"])
def test_survey_template_matches_direct_reprojection(server, small_sky, tmp_path, source):
    wcs = WCS(small_sky.header).celestial
    template = get_template(_settings(server, source), tmp_path, wcs, small_sky.image.shape, "r")
    assert template.band == "r"
    direct = _direct(small_sky)
    good = ~template.bad & np.isfinite(direct)
    assert good.mean() > 0.6  # the simulated template itself is offset by ~25 px
    # survey pixels hold flux per survey pixel; interpolation keeps surface brightness, so
    # the totals differ by the pixel-area ratio; within 2 % (two resamplings, PS1 asinh)
    survey_scale = {"ps1": 0.25, "ls": 0.262, "decaps": small_sky.truth.pixel_scale}[source]
    native = small_sky.template.wcs.proj_plane_pixel_scales()[0].to_value("arcsec")
    ratio = template.data[good].sum() / direct[good].sum()
    assert abs(ratio / (survey_scale / native) ** 2 - 1) < 0.02, ratio


def test_masks_are_carried(server, small_sky, tmp_path):
    wcs = WCS(small_sky.header).celestial
    for source in ("ps1", "ls"):
        template = get_template(
            _settings(server, source), tmp_path, wcs, small_sky.image.shape, "r"
        )
        # the fixture flags a 4×4 block at the cutout corner: it lands outside or as bad pixels,
        # while the MEDIUM bit (not a bad bit) leaves the rows it marks usable
        assert template.bad.mean() < 0.2


def test_service_down_slow_error(server, small_sky, tmp_path):
    wcs = WCS(small_sky.header).celestial
    for mode in ("down", "slow", "error"):
        server.mode = mode
        with pytest.raises(ServiceUnavailable):
            get_template(_settings(server, "ps1", 1.0), tmp_path, wcs, small_sky.image.shape, "r")
    server.reset()


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("ps1", "Pan-STARRS has no r stack"),
        ("ls", "Legacy Survey template service returned an empty image"),
        ("decaps", "hips2fits template service returned an empty image"),
    ],
)
def test_service_with_no_data_at_the_position(server, small_sky, tmp_path, source, message):
    wcs = WCS(small_sky.header).celestial
    server.mode = "empty"
    try:
        with pytest.raises(TemplateError, match=message):
            get_template(_settings(server, source), tmp_path, wcs, small_sky.image.shape, "r")
    finally:
        server.reset()


def test_template_elsewhere_on_the_sky(small_sky, tmp_path):
    """An uploaded template of another field: refused with the reason, nothing subtracted."""
    from astropy.io import fits

    header = small_sky.template.header.copy()
    header["CRVAL1"] += 1.0  # one degree away: no overlap with a 4′ image
    fits.PrimaryHDU(small_sky.template.image, header).writeto(tmp_path / "custom_template.fits")
    wcs = WCS(small_sky.header).celestial
    with pytest.raises(TemplateError, match=r"covers only 0.0 % of the image"):
        get_template(TemplateSettings(template="custom"), tmp_path, wcs, small_sky.image.shape, "r")


def test_band_choice():
    assert choose_band("R", "ps1") == "r"
    assert choose_band("B", "ps1") == "g"
    assert choose_band("Ks", "2mass") == "K"
    assert choose_band("U", "ztf") == "g"
    with pytest.raises(TemplateError, match="no band close"):
        choose_band("U", "2mass")
    with pytest.raises(TemplateError, match="has no 'y' band"):
        choose_band("r", "ls", "y")


def test_ps1_asinh_round_trip():
    header = {"BOFFSET": 12.0, "BSOFTEN": 40.0}
    linear = np.array([-20.0, 0.0, 100.0, 1e5])
    scaled = 2.5 / np.log(10) * np.arcsinh((linear - 12.0) / 80.0)
    assert np.allclose(ps1_linear(scaled, header), linear, rtol=1e-9, atol=1e-9)
