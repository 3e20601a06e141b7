"""The linear TAN-SIP fit recovers known WCS exactly and agrees with astropy's fitter."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS
from astropy.wcs.utils import fit_wcs_from_points

from pipeline.astrometry.errors import AstrometryError
from pipeline.astrometry.fit import (
    fit_tan_sip,
    gnomonic_deproject,
    gnomonic_project,
    highest_order,
    min_stars_for_order,
    polynomial_terms,
    wcs_to_sip,
)
from pipeline.astrometry.quality import wcs_grid_difference
from pipeline.simulate.wcs import make_wcs


def _points(wcs: WCS, n: int, nx: int, ny: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(0, nx - 1, n), rng.uniform(0, ny - 1, n)
    ra, dec = wcs.all_pix2world(x, y, 0)
    return x, y, ra, dec


def test_gnomonic_matches_astropy_tan_and_inverts():
    tan = WCS(naxis=2)
    tan.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    tan.wcs.crval = [359.9, -45.0]  # across RA = 0 and far from the equator
    tan.wcs.crpix = [0.0, 0.0]
    tan.wcs.cd = np.eye(2)
    tan.wcs.set()
    rng = np.random.default_rng(1)
    ra = (359.9 + rng.uniform(-2, 2, 500)) % 360
    dec = -45.0 + rng.uniform(-2, 2, 500)
    xi, eta = gnomonic_project(ra, dec, 359.9, -45.0)
    # with CD = identity (deg/px) and CRPIX 0, astropy's 0-based pixel + 1 is (xi, eta)
    px, py = tan.wcs_world2pix(ra, dec, 0)
    assert np.max(np.abs(px + 1 - xi)) < 1e-10
    assert np.max(np.abs(py + 1 - eta)) < 1e-10
    back_ra, back_dec = gnomonic_deproject(xi, eta, 359.9, -45.0)
    assert np.max(np.abs((back_ra - ra + 180) % 360 - 180)) < 1e-10
    assert np.max(np.abs(back_dec - dec)) < 1e-10


@pytest.mark.parametrize("order", [2, 3, 4])
def test_noiseless_sip_recovered_exactly(order):
    rng = np.random.default_rng(order)
    truth = make_wcs(
        2048, 1536, 210.3, 54.1, 0.62, 33.0, sip_order=order, sip_corner_px=6.0, rng=rng
    )
    x, y, ra, dec = _points(truth, 2000, 2048, 1536)
    fitted = fit_tan_sip(x, y, ra, dec, sip_order=order, shape=(1536, 2048))
    _, worst = wcs_grid_difference(fitted, truth, (1536, 2048))
    assert worst < 1e-5  # pixels: the model is exact, so only rounding remains
    assert fitted.sip is not None and fitted.sip.a_order == order
    assert tuple(fitted.pixel_shape) == (2048, 1536)
    # the inverse polynomials AP/BP let wcs_world2pix-style readers get within 0.01 px
    header = fitted.to_header(relax=True)
    assert header["AP_ORDER"] == order + 1


def test_plain_tan_near_the_pole():
    truth = make_wcs(1024, 1024, 12.0, 89.7, 1.5, -20.0)
    x, y, ra, dec = _points(truth, 300, 1024, 1024)
    fitted = fit_tan_sip(x, y, ra, dec, sip_order=1, shape=(1024, 1024))
    assert fitted.sip is None
    assert fitted.wcs.ctype[0] == "RA---TAN"
    assert wcs_grid_difference(fitted, truth, (1024, 1024))[1] < 1e-6


def test_agrees_with_astropy_fit_wcs_from_points():
    rng = np.random.default_rng(5)
    truth = make_wcs(1024, 1024, 150.0, 20.0, 0.8, 0.7, sip_order=2, sip_corner_px=3.0, rng=rng)
    x, y, ra, dec = _points(truth, 300, 1024, 1024, seed=2)
    noise = np.random.default_rng(3).normal(0, 0.1, (2, len(x)))  # 0.1 px centroid noise
    ours = fit_tan_sip(x + noise[0], y + noise[1], ra, dec, sip_order=2, shape=(1024, 1024))
    theirs = fit_wcs_from_points(
        (x + noise[0], y + noise[1]),
        SkyCoord(ra, dec, unit="deg"),
        projection="TAN",
        sip_degree=2,
    )
    # both are least-squares fits of the same model: they agree far better than the noise
    rms, _ = wcs_grid_difference(ours, theirs, (1024, 1024))
    assert rms < 0.01
    assert wcs_grid_difference(ours, truth, (1024, 1024))[0] < 0.05


def test_weights_downweight_outliers():
    truth = make_wcs(1024, 1024, 80.0, -10.0, 1.0, 0.0)
    x, y, ra, dec = _points(truth, 200, 1024, 1024)
    x_bad = x.copy()
    x_bad[:5] += 30.0  # five wrong matches
    weights = np.ones(len(x))
    weights[:5] = 0.0
    fitted = fit_tan_sip(x_bad, y, ra, dec, sip_order=1, shape=(1024, 1024), weights=weights)
    assert wcs_grid_difference(fitted, truth, (1024, 1024))[1] < 1e-6


def test_too_few_stars_and_bad_input_are_clear_errors():
    truth = make_wcs(512, 512, 10.0, 10.0, 1.0, 0.0)
    x, y, ra, dec = _points(truth, 8, 512, 512)
    with pytest.raises(AstrometryError, match="cannot constrain a SIP order-3"):
        fit_tan_sip(x, y, ra, dec, sip_order=3)
    with pytest.raises(AstrometryError, match="NaN"):
        fit_tan_sip(np.r_[x[:-1], np.nan], y, ra, dec, sip_order=1)
    with pytest.raises(AstrometryError, match="same length"):
        fit_tan_sip(x[:-1], y, ra, dec, sip_order=1)
    with pytest.raises(AstrometryError, match="collinear or clustered"):
        line = np.linspace(0, 500, 20)
        lra, ldec = truth.all_pix2world(line, line, 0)
        fit_tan_sip(line, line, lra, ldec, sip_order=1)


def test_order_bookkeeping():
    assert len(polynomial_terms(3)) == 10
    assert polynomial_terms(2, 2) == [(2, 0), (1, 1), (0, 2)]
    assert min_stars_for_order(3) == 30
    assert highest_order(1000, 3) == 3
    assert highest_order(25, 3) == 2
    assert highest_order(5, 3) == 1


def test_tpv_of_real_decam_image_converted_to_sip(real_data):
    header = fits.getheader(real_data / "sfft_decam" / "Stack-DEC-OBS04_ref.fits")
    from pipeline.wcs_header import sanitize_wcs_header

    clean, _ = sanitize_wcs_header(header)
    tpv = WCS(clean)
    sip = wcs_to_sip(tpv, (256, 256), sip_order=3)
    # DECam's TPV has cubic terms; a cubic SIP over this small stamp matches it closely
    _, worst = wcs_grid_difference(sip, tpv, (256, 256))
    assert worst < 0.01
