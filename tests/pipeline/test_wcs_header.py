"""WCS header repair and the usable-WCS check, on real headers and on known broken dialects."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from pipeline.fitsio import load_image
from pipeline.wcs_header import MAX_PIXEL_SCALE_ARCSEC, check_wcs, sanitize_wcs_header


def _tan_header(scale_arcsec=1.0, ra=150.0, dec=20.0, shape=(200, 300)) -> fits.Header:
    header = fits.Header()
    header["NAXIS"] = 2
    header["NAXIS1"], header["NAXIS2"] = shape[1], shape[0]
    header["CTYPE1"], header["CTYPE2"] = "RA---TAN", "DEC--TAN"
    header["CRVAL1"], header["CRVAL2"] = ra, dec
    header["CRPIX1"], header["CRPIX2"] = shape[1] / 2 + 0.5, shape[0] / 2 + 0.5
    header["CD1_1"], header["CD1_2"] = -scale_arcsec / 3600, 0.0
    header["CD2_1"], header["CD2_2"] = 0.0, scale_arcsec / 3600
    return header


def _world(header, x, y):
    return np.array(WCS(header).all_pix2world(x, y, 0))


# ------------------------------------------------------------------ real headers


def test_decam_tpv_is_usable(real_data):
    _, header = load_image(real_data / "sfft_decam" / "Stack-DEC-OBS04_ref.fits")
    clean, fixes = sanitize_wcs_header(header)
    assert any("WAT" in fix for fix in fixes)
    assert clean["CTYPE1"] == "RA---TPV"  # TPV stays: astropy evaluates it
    check = check_wcs(clean, (256, 256))
    assert check.usable, check.reason
    assert check.pixel_scale_arcsec == pytest.approx(0.263, abs=0.002)  # DECam 0.263″/px
    # the distortion is applied: the corners match astropy on the untouched header
    original = WCS(header)
    for x, y in [(0, 0), (255, 255), (0, 255)]:
        ra, dec = check.wcs.all_pix2world(x, y, 0)
        ra0, dec0 = original.all_pix2world(x, y, 0)
        assert abs(ra - ra0) < 1e-9 and abs(dec - dec0) < 1e-9


def test_sdss_tan_is_usable(real_data):
    _, header = load_image(real_data / "sdss_g_run1737_c5_f47_full.fits.bz2")
    clean, fixes = sanitize_wcs_header(header)
    assert "RADESYS" in clean and "RADECSYS" not in clean
    assert fixes == ["RADECSYS renamed to RADESYS"]
    check = check_wcs(clean, (1489, 2048))
    assert check.usable
    assert check.pixel_scale_arcsec == pytest.approx(0.396, abs=0.001)
    assert (check.ra_center, check.dec_center) == (
        pytest.approx(313.170, abs=0.002),
        pytest.approx(-5.693, abs=0.002),
    )


def test_eso_emmi_has_no_usable_wcs(real_data):
    _, header = load_image(real_data / "sep_eso_emmi_image.fits")
    check = check_wcs(sanitize_wcs_header(header)[0], (256, 256))
    assert not check.usable and "no celestial WCS" in check.reason


# --------------------------------------------------------------- broken dialects


def test_scamp_pv_on_tan_is_relabelled_tpv():
    header = _tan_header(0.5)
    header["PV1_1"], header["PV2_1"] = 1.0, 1.0
    header["PV1_4"], header["PV2_4"] = 2e-3, -1e-3  # quadratic distortion terms
    clean, fixes = sanitize_wcs_header(header)
    assert clean["CTYPE1"] == "RA---TPV" and clean["CTYPE2"] == "DEC--TPV"
    assert any("TPV" in fix for fix in fixes)
    reference = header.copy()
    reference["CTYPE1"], reference["CTYPE2"] = "RA---TPV", "DEC--TPV"
    np.testing.assert_allclose(_world(clean, 5.0, 190.0), _world(reference, 5.0, 190.0))
    assert check_wcs(clean, (200, 300)).usable


def test_prism_header():
    header = _tan_header(1.2)
    header["CTYPE2"] = "DEC---TAN"  # nine characters: PRISM
    header["PV1_1"], header["PV1_2"] = 0.0, 90.0
    header["XPIXELSZ"], header["CDELTM1"] = 9.0, 1.0
    clean, fixes = sanitize_wcs_header(header)
    assert clean["CTYPE2"] == "DEC--TAN"
    assert "PV1_1" not in clean and "XPIXELSZ" not in clean and "CDELTM1" not in clean
    assert len(fixes) == 3
    check = check_wcs(clean, (200, 300))
    assert check.usable and check.pixel_scale_arcsec == pytest.approx(1.2, rel=1e-3)


def test_string_valued_numbers():
    header = _tan_header(2.0)
    header["CRVAL1"] = "150.0"
    header["CD2_2"] = "5.5555555555E-04"
    header["EQUINOX"] = "2000.0"
    header["CRPIX1"] = "n/a"
    clean, fixes = sanitize_wcs_header(header)
    assert clean["CRVAL1"] == 150.0 and isinstance(clean["CD2_2"], float)
    assert "CRPIX1" not in clean
    assert len(fixes) == 4


def test_third_axis_leftovers():
    header = _tan_header(1.0)
    header["WCSAXES"] = 3
    header["CTYPE3"], header["CRVAL3"], header["CRPIX3"] = "FREQ", 1.4e9, 1.0
    header["CDELT3"], header["PC3_3"], header["CD1_3"] = 1e6, 1.0, 0.0
    header["PV3_1"] = 5.0
    clean, _ = sanitize_wcs_header(header)
    for key in ("CTYPE3", "CRVAL3", "CRPIX3", "CDELT3", "PC3_3", "CD1_3", "PV3_1"):
        assert key not in clean, key
    assert clean["WCSAXES"] == 2
    assert check_wcs(clean, (200, 300)).usable


def test_iraf_tnx_is_reduced_to_tan():
    header = _tan_header(0.8)
    header["CTYPE1"], header["CTYPE2"] = "RA---TNX", "DEC--TNX"
    header["WCSDIM"] = 2
    header["WAT0_001"] = "system=image"
    header["WAT1_001"] = "wtype=tnx axtype=ra lngcor = 3. 3. 2. 2."
    clean, fixes = sanitize_wcs_header(header)
    assert clean["CTYPE1"] == "RA---TAN"
    assert not any(key.startswith("WAT") for key in clean) and "WCSDIM" not in clean
    assert any("TNX" in fix for fix in fixes)
    assert check_wcs(clean, (200, 300)).usable


def test_sip_without_sip_ctype():
    header = _tan_header(1.0)
    header["A_ORDER"], header["B_ORDER"] = 2, 2
    header["A_2_0"], header["B_0_2"] = 1e-5, 1e-5
    clean, _ = sanitize_wcs_header(header)
    assert clean["CTYPE1"] == "RA---TAN-SIP"
    wcs = check_wcs(clean, (200, 300)).wcs
    assert wcs.sip is not None


def test_placeholder_scale_is_not_usable():
    # CDELT = 1 degree per pixel: a placeholder, not a solution
    header = _tan_header(3600.0)
    check = check_wcs(header, (200, 300))
    assert not check.usable
    assert f"{MAX_PIXEL_SCALE_ARCSEC}" in check.reason
    assert check.pixel_scale_arcsec == pytest.approx(3600.0, rel=0.05)


def test_linear_wcs_is_not_celestial():
    header = fits.Header({"CTYPE1": "LINEAR", "CTYPE2": "LINEAR", "CDELT1": 1.0, "CDELT2": 1.0})
    assert not check_wcs(header, (100, 100)).usable


def test_unreadable_wcs_gives_a_reason():
    header = _tan_header(1.0)
    header["CTYPE1"] = "RA---XYZ"
    check = check_wcs(header, (200, 300))
    assert not check.usable and check.reason
