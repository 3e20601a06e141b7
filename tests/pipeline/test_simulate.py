"""The simulator's truth must describe its pixels: fluxes, PSF, noise, WCS, files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from photutils.aperture import CircularAperture, aperture_photometry
from scipy.optimize import least_squares

from pipeline.simulate import SkyConfig, limiting_magnitude, simulate_sky, write_simulation
from pipeline.simulate.catalog import PS1_COLUMNS, locus_colours
from pipeline.simulate.fields import FieldFrame, PSFField
from pipeline.simulate.psf import render_point_sources
from pipeline.simulate.wcs import rotation_angle_deg


@pytest.fixture(scope="module", params=["moffat", "gaussian"])
def sparse_sky(request):
    # a sparse field, so that isolated bright stars exist in a small image
    return simulate_sky(
        size=512, seed=11, psf=request.param, n_stars=80, n_galaxies=3, n_transients=0
    )


@pytest.fixture(scope="module")
def moffat_sky():
    return simulate_sky(size=512, seed=5)


# --- helpers independent of the simulator's own integration code -------------------


def _reference_psf(params, shape, kind, beta, oversample=8):
    """Elliptical PSF integrated over pixels by brute-force midpoint sub-sampling."""
    x0, y0, flux, fwhm_major, fwhm_minor, theta = params
    ny, nx = shape
    sub = (np.arange(oversample) + 0.5) / oversample - 0.5
    ys = (np.arange(ny)[:, None] + sub[None, :]).ravel()
    xs = (np.arange(nx)[:, None] + sub[None, :]).ravel()
    dx, dy = xs[None, :] - x0, ys[:, None] - y0
    xr = dx * np.cos(theta) + dy * np.sin(theta)
    yr = -dx * np.sin(theta) + dy * np.cos(theta)
    if kind == "gaussian":
        a, b = fwhm_major / 2.35482, fwhm_minor / 2.35482
        density = np.exp(-0.5 * ((xr / a) ** 2 + (yr / b) ** 2)) / (2 * np.pi * a * b)
    else:
        k = 2 * np.sqrt(2 ** (1 / beta) - 1)
        a, b = fwhm_major / k, fwhm_minor / k
        density = (beta - 1) / (np.pi * a * b) * (1 + (xr / a) ** 2 + (yr / b) ** 2) ** -beta
    return flux * density.reshape(ny, oversample, nx, oversample).mean(axis=(1, 3))


def _fit_psf(stamp, kind, beta):
    """Least-squares fit of :func:`_reference_psf`; returns (fwhm, ellipticity, x0, y0)."""
    ny, nx = stamp.shape
    start = [nx / 2 - 0.5, ny / 2 - 0.5, stamp.sum(), 3.2, 3.0, 0.3]
    res = least_squares(
        lambda p: (_reference_psf(p, stamp.shape, kind, beta) - stamp).ravel(),
        start,
        bounds=([0, 0, 0, 0.5, 0.5, -np.pi], [nx, ny, np.inf, 20, 20, np.pi]),
        x_scale=[0.1, 0.1, stamp.sum() / 100, 0.1, 0.1, 0.1],
    )
    x0, y0, _, fmaj, fmin, _ = res.x
    fmaj, fmin = max(fmaj, fmin), min(fmaj, fmin)
    return np.sqrt(fmaj * fmin), 1 - fmin / fmaj, x0, y0


def _isolated_star(sky, min_flux=1000.0, edge=40):
    """An unsaturated star whose stamp box receives < 0.05 % foreign flux.

    A neighbouring star at box-edge distance d can put at most the part of its PSF
    outside radius d into the box (the round PSF of its major-axis FWHM bounds it);
    galaxies and transients count fully when they come near.
    """
    truth = sky.truth
    stars = truth.stars
    psf = truth.psf_field
    ny, nx = sky.image.shape
    xy = np.c_[stars["x"], stars["y"]]
    extended = np.concatenate(
        [
            np.c_[
                truth.galaxies["x"],
                truth.galaxies["y"],
                truth.galaxies["flux"],
                10 * truth.galaxies["r_eff"] + 10,
            ],
            np.c_[
                truth.transients["x"],
                truth.transients["y"],
                truth.transients["flux"],
                np.full(len(truth.transients), 30.0),
            ],
        ]
    )
    fwhm_major = stars["fwhm"] / np.sqrt(1 - stars["ellipticity"])
    candidates = np.flatnonzero(
        stars["in_image"]
        & ~stars["saturated"]
        & (stars["flux"] > min_flux)
        & (stars["x"] > edge)
        & (stars["x"] < nx - edge)
        & (stars["y"] > edge)
        & (stars["y"] < ny - edge)
    )
    for i in candidates[np.argsort(-stars["flux"][candidates])]:
        h = stars["stamp_half_size"][i] + 2
        d = np.abs(xy - xy[i]).max(axis=1) - h - 0.5
        foreign = 0.0
        for j in np.flatnonzero(d < stars["stamp_half_size"] + 1):
            if j != i:
                outside = 1.0 - psf.encircled_fraction(max(d[j], 0.0), fwhm_major[j])
                foreign += stars["flux"][j] * outside
        d_ext = np.abs(extended[:, :2] - xy[i]).max(axis=1) - h if len(extended) else []
        foreign += sum(extended[k, 2] for k in np.flatnonzero(d_ext < extended[:, 3]))
        if foreign < 5e-4 * stars["flux"][i]:
            return i
    raise AssertionError("no isolated star found")


# --- photometric truth --------------------------------------------------------------


def test_isolated_star_flux_and_fwhm_match_truth(sparse_sky):
    """Noiseless pixels of an isolated star sum to its truth flux (0.5 %) and a fit with
    an independent PSF implementation finds its truth FWHM (2 %) and position (0.02 px)."""
    sky = sparse_sky
    i = _isolated_star(sky)
    star = sky.truth.stars[i]
    h = int(star["stamp_half_size"]) + 2
    ix, iy = round(star["x"]), round(star["y"])
    box = (slice(iy - h, iy + h + 1), slice(ix - h, ix + h + 1))
    alone = sky.model[box].astype(float) - sky.background[box]
    assert alone.sum() == pytest.approx(star["flux"], rel=5e-3)
    assert star["flux"] == pytest.approx(
        10 ** (-0.4 * (star["mag"] - star["zp"] - sky.truth.color_term * star["g_r"])),
        rel=1e-9,
    )
    core = (slice(iy - 10, iy + 11), slice(ix - 10, ix + 11))
    stamp = sky.model[core].astype(float) - sky.background[core]
    fwhm, ell, x0, y0 = _fit_psf(stamp, sky.truth.psf, sky.truth.beta)
    assert fwhm == pytest.approx(star["fwhm"], rel=0.02)
    assert fwhm == pytest.approx(sky.truth.fwhm_map(star["x"], star["y"]), rel=0.02)
    assert abs(ell - star["ellipticity"]) < 0.02
    assert abs(x0 + ix - 10 - star["x"]) < 0.02
    assert abs(y0 + iy - 10 - star["y"]) < 0.02


@pytest.mark.parametrize("kind", ["moffat", "gaussian"])
@pytest.mark.parametrize("where", [(512.0, 512.0), (60.3, 970.7)])
def test_noiseless_psf_stamp_fwhm(kind, where):
    """A rendered stamp has the truth FWHM (2 %) and ellipticity (0.01) of its position,
    at the centre and near a corner where the PSF is broader and elongated."""
    psf = PSFField(FieldFrame(1024, 1024), kind, 2.5, 3.0, 3.6, 0.03, 0.15)
    x, y = where
    image = np.zeros((1024, 1024))
    flux = 1.0e5
    out = render_point_sources(image, np.array([x]), np.array([y]), np.array([flux]), psf)
    assert image.sum() == pytest.approx(flux, rel=1e-9)
    assert out.stamp_fraction[0] > 0.999
    ix, iy = round(x), round(y)
    stamp = image[iy - 12 : iy + 13, ix - 12 : ix + 13]
    fwhm, ell, _, _ = _fit_psf(stamp, kind, 2.5)
    truth_fwhm, truth_ell, _ = psf.shape(x, y)
    assert fwhm == pytest.approx(float(truth_fwhm), rel=0.02)
    assert abs(ell - float(truth_ell)) < 0.01


def test_zero_point_map_and_colour_term(moffat_sky):
    """ZP(x,y) spans the configured range; star fluxes follow m_inst = m - ZP - C (g-r)."""
    truth, cfg = moffat_sky.truth, moffat_sky.config
    grid = truth.zero_point_map.on_grid(8)
    assert np.ptp(grid) == pytest.approx(cfg.zero_point_range, rel=0.02)
    assert truth.zero_point_map(255.5, 255.5) == pytest.approx(cfg.zero_point, abs=1e-9)
    stars = truth.stars
    assert np.allclose(stars["zp"], truth.zero_point_map(stars["x"], stars["y"]))
    m_inst = -2.5 * np.log10(stars["flux"])
    implied_c = (stars["mag"] - stars["zp"] - m_inst) / stars["g_r"]
    usable = np.abs(stars["g_r"]) > 0.2
    assert np.allclose(implied_c[usable], cfg.color_term, atol=1e-9)


def test_limit_formula_gives_snr_5():
    """A point source at limit_sn5 has S/N = 5 (within 3 %) in a 1-FWHM aperture, with the
    aperture fraction measured by photutils on a rendered stamp at the median FWHM."""
    sim = simulate_sky(
        size=256,
        seed=2,
        n_stars=10,
        n_galaxies=0,
        n_transients=0,
        template=False,
        ellipticity_center=0.0,
        ellipticity_corner=0.0,
        fwhm_corner=3.0,
    )
    truth = sim.truth
    image = np.zeros((64, 64))
    flux = 10 ** (-0.4 * (truth.limit_sn5 - truth.zp_median))
    psf = truth.psf_field
    render_point_sources(
        image,
        np.array([32.0]),
        np.array([32.0]),
        np.array([flux]),
        PSFField(FieldFrame(64, 64), psf.kind, psf.beta, 3.0, 3.0, 0.0, 0.0),
    )
    phot = aperture_photometry(image, CircularAperture((32.0, 32.0), r=truth.fwhm_median))
    f_ap = float(phot["aperture_sum"][0])
    area = np.pi * truth.fwhm_median**2
    noise = np.sqrt(
        f_ap / truth.gain
        + area * (truth.sky_level / truth.gain + (truth.read_noise / truth.gain) ** 2)
    )
    assert f_ap / noise == pytest.approx(5.0, rel=0.03)
    assert (
        limiting_magnitude(
            truth.zp_median, truth.fwhm_median, truth.sky_level, truth.gain, truth.read_noise, psf
        )
        == truth.limit_sn5
    )


# --- detector ---------------------------------------------------------------------------


def test_blank_sky_noise_matches_gain_and_read_noise(moffat_sky):
    """Pixel variance about the noiseless model is model/GAIN + (RDNOISE/GAIN)^2 (5 %)."""
    sim = moffat_sky
    gain, rdnoise = sim.header["GAIN"], sim.header["RDNOISE"]
    blank = ((sim.model - sim.background) < 0.5) & ~sim.truth.cosmic_mask
    blank &= ~sim.truth.bad_column_mask
    resid = (sim.image.astype(float) - sim.model)[blank]
    expected = sim.model[blank] / gain + (rdnoise / gain) ** 2
    assert blank.sum() > 50000
    assert np.mean(resid**2 / expected) == pytest.approx(1.0, abs=0.05)
    assert abs(np.mean(resid)) < 0.05 * np.sqrt(expected.mean())


def test_read_noise_dominated_variance():
    """With a faint sky the read-noise term dominates and is still right (5 %)."""
    sim = simulate_sky(
        size=256,
        seed=3,
        sky_level=5.0,
        read_noise=20.0,
        gain=1.5,
        n_stars=5,
        n_galaxies=0,
        n_transients=0,
        template=False,
    )
    blank = ((sim.model - sim.background) < 0.05) & ~sim.truth.cosmic_mask
    blank &= ~sim.truth.bad_column_mask
    resid = (sim.image.astype(float) - sim.model)[blank]
    expected = sim.model[blank] / 1.5 + (20.0 / 1.5) ** 2
    assert np.mean(resid**2 / expected) == pytest.approx(1.0, abs=0.05)


def test_cosmic_mask_covers_injected_hits(moffat_sky):
    sim = moffat_sky
    truth = sim.truth
    sigma = np.sqrt(sim.model / truth.gain + (truth.read_noise / truth.gain) ** 2)
    excess = (sim.image - sim.model) / sigma
    hits = truth.cosmic_events[truth.cosmic_events["kind"] == "hit"]
    assert len(hits) > 5 and np.sum(truth.cosmic_events["kind"] == "track") > 0
    for hit in hits:
        y, x = int(hit["y"]), int(hit["x"])
        assert truth.cosmic_mask[y, x]
        if sim.image[y, x] < truth.saturation and not truth.bad_column_mask[y, x]:
            assert excess[y, x] > 10
    assert truth.cosmic_mask.sum() == pytest.approx(sum(truth.cosmic_events["n_pixels"]), rel=0.1)
    # outside the mask and the bad columns, no pixel is a > 7 sigma outlier
    clean = ~truth.cosmic_mask & ~truth.bad_column_mask & (sim.image < truth.saturation)
    assert np.sum(np.abs(excess[clean]) > 7) == 0


def test_saturation_and_bad_columns():
    # a low full well, so that a small field surely holds saturated stars
    sim = simulate_sky(size=512, seed=6, saturation=8000.0, template=False)
    truth = sim.truth
    assert sim.image.max() <= truth.saturation == sim.header["SATURATE"]
    sat = truth.stars[truth.stars["saturated"]]
    assert len(sat) >= 1
    for star in sat:
        ix, iy = round(star["x"]), round(star["y"])
        assert sim.image[iy - 1 : iy + 2, ix - 1 : ix + 2].max() == truth.saturation
    kinds = {c["kind"] for c in truth.bad_columns}
    assert kinds == {"hot", "dead"}
    for col in truth.bad_columns:
        rows = slice(col["y_start"], col["y_end"])
        column = np.median(sim.image[rows, col["x"]])
        neighbour = np.median(sim.image[rows, col["x"] + 3])
        if col["kind"] == "hot":
            assert column - neighbour == pytest.approx(col["level"], rel=0.05)
        else:
            assert column < 0.1 * neighbour


# --- catalogue and astrometry --------------------------------------------------------


def test_catalogue_has_ps1_vizier_layout_and_stellar_colours(moffat_sky):
    cat = moffat_sky.catalog
    assert tuple(cat.colnames) == PS1_COLUMNS
    assert cat["RAJ2000"].unit == "deg" and cat["rmag"].unit == "mag"
    assert cat["objID"].dtype == np.int64 and len(np.unique(cat["objID"])) == len(cat)
    truth = moffat_sky.truth
    # down to ~2 mag fainter than the image limit
    assert truth.stars["mag"].max() == pytest.approx(truth.limit_sn5 + 2.0, abs=0.2)
    good = ~np.ma.getmaskarray(cat["gmag"]) & ~np.ma.getmaskarray(cat["imag"])
    good &= np.asarray(cat["e_rmag"]) < 0.02
    g_r = np.asarray(cat["gmag"][good] - cat["rmag"][good])
    r_i = np.asarray(cat["rmag"][good] - cat["imag"][good])
    assert g_r.min() > -0.45 and g_r.max() < 1.75 and np.ptp(g_r) > 1.2
    # where r-i is a gentle function of g-r (not the steep M-dwarf branch) the scatter is
    # the locus width (0.025) plus catalogue errors
    gentle = g_r < 1.2
    expected_r_i = locus_colours(g_r[gentle])[0]
    assert np.std(r_i[gentle] - expected_r_i) < 0.05
    # listed magnitudes scatter about the truth by their quoted errors
    listed = ~np.ma.getmaskarray(cat["rmag"])
    pull = (np.asarray(cat["rmag"][listed]) - truth.stars["mag"][listed]) / np.asarray(
        cat["e_rmag"][listed]
    )
    assert np.std(pull) == pytest.approx(1.0, abs=0.15)


def test_header_wcs_round_trips_catalogue_positions(moffat_sky):
    """World -> pixel through the header's TAN-SIP WCS lands on truth x, y (0.01 px)."""
    sim = moffat_sky
    w = WCS(sim.header)
    assert w.has_celestial and w.sip is not None
    x, y = w.all_world2pix(sim.catalog["RAJ2000"], sim.catalog["DEJ2000"], 0, tolerance=1e-6)
    inside = sim.truth.stars["in_image"]
    assert inside.sum() > 100
    assert np.max(np.hypot(x - sim.truth.stars["x"], y - sim.truth.stars["y"])[inside]) < 0.01
    # the distortion is real: dropping SIP moves the corners by more than a pixel
    xt, yt = w.wcs_world2pix(sim.catalog["RAJ2000"], sim.catalog["DEJ2000"], 0)
    assert np.max(np.hypot(xt - x, yt - y)[inside]) > 0.5
    for key in (
        "GAIN",
        "RDNOISE",
        "SATURATE",
        "EXPTIME",
        "DATE-OBS",
        "MJD-OBS",
        "TELESCOP",
        "INSTRUME",
        "RA",
        "DEC",
    ):
        assert key in sim.header
    assert sim.header["FILTER"] == "r"
    hint = SkyCoord(sim.header["RA"], sim.header["DEC"], unit=("hourangle", "deg"))
    true_centre = SkyCoord(sim.config.ra_center, sim.config.dec_center, unit="deg")
    assert hint.separation(true_centre).arcsec == pytest.approx(
        sim.config.pointing_error_arcsec, abs=0.5
    )


def test_perturbed_wcs_differs_by_the_asked_amount(moffat_sky):
    sim = moffat_sky
    header = sim.variant("perturbed_wcs", shift_arcsec=20, rot_deg=0.3)
    true_w, bad_w = WCS(sim.header), WCS(header)
    crpix = true_w.wcs.crpix - 1
    a = true_w.pixel_to_world(*crpix)
    b = bad_w.pixel_to_world(*crpix)
    assert a.separation(b).arcsec == pytest.approx(20.0, abs=0.01)
    assert rotation_angle_deg(bad_w) - rotation_angle_deg(true_w) == pytest.approx(0.3, abs=1e-6)
    assert header["GAIN"] == sim.header["GAIN"]
    assert bad_w.sip is not None


def test_no_wcs_variant_has_no_celestial_wcs(moffat_sky):
    header = moffat_sky.variant("no_wcs")
    assert not WCS(header).has_celestial
    assert not any(k.startswith(("CTYPE", "CRVAL", "CD1_", "PC1_", "A_", "B_")) for k in header)
    assert header["RA"] == moffat_sky.header["RA"] and "GAIN" in header
    with pytest.raises(ValueError, match="unknown header variant"):
        moffat_sky.variant("upside_down")


# --- galaxies, transients, template --------------------------------------------------


def test_transients_are_new_and_visible(moffat_sky):
    sim = moffat_sky
    truth = sim.truth
    tr = truth.transients
    assert len(tr) == sim.config.n_transients and tr["on_galaxy"].sum() >= 1
    assert np.all(tr["mag"] <= truth.limit_sn5 - 1.0) and np.all(tr["mag"] >= truth.limit_sn5 - 2.0)
    # not in the catalogue
    cat = SkyCoord(sim.catalog["RAJ2000"], sim.catalog["DEJ2000"], unit="deg")
    pos = SkyCoord(tr["ra"], tr["dec"], unit="deg")
    _, sep, _ = pos.match_to_catalog_sky(cat)
    assert np.all(sep.arcsec > 1.9 * truth.fwhm_median * truth.pixel_scale)  # 2 FWHM by design
    for row in tr[tr["on_galaxy"]]:
        host = truth.galaxies[row["host_index"]]
        assert np.hypot(row["x"] - host["x"], row["y"] - host["y"]) < 1.3 * host["r_eff"]
    # an isolated transient shows its flux in the science image and nothing in the template
    tmpl = sim.template
    for row in tr[~tr["on_galaxy"]]:
        ap = CircularAperture((row["x"], row["y"]), r=3 * truth.fwhm_median)
        # noiseless model: a cosmic ray or hot column may cross the aperture in the image
        science = aperture_photometry(sim.model - sim.background, ap)["aperture_sum"][0]
        assert science == pytest.approx(row["flux"], rel=0.2)
        tx, ty = tmpl.wcs.all_world2pix(row["ra"], row["dec"], 0)
        tap = CircularAperture((float(tx), float(ty)), r=3 * truth.fwhm_median)
        empty = aperture_photometry(tmpl.image - tmpl.background, tap)["aperture_sum"][0]
        # what the transient would have given in the template (its ZP is deeper);
        # faint catalogue stars near the position may add a little
        would_be = row["flux"] * 10 ** (0.4 * (tmpl.zp - row["zp"]))
        assert abs(empty) < 0.25 * would_be


def test_template_is_another_view_of_the_same_sky(sparse_sky):
    sim = sparse_sky
    tmpl = sim.template
    assert tmpl.image.shape == sim.image.shape and tmpl.image.dtype == np.float32
    assert tmpl.fwhm != sim.truth.fwhm_median and tmpl.zp != sim.config.zero_point
    assert tmpl.header["GAIN"] == tmpl.gain
    stars = sim.truth.stars
    tx, ty = tmpl.wcs.all_world2pix(stars["ra"], stars["dec"], 0)
    assert np.allclose(tx, tmpl.stars["x"]) and np.allclose(ty, tmpl.stars["y"])
    shift = np.median(np.c_[stars["x"] - tx, stars["y"] - ty], axis=0)
    assert shift == pytest.approx(tmpl.shift_px, abs=1.5)
    # stars carry the template's fluxes: 6-FWHM aperture sums on the noiseless template of
    # the brightest unsaturated stars are never short of the truth by > 1 %, and the least
    # contaminated one (neighbours only add light) matches it within 1 %
    ny, nx = tmpl.image.shape
    inner = (tmpl.stars["x"] > 40) & (tmpl.stars["x"] < nx - 40)
    inner &= (tmpl.stars["y"] > 40) & (tmpl.stars["y"] < ny - 40)
    peak = tmpl.stars["flux"] / (tmpl.fwhm**2)
    pick = np.flatnonzero(inner & (peak < 0.2 * tmpl.saturation))
    pick = pick[np.argsort(-tmpl.stars["flux"][pick])][:8]
    xy = np.c_[tmpl.stars["x"][pick], tmpl.stars["y"][pick]]
    apertures = CircularAperture(xy, r=6 * tmpl.fwhm)
    sums = aperture_photometry(tmpl.model - tmpl.background, apertures)["aperture_sum"]
    ratio = np.asarray(sums / tmpl.stars["flux"][pick])
    assert ratio.min() == pytest.approx(1.0, abs=0.01)
    # and its noise follows the template's own gain and read noise (5 %)
    blank = (tmpl.model - tmpl.background) < 0.5
    resid = (tmpl.image.astype(float) - tmpl.model)[blank]
    expected = tmpl.model[blank] / tmpl.gain + (tmpl.read_noise / tmpl.gain) ** 2
    assert np.mean(resid**2 / expected) == pytest.approx(1.0, abs=0.05)
    assert tmpl.header["RDNOISE"] == tmpl.read_noise


def test_galaxies_deposit_their_flux(moffat_sky):
    """Galaxy light lies where the truth says; only galaxies cut by the edge lose some."""
    sim = moffat_sky
    gal = sim.truth.galaxies
    assert len(gal) >= 8 and np.any(gal["sersic_n"] > 2) and np.any(gal["sersic_n"] < 2)
    assert np.all(gal["flux_in_image"] <= gal["flux"] * (1 + 1e-9))
    ny, nx = sim.image.shape
    reach = 8 * 1.5 * gal["r_eff"] + 15
    whole = (gal["x"] > reach) & (gal["x"] < nx - reach) & (gal["y"] > reach)
    whole &= gal["y"] < ny - reach
    assert whole.sum() >= 3
    assert np.allclose(gal["flux_in_image"][whole], gal["flux"][whole], rtol=1e-6)
    # the brightest galaxy's light is extended: its noiseless core is fainter than a
    # star of the same flux would be
    g = gal[np.argmax(gal["flux"])]
    ix, iy = round(g["x"]), round(g["y"])
    core = (sim.model - sim.background)[iy - 1 : iy + 2, ix - 1 : ix + 2].sum()
    assert core < 0.5 * g["flux"]


# --- configuration, files, size -------------------------------------------------------


def test_same_seed_same_sky_and_bad_config_errors():
    a = simulate_sky(size=128, seed=4, template=False)
    b = simulate_sky(SkyConfig(size=128, template=False), seed=4)
    c = simulate_sky(size=128, seed=5, template=False)
    assert np.array_equal(a.image, b.image) and not np.array_equal(a.image, c.image)
    with pytest.raises(ValueError, match="psf must be one of"):
        SkyConfig(psf="airy")
    with pytest.raises(ValueError, match="unknown SkyConfig field"):
        simulate_sky(size=128, sizee=3)
    with pytest.raises(ValueError, match="beta must be > 1"):
        SkyConfig(beta=1.0)


def test_write_simulation_files_are_readable(moffat_sky, tmp_path):
    paths = write_simulation(moffat_sky, tmp_path / "sim")
    assert set(paths) == {"image", "catalog", "catalog_vot", "template", "truth_json", "truth_fits"}
    with fits.open(paths["image"]) as hdul:
        assert np.array_equal(hdul[0].data, moffat_sky.image)
        assert hdul[0].header["GAIN"] == moffat_sky.truth.gain
        assert WCS(hdul[0].header).sip is not None
    for key in ("catalog", "catalog_vot"):
        cat = Table.read(paths[key])
        assert tuple(cat.colnames) == PS1_COLUMNS and len(cat) == len(moffat_sky.catalog)
        assert np.allclose(cat["RAJ2000"], moffat_sky.catalog["RAJ2000"], rtol=0, atol=1e-9)
    with fits.open(paths["template"]) as hdul:
        assert hdul[0].data.shape == moffat_sky.image.shape
    doc = json.loads(paths["truth_json"].read_text())
    assert doc["limit_sn5"] == pytest.approx(moffat_sky.truth.limit_sn5)
    assert len(doc["transients"]) == len(moffat_sky.truth.transients)
    assert doc["files"]["image"] == "image.fits"
    with fits.open(paths["truth_fits"]) as hdul:
        names = {h.name for h in hdul}
        assert {"STARS", "GALAXIES", "TRANSIENTS", "COSMICS", "ZPMAP", "FWHMMAP"} <= names
        assert np.array_equal(hdul["COSMICS"].data.astype(bool), moffat_sky.truth.cosmic_mask)
        assert len(hdul["STARS"].data) == len(moffat_sky.catalog)
        step = hdul["ZPMAP"].header["GRIDSTEP"]
        x0 = hdul["ZPMAP"].header["GRIDX0"]
        assert hdul["ZPMAP"].data[2, 3] == pytest.approx(
            moffat_sky.truth.zero_point_map(x0 + 3 * step, x0 + 2 * step), abs=1e-5
        )


def test_full_size_simulation_runs():
    sim = simulate_sky(SkyConfig(size=2048, psf="moffat"), seed=1)
    assert sim.image.shape == (2048, 2048) and sim.image.dtype == np.float32
    n_in = int(sim.truth.stars["in_image"].sum())
    assert 5000 <= n_in <= 10000
    assert np.isfinite(sim.image).all()
