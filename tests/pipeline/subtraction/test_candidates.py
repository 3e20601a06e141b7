"""The candidate vetting rules on small synthetic pairs whose truth is exact.

A 200² field of Gaussian stars (σ = 1.5 px) in a convolved template and in a science
image that is the template moved by a small registration error, with Gaussian noise.
Stars, a compact galaxy and a transient are placed where each test needs them.
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table

from pipeline.flags import ObjectFlag
from pipeline.subtraction import candidates as cand
from pipeline.subtraction.base import SubtractionProducts
from pipeline.subtraction.dipole import adjust_candidate, measure_star_adjustments

SIGMA_PSF = 1.5
NOISE = 10.0
SIZE = 200
INNER = 2 * 2.3548 * SIGMA_PSF  # the step's default: 2 FWHM
# what the rule is told: p-value 0.01, χ² drop 3, shift ≤ 1 px, scale ≤ 30 %
RULE = {"max_shift": 1.0, "max_scale": 1.3, "p_value": 0.01, "chi2_drop": 3.0}


def gaussian(shape, x, y, flux, sigma=SIGMA_PSF):
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    return flux * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2)) / (2 * np.pi * sigma**2)


def psf_stamp():
    return gaussian((21, 21), 10, 10, 1.0)


STARS = [(x, y) for x in (30, 70, 110, 150) for y in (30, 70, 110, 150)]


def field(shift=(0.3, -0.2), star_flux=2.0e5, extra=()):
    """(science, template, noise): the template's stars, moved by ``shift`` in the
    science image, plus ``extra`` (x, y, flux, sigma) sources in the science only."""
    rng = np.random.default_rng(3)
    template = np.zeros((SIZE, SIZE))
    science = np.zeros((SIZE, SIZE))
    for x, y in STARS:
        template += gaussian(template.shape, x, y, star_flux)
        science += gaussian(science.shape, x + shift[0], y + shift[1], star_flux)
    for x, y, flux, sigma in extra:
        science += gaussian(science.shape, x, y, flux, sigma)
    science += rng.normal(0, NOISE, science.shape)
    return science, template, np.full(science.shape, NOISE)


def test_a_misregistered_star_is_an_artefact():
    science, template, noise = field()
    bad = np.zeros(science.shape, bool)
    # the candidate: the positive lobe of the dipole at a star
    test = adjust_candidate(science, template, noise, bad, 70.6, 69.8, INNER, **RULE)
    assert test.explained and test.rejected
    assert test.chi2_adjusted * 3 < test.chi2_initial
    assert test.dx == pytest.approx(0.3, abs=0.05) and test.dy == pytest.approx(-0.2, abs=0.05)


HOST_FLUX = 1.0e4  # peak S/N ~ 40 per pixel; the transient then has S/N ~ 20


def _host_and_transient(ratio: float):
    """A compact host (σ 2 px, in both images) with a point source of ``ratio`` times
    its flux 1.5 px from its centre, in the science image only."""
    host = (100.0, 60.0, HOST_FLUX, 2.0)
    transient = (101.5, 60.0, ratio * HOST_FLUX, SIGMA_PSF)
    science, template, noise = field(shift=(0.0, 0.0), extra=[host, transient])
    template += gaussian(template.shape, 100.0, 60.0, HOST_FLUX, 2.0)
    return science, template, noise, np.zeros(science.shape, bool)


def test_the_bare_rule_swallows_a_transient_on_a_compact_host():
    """Without the stars' scale and the point-source comparison, the specified rule
    explains a transient of 20 % of its host's flux away (the scale soaks it up)."""
    science, template, noise, bad = _host_and_transient(0.2)
    test = adjust_candidate(science, template, noise, bad, 101.5, 60.0, INNER, **RULE)
    assert test.explained and test.rejected
    assert test.scale > 1.1


def test_the_stars_scale_keeps_it():
    """The stars need no rescaling (1.00 ± 0.01): scaling the host by 20 % costs the
    adjustment so much that it no longer explains the candidate."""
    science, template, noise, bad = _host_and_transient(0.2)
    stars = measure_star_adjustments(science, template, noise, bad, np.array(STARS), INNER)
    assert np.median(stars.scale) == pytest.approx(1.0, abs=0.01)
    prior = stars.prior_at(101.5, 60.0)
    test = adjust_candidate(
        science, template, noise, bad, 101.5, 60.0, INNER, **RULE,
        model_error=stars.model_error(0.9), prior=prior,
    )  # fmt: skip
    assert not test.explained and not test.rejected


def test_the_point_source_term_keeps_it():
    """With a flat scale (no stars), the adjustment explains the candidate, but a new
    point source on the unscaled host explains it better: kept, with its flux."""
    science, template, noise, bad = _host_and_transient(0.2)
    test = adjust_candidate(
        science, template, noise, bad, 101.5, 60.0, INNER, **RULE, psf=psf_stamp()
    )
    assert test.explained and not test.rejected
    assert test.source_flux == pytest.approx(0.2 * HOST_FLUX, rel=0.1)


@pytest.mark.parametrize("ratio", [0.1, 0.2, 0.3])
def test_with_both_a_transient_of_10_to_30_percent_of_its_host_is_kept(ratio):
    """Each protection alone has a gap (the prior lets a 30 % source through the χ²
    drop; the source term cannot beat a 10 % rescale by 5σ); together they keep all."""
    science, template, noise, bad = _host_and_transient(ratio)
    stars = measure_star_adjustments(science, template, noise, bad, np.array(STARS), INNER)
    test = adjust_candidate(
        science, template, noise, bad, 101.5, 60.0, INNER, **RULE, psf=psf_stamp(),
        model_error=stars.model_error(0.9), prior=stars.prior_at(101.5, 60.0),
    )  # fmt: skip
    assert not test.rejected


def test_a_star_brighter_by_what_its_neighbours_need_is_an_artefact():
    """Every star 4 % brighter in the science image (a zero-point difference): the stars
    measure it, and a candidate on one of them is explained."""
    science, template, noise = field(shift=(0.0, 0.0), star_flux=2.0e5)
    science = science + 0.04 * template
    bad = np.zeros(science.shape, bool)
    stars = measure_star_adjustments(science, template, noise, bad, np.array(STARS), INNER)
    assert np.median(stars.scale) == pytest.approx(1.04, abs=0.005)
    test = adjust_candidate(
        science, template, noise, bad, 110.0, 110.0, INNER, **RULE,
        psf=psf_stamp(), model_error=stars.model_error(0.9),
        prior=stars.prior_at(110.0, 110.0, exclude=3.0),
    )  # fmt: skip
    assert test.rejected


def _products(science, template, noise, bad):
    return SubtractionProducts(
        difference=np.where(bad, 0.0, science - template),
        convolved=template,
        noise=noise.copy(),
        significance=np.zeros(science.shape),
        bad=bad,
    )


def test_masked_pixels_reject_only_when_they_reach_the_aperture():
    science, template, noise = field(
        shift=(0, 0), extra=[(60.0, 100.0, 2e4, SIGMA_PSF), (140.0, 100.0, 2e4, SIGMA_PSF)]
    )
    bad = np.zeros(science.shape, bool)
    bad[100, 60 + 6] = True  # 6 px from the first transient: outside a 3.5 px aperture
    bad[100, 140 + 2] = True  # 2 px from the second: inside
    table = Table({"x": [60.0, 140.0], "y": [100.0, 100.0], "sign": [1, 1]})
    table["flags"] = np.zeros(2, np.int32)
    measured = cand.measure_candidates(
        _products(science, template, noise, bad), table, fwhm=3.5, rel_aper=1.0,
        rel_bg1=5.0, rel_bg2=7.0,
    )  # fmt: skip
    masked = (np.asarray(measured["flags"]) & ObjectFlag.APERTURE_MASKED) != 0
    assert masked.tolist() == [False, True]


def test_noise_maps_are_brought_to_unit_scatter():
    rng = np.random.default_rng(1)
    noise = np.full((300, 300), 5.0)
    bad = np.zeros(noise.shape, bool)
    products = SubtractionProducts(
        difference=rng.normal(0, 7.5, noise.shape),  # the map says 5: 1.5× too small
        convolved=np.zeros(noise.shape),
        noise=noise,
        significance=rng.normal(0, 1.7, noise.shape),
        bad=bad,
    )
    factors = cand.calibrate_noise(products)
    assert factors["noise_scale"] == pytest.approx(1.5, rel=0.03)
    assert factors["significance_scale"] == pytest.approx(1.7, rel=0.03)
    assert np.std(products.significance) == pytest.approx(1.0, rel=0.03)


@pytest.mark.parametrize("fwhm", [2.0, 3.0, 5.0])
def test_gaussian_significance_has_unit_scatter_on_noise(fwhm):
    from pipeline.subtraction.base import SubtractionProducts
    from pipeline.subtraction.candidates import gaussian_significance

    rng = np.random.default_rng(8)
    noise = np.full((300, 300), 3.0)
    difference = rng.normal(0.0, 3.0, noise.shape)
    bad = np.zeros(noise.shape, bool)
    bad[100:110, :] = True
    products = SubtractionProducts(difference, difference * 0, noise, None, bad)
    significance = gaussian_significance(products, fwhm)
    inner = significance[20:-20, 20:-20][~bad[20:-20, 20:-20]]
    assert abs(np.std(inner) - 1.0) < 0.05  # 300² pixels: the scatter is known to ~1 %
