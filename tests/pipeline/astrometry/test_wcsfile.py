"""image.wcs files, header updates and exact pixel↔sky round trips, on simulated and real WCS."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from pipeline.astrometry import AstrometryError, apply_wcs, read_wcs_file, strip_wcs, write_wcs_file
from pipeline.astrometry.quality import wcs_grid_difference
from pipeline.astrometry.wcsfile import pixel_to_sky, sky_to_pixel, wcs_from_header
from pipeline.wcs_header import sanitize_wcs_header

ROUND_TRIP_PX = 1e-6  # the acceptance tolerance for pixel → sky → pixel


def _grid(shape, n=21):
    ny, nx = shape
    gx, gy = np.meshgrid(np.linspace(-0.5, nx - 0.5, n), np.linspace(-0.5, ny - 0.5, n))
    return gx.ravel(), gy.ravel()


def _round_trip_error(wcs, shape) -> float:
    x, y = _grid(shape)
    ra, dec = pixel_to_sky(wcs, x, y)
    x2, y2 = sky_to_pixel(wcs, ra, dec)
    return float(np.max(np.hypot(x2 - x, y2 - y)))


def test_sip_wcs_file_round_trip(field, tmp_path):
    path = tmp_path / "image.wcs"
    write_wcs_file(field.truth, path, extra={"ASTRRMS": (0.12, "[arcsec] residual RMS")})
    header = fits.getheader(path)
    assert header["NAXIS"] == 0 and header["CTYPE1"] == "RA---TAN-SIP"
    assert header["IMAGEW"] == 2048 and header["ASTRRMS"] == 0.12
    assert "DATE-OBS" not in header and "MJDREF" not in header
    back = read_wcs_file(path)
    assert tuple(back.pixel_shape) == (2048, 2048)
    assert wcs_grid_difference(back, field.truth, field.shape)[1] < 1e-6
    assert _round_trip_error(back, field.shape) < ROUND_TRIP_PX


def test_apply_wcs_replaces_every_old_card(field):
    old = field.sky.header.copy()
    old["CDELT1"], old["CROTA2"], old["PV1_5"] = 1.0, 12.0, 0.3  # stale leftovers
    old["CTYPE1A"] = "RA---TAN"  # an alternate WCS
    new = field.approximate(20.0, 0.2)
    updated = apply_wcs(old, new)
    for key in ("CROTA2", "PV1_5", "CTYPE1A", "A_ORDER", "AP_3_0", "IMAGEW"):
        assert key not in updated
    assert updated["OBJECT"] == old["OBJECT"] and updated["GAIN"] == old["GAIN"]
    assert wcs_grid_difference(WCS(updated), new, field.shape)[1] < 1e-6
    assert "A_ORDER" not in strip_wcs(field.sky.header) and "EXPTIME" in strip_wcs(old)


@pytest.mark.parametrize(
    "name",
    [
        "sfft_decam/Stack-DEC-OBS04_ref.fits",
        "sfft_decam/Stack-DEC-OBS18_sci.fits",
        "sdss_g_run1737_c5_f47_full.fits.bz2",
    ],
)
def test_real_wcs_read_and_round_trips_exact(real_data, tmp_path, name):
    header = fits.getheader(real_data / name)
    shape = (header["NAXIS2"], header["NAXIS1"])
    clean, _ = sanitize_wcs_header(header)
    wcs = wcs_from_header(clean)
    assert wcs.has_celestial
    assert _round_trip_error(wcs, shape) < ROUND_TRIP_PX
    # written as image.wcs and read back, the solution (TPV or TAN) is unchanged
    write_wcs_file(wcs, tmp_path / "image.wcs")
    back = read_wcs_file(tmp_path / "image.wcs")
    assert wcs_grid_difference(back, wcs, shape)[1] < 1e-6
    assert _round_trip_error(back, shape) < ROUND_TRIP_PX
    if "decam" in name:
        assert fits.getheader(tmp_path / "image.wcs")["CTYPE1"] == "RA---TPV"


def test_decam_pixel_scale(real_data):
    header = fits.getheader(real_data / "sfft_decam" / "Stack-DEC-OBS18_sci.fits")
    wcs = wcs_from_header(sanitize_wcs_header(header)[0])
    ra, dec = pixel_to_sky(wcs, [127.5, 128.5], [127.5, 127.5])
    step = np.hypot((ra[1] - ra[0]) * np.cos(np.deg2rad(dec[0])), dec[1] - dec[0]) * 3600
    assert step == pytest.approx(0.263, abs=0.005)  # DECam's pixel scale, arcsec
    assert -66.5 < dec[0] < -65.5  # near CRVAL2: the reference pixel is 7000 px away


def test_unreadable_files_are_clear_errors(tmp_path):
    with pytest.raises(AstrometryError, match="cannot read the WCS file"):
        read_wcs_file(tmp_path / "missing.wcs")
    fits.PrimaryHDU().writeto(tmp_path / "empty.wcs")
    with pytest.raises(AstrometryError, match="no celestial WCS"):
        read_wcs_file(tmp_path / "empty.wcs")
