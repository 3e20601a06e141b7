"""Inspection: header facts checked against the pixels, on real frames and synthetic edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from pipeline.fitsio import ORIGINAL_DTYPE_KEY, load_image
from pipeline.inspection import InspectionError, estimate_pileup, inspect_image


def _sky(shape=(256, 256), level=1000.0, gain=2.0, read_noise=5.0, seed=0, stars=40):
    """Sky with Poisson + read noise (ADU) and Gaussian stars; returns image and noiseless model."""
    rng = np.random.default_rng(seed)
    ny, nx = shape
    model = np.full(shape, level, dtype=np.float64)
    yy, xx = np.mgrid[0:ny, 0:nx]
    for _ in range(stars):
        x, y = rng.uniform(10, nx - 10), rng.uniform(10, ny - 10)
        peak = rng.uniform(200, 20000)
        model += peak * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.5**2))
    image = rng.poisson(model * gain) / gain + rng.normal(0, read_noise / gain, shape)
    return image.astype(np.float32), model


def _header(**cards) -> fits.Header:
    header = fits.Header()
    header["DATE-OBS"] = "2022-02-02T02:02:02"
    header["EXPTIME"] = 60.0
    header["FILTER"] = "V"
    header["OBJCTRA"], header["OBJCTDEC"] = "10 00 00", "+20 00 00"
    for key, value in cards.items():
        header[key] = value
    return header


# ------------------------------------------------------------------ real frames


def test_saao_raw_frame(real_data):
    data, header = load_image(real_data / "saao1m_raw_a8280271.fits")
    found = inspect_image(data, header)
    assert found.gain == 1.9 and found.gain_source == "header GAIN"
    assert found.read_noise == 5.0
    assert found.raw_like and found.original_dtype == "uint16"
    assert any("looks raw" in w and "BIASSEC" in w for w in found.warnings)
    assert found.data_section.as_fits() == "[17:528,1:520]"
    assert found.overscan.as_fits() == "[4:13,1:520]"
    # columns outside TRIMSEC (and the overscan) are marked outside the data
    assert found.outside[:, :16].all() and found.outside[:, 528:].all()
    assert not found.outside[:, 16:528].any()
    assert found.bias_level == pytest.approx(214, abs=5)
    assert not found.sky_subtracted
    # header pointing (RA/DEC, RA_OBS/DEC_OBS agree)
    assert found.ra_hint == pytest.approx(331.0334, abs=2e-4)
    assert found.dec_hint == pytest.approx(-0.9253, abs=2e-4)
    assert not found.wcs.usable
    assert found.filter is None and found.filter_raw == "48"  # a wheel code, not a band
    assert found.time_iso == "2013-07-13T00:57:33.000"
    assert found.exposure == pytest.approx(150.04)
    # gain 1.9 agrees with the sky noise once the bias is removed: no correction
    assert not any("Poisson" in w for w in found.warnings)


def test_sdss_frame(real_data):
    data, header = load_image(real_data / "sdss_g_run1737_c5_f47_full.fits.bz2")
    found = inspect_image(data, header)
    assert found.gain == 1.0 and found.gain_source == "assumed"
    assert any("no gain keyword" in w for w in found.warnings)
    assert found.sky_subtracted
    assert any("sky-subtracted" in w for w in found.warnings)
    assert found.wcs.usable
    assert found.wcs.pixel_scale_arcsec == pytest.approx(0.396, abs=0.001)
    assert found.filter == "g" and found.filter_system == "SDSS/Pan-STARRS"
    assert found.wcs_header is not None and "CTYPE1" in found.wcs_header
    # without a usable header pointing, the WCS centre is the hint
    assert found.pointing_source == "WCS centre"
    assert found.ra_hint == pytest.approx(313.170, abs=0.002)


def test_decam_stack(real_data):
    data, header = load_image(real_data / "sfft_decam" / "Stack-DEC-OBS04_ref.fits")
    found = inspect_image(data, header)
    assert found.wcs.usable
    assert found.wcs.pixel_scale_arcsec == pytest.approx(0.263, abs=0.002)
    assert found.gain == pytest.approx(3.98, abs=0.01)
    # SATURATE is above the data maximum and nothing piles up: keep it, no warning
    assert found.saturation == pytest.approx(46536.1, abs=0.1)
    assert found.saturation_source == "header SATURATE"
    assert not any("saturat" in w.lower() for w in found.warnings)
    assert found.filter == "i" and found.filter_raw.startswith("i DECam")
    assert any("WAT" in fix for fix in found.wcs_fixes)


def test_eso_emmi(real_data):
    data, header = load_image(real_data / "sep_eso_emmi_image.fits")
    found = inspect_image(data, header)
    assert not found.wcs.usable
    assert found.filter == "R"
    assert found.original_dtype == "int16 (scaled)" and not found.raw_like
    assert any("time keywords disagree" in w for w in found.warnings)
    assert found.gain_source == "assumed"


# --------------------------------------------------------------------- gain


def test_consistent_gain_is_kept():
    image, _ = _sky(gain=2.0)
    found = inspect_image(image, _header(GAIN=2.0, SATURATE=60000.0))
    assert found.gain == 2.0 and not found.warnings
    assert (found.ra_hint, found.dec_hint) == (pytest.approx(150.0), pytest.approx(20.0))


def test_rescaled_image_gets_its_effective_gain():
    # an averaged/normalised image: values /100 make the noise 10x below Poisson for gain 2
    image, _ = _sky(level=1000.0, gain=2.0, read_noise=0.0)
    scaled = image / 100.0
    found = inspect_image(scaled, _header(GAIN=2.0))
    # the sky (10 ADU) now has variance 1000/2/1e4 = 0.05 ADU^2: effective gain 200 e-/ADU
    assert found.gain == pytest.approx(200.0, rel=0.1)
    assert found.gain_source == "estimated from sky noise"
    assert any("far below Poisson" in w for w in found.warnings)


def test_missing_gain_on_rescaled_image():
    image, _ = _sky(level=1000.0, gain=2.0, read_noise=0.0)
    found = inspect_image(image / 1000.0, _header())
    assert any("no gain keyword" in w for w in found.warnings)
    assert found.gain == pytest.approx(2000.0, rel=0.1)


def test_user_gain_is_kept_but_questioned():
    image, _ = _sky(level=1000.0, gain=2.0, read_noise=0.0)
    found = inspect_image(image / 100.0, _header(), gain=1.0)
    assert found.gain == 1.0 and found.gain_source == "config"
    assert any("keeping the gain you set" in w for w in found.warnings)


def test_sky_subtracted_image_is_not_gain_checked():
    image, _ = _sky(level=1000.0, gain=2.0)
    found = inspect_image(image - 1000.0, _header(GAIN=0.01))
    assert found.sky_subtracted and found.gain == 0.01


# --------------------------------------------------------------- saturation


def _saturated(level=30000.0, header_saturation=None):
    image, _ = _sky(stars=0)
    yy, xx = np.mgrid[0:256, 0:256]
    for x, y in [(60, 60), (180, 100), (100, 190)]:
        image += 200000.0 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 2.0**2))
    image = np.minimum(image, level).astype(np.float32)
    cards = {} if header_saturation is None else {"SATURATE": header_saturation}
    return image, _header(GAIN=2.0, **cards)


def test_saturation_from_header_below_maximum():
    image, header = _saturated(30000.0, header_saturation=30000.0)
    found = inspect_image(image, header)
    assert found.saturation == 30000.0 and found.saturation_source == "header SATURATE"


def test_saturation_above_maximum_with_pile_up_is_estimated():
    # header says 65535 but the (rescaled) data pile up at 30000
    image, header = _saturated(30000.0, header_saturation=65535.0)
    found = inspect_image(image, header)
    assert found.saturation_source == "estimated from pixel pile-up"
    assert 29000.0 < found.saturation <= 30000.0
    assert any("above the data maximum" in w for w in found.warnings)


def test_missing_saturation_is_estimated_from_pile_up():
    image, header = _saturated(30000.0)
    found = inspect_image(image, header)
    assert 29000.0 < found.saturation <= 30000.0
    assert any("no saturation keyword" in w for w in found.warnings)


def test_missing_saturation_without_pile_up():
    image, _ = _sky()
    found = inspect_image(image, _header(GAIN=2.0))
    assert found.saturation > float(image.max())
    assert found.saturation == pytest.approx(float(image.max()), rel=1e-5)
    assert found.saturation_source == "above data maximum"


def test_missing_saturation_of_16_bit_data_is_the_adc_limit():
    image, _ = _sky()
    header = _header(GAIN=2.0)
    header[ORIGINAL_DTYPE_KEY] = "uint16"
    found = inspect_image(np.round(image), header)
    assert found.saturation == 65535.0


def test_header_saturation_above_maximum_without_pile_up_is_kept():
    image, _ = _sky()
    found = inspect_image(image, _header(GAIN=2.0, SATURATE=60000.0))
    assert found.saturation == 60000.0 and not found.warnings


def test_too_low_saturation_is_questioned():
    image, _ = _sky()
    found = inspect_image(image, _header(GAIN=2.0, SATURATE=900.0))
    assert found.saturation == 900.0
    assert any("at or above the saturation level" in w for w in found.warnings)


def test_pileup_estimator_ignores_unsaturated_stars():
    image, _ = _sky(stars=200, seed=4)
    assert estimate_pileup(image.ravel(), 1000.0) is None
    values = np.concatenate([image.ravel(), np.full(50, 40000.0)])
    assert estimate_pileup(values, 1000.0) == pytest.approx(40000.0)


# ------------------------------------------------------------------ edge cases


def test_all_nan_image():
    with pytest.raises(InspectionError, match="no finite pixel"):
        inspect_image(np.full((64, 64), np.nan, np.float32), _header())


def test_constant_image():
    with pytest.raises(InspectionError, match="same value"):
        inspect_image(np.full((64, 64), 7.0, np.float32), _header())


def test_nan_pixels_are_tolerated():
    image, _ = _sky()
    image[:40] = np.nan
    found = inspect_image(image, _header(GAIN=2.0))
    assert found.sky_level == pytest.approx(1000.0, abs=5.0)


def test_overrides():
    image, _ = _sky()
    found = inspect_image(
        image, _header(), gain=3.0, saturation=5000.0, filter_name="r", time="60018.25"
    )
    assert (found.gain, found.saturation, found.filter) == (3.0, 5000.0, "r")
    assert found.time_iso == "2023-03-15T06:00:00.000" and found.time_source == "config"
    with pytest.raises(InspectionError, match="unknown filter"):
        inspect_image(image, _header(), filter_name="Halpha")
    with pytest.raises(InspectionError, match="cannot read the time"):
        inspect_image(image, _header(), time="last night")


def test_missing_keywords_are_reported():
    image, _ = _sky()
    found = inspect_image(image, fits.Header())
    text = " ".join(found.warnings)
    for expected in ("exposure", "no filter", "observation time", "gain", "blind astrometry"):
        assert expected in text, expected


def test_jd_only_time():
    image, _ = _sky()
    header = fits.Header({"JD": 2459335.63386, "EXPTIME": 10.0, "FILTER": "B", "GAIN": 2.0})
    found = inspect_image(image, header)
    assert found.mjd == pytest.approx(59335.13386, abs=1e-8) and found.time_source == "JD"


def test_weird_filter_strings():
    image, _ = _sky()
    assert inspect_image(image, _header(FILTER="Bessell R")).filter == "R"
    assert inspect_image(image, _header(FILTER="sdss_i")).filter == "i"
    found = inspect_image(image, _header(FILTER="Halpha 6563/3"))
    assert found.filter is None and any("not a known band" in w for w in found.warnings)
