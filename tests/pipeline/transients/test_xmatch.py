"""XMatch client against the local XMatch fixture, the magnitude test and band choice."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.table import Table

from pipeline.catalogs.definitions import CATALOGS
from pipeline.simulate import simulate_sky
from pipeline.steps.base import ServiceUnavailable, StepError
from pipeline.transients.bands import (
    AB_MINUS_VEGA,
    band_order,
    band_system,
    comparison_magnitudes,
    to_ab,
)
from pipeline.transients.xmatch import (
    catalogs_for_field,
    judge_matches,
    query_xmatch,
    xmatch_client,
)
from tests.fixture_servers.xmatch import XMatchFixture, cross_match, csv_bytes

PS1 = CATALOGS["ps1"]


@pytest.fixture(scope="module")
def sky():
    return simulate_sky(size=256, seed=11, template=False)


@pytest.fixture
def server(sky):
    with XMatchFixture({"II/349/ps1": sky.catalog}, slow_seconds=3.0) as running:
        yield running


def probes(sky, n=30):
    """Catalogue star positions moved by 0–4″, plus 5 positions far from every star."""
    stars = sky.truth.stars[np.asarray(sky.truth.stars["in_image"], bool)][:n]
    rng = np.random.default_rng(1)
    shift = rng.uniform(0, 4, n) / 3600
    ra = np.asarray(stars["ra"]) + shift / np.cos(np.radians(np.asarray(stars["dec"])))
    dec = np.asarray(stars["dec"], float)
    return np.concatenate([ra, np.full(5, 10.0)]), np.concatenate([dec, np.full(5, -60.0)])


def test_pairs_are_every_star_within_the_radius(sky, server):
    ra, dec = probes(sky)
    answer = query_xmatch(xmatch_client(server.sync_url, 5), ra, dec, PS1, 3.0)
    ours = SkyCoord(ra, dec, unit="deg")
    cat = SkyCoord(sky.catalog["RAJ2000"], sky.catalog["DEJ2000"], unit="deg")
    expected = set()
    for i, position in enumerate(ours):
        for j in np.flatnonzero(position.separation(cat).arcsec <= 3.0):
            expected.add((i, int(sky.catalog["objID"][j])))
    got = {(int(i), int(o)) for i, o in zip(answer["cand_id"], answer["objID"], strict=True)}
    assert got == expected and len(expected) > 10
    assert np.all(answer["angDist"] <= 3.0)
    form = server.forms[-1]
    assert form["cat2"] == "vizier:II/349/ps1" and float(form["distMaxArcsec"]) == 3.0


def test_radius_is_capped_at_180_arcsec(sky, server):
    ra, dec = probes(sky, 3)
    query_xmatch(xmatch_client(server.sync_url, 5), ra, dec, PS1, 500.0)
    assert float(server.forms[-1]["distMaxArcsec"]) == 180.0


@pytest.mark.parametrize(
    ("mode", "error", "text"),
    [
        ("down", ServiceUnavailable, "cannot connect"),
        ("slow", ServiceUnavailable, "did not answer within 1 s"),
        ("error", ServiceUnavailable, "HTTP 500"),
    ],
)
def test_service_failures(sky, server, mode, error, text):
    server.mode = mode
    ra, dec = probes(sky, 3)
    with pytest.raises(error, match=text):
        query_xmatch(xmatch_client(server.sync_url, 1.0), ra, dec, PS1, 3.0)


def test_catalogue_not_served_and_bad_url(sky, server):
    ra, dec = probes(sky, 3)
    with pytest.raises(StepError, match="does not offer I/350/gaiaedr3"):
        query_xmatch(xmatch_client(server.sync_url, 5), ra, dec, CATALOGS["gaiaedr3"], 3.0)
    with pytest.raises(StepError, match="answered HTTP 404"):
        query_xmatch(xmatch_client(server.url + "/nothing", 5), ra, dec, PS1, 3.0)
    with pytest.raises(StepError, match="not an http"):
        xmatch_client("ftp://example.org/xmatch")


def test_catalogues_by_declination():
    assert catalogs_for_field(20.0) == ["gaiaedr3", "ps1"]
    assert catalogs_for_field(-10.0) == ["gaiaedr3", "ps1", "skymapper"]
    assert catalogs_for_field(-45.0) == ["gaiaedr3", "skymapper"]
    assert catalogs_for_field(-45.0, ["ps1"]) == []
    assert catalogs_for_field(1.0, ["skymapper"]) == ["skymapper"]


def answer_table(ids, sep, rmag, gmag=None):
    table = Table({"angDist": sep, "cand_id": ids, "rmag": rmag})
    table["gmag"] = np.asarray(rmag) + 0.5 if gmag is None else gmag
    return table


def test_judge_matches_magnitude_margin():
    # candidates 0..3; 0: brighter by 3 mag (kept), 1: brighter by 1 (explained),
    # 2: two stars, the nearer faint, the farther as bright (explained), 3: no match
    answer = answer_table([0, 1, 2, 2], [1.0, 2.0, 0.5, 3.0], [20.0, 18.0, 21.0, 17.2])
    ours = np.array([17.0, 17.0, 17.0, 17.0])
    verdict = judge_matches(answer, 4, PS1, ours, "r", 2.0, median_offset=True)
    assert verdict.rejected.tolist() == [False, True, True, False]
    assert verdict.offset == 0.0  # fewer than 10 pairs: no offset removed
    assert verdict.sep[2] == 0.5 and verdict.dmag[2] == pytest.approx(-4.0)
    assert verdict.dmag[0] == pytest.approx(-3.0) and np.isnan(verdict.sep[3])
    assert verdict.band.tolist() == ["r", "r", "r", ""]
    # mag_diff = 0 rejects every positional match, and so do missing magnitudes
    assert judge_matches(answer, 4, PS1, ours, "r", 0.0, True).rejected.tolist() == [
        True,
        True,
        True,
        False,
    ]
    assert judge_matches(answer, 4, PS1, None, "r", 2.0, True).rejected.tolist() == [
        True,
        True,
        True,
        False,
    ]


def test_median_offset_and_missing_band():
    n = 12
    answer = answer_table(np.arange(n), np.full(n, 1.0), np.full(n, 18.0))
    answer["rmag"] = np.ma.masked_array(answer["rmag"], mask=[False] * 11 + [True])
    ours = np.full(n, 18.3)  # a 0.3 mag zero-point difference shared by all
    ours[0] = 15.5
    verdict = judge_matches(answer, n, PS1, ours, "r", 2.0, median_offset=True)
    assert verdict.offset == pytest.approx(0.3)
    assert verdict.dmag[0] == pytest.approx(15.5 - 18.0 - 0.3)
    assert verdict.rejected.tolist() == [False] + [True] * 11
    # the star without r is compared in the closest band that has a value: g
    assert verdict.band[11] == "g"
    assert verdict.bands_used == {"r": 11, "g": 1}


def test_band_choice_and_ab_offsets():
    assert band_order(PS1, "r")[:3] == ["r", "i", "g"]
    assert band_order(CATALOGS["gaiaedr3"], "V")[0] == "V"
    assert band_system("G") == "Vega" and band_system("smss:g") == "AB"
    assert band_system("r") == "AB" and band_system("V") == "Vega"
    assert to_ab(np.array([15.0]), "G", "Vega")[0] == pytest.approx(15.0 + AB_MINUS_VEGA["G"])
    assert to_ab(np.array([15.0]), "r", "AB")[0] == 15.0
    # Gaia G, BP, RP reach PS1 r through the published relations
    gaia = Table({"Gmag": [15.0], "e_Gmag": [0.01], "BPmag": [15.5], "RPmag": [14.6]})
    gaia["e_BPmag"] = gaia["e_RPmag"] = [0.01]
    normal = Table({"Gmag": gaia["Gmag"], "e_Gmag": gaia["e_Gmag"]})
    for b in ("BP", "RP"):
        normal[f"{b}mag"], normal[f"e_{b}mag"] = gaia[f"{b}mag"], gaia[f"e_{b}mag"]
    comparison = comparison_magnitudes(normal, CATALOGS["gaiaedr3"], "r")
    assert comparison.band.tolist() == ["r"]
    assert 14.5 < comparison.mag[0] < 15.5  # r − G is a few tenths for BP − RP = 0.9


def test_fixture_cross_match_and_csv_like_recorded():
    upload = Table({"ra": [267.22029], "dec": [-20.35869], "my_id": [1]})
    catalog = Table({"RAJ2000": [267.220049, 267.3], "DEJ2000": [-20.358990, -20.3]})
    pairs = cross_match(upload, "ra", "dec", catalog, 5.0)
    assert len(pairs) == 1
    assert pairs["angDist"][0] == pytest.approx(1.352, abs=0.01)  # the recorded angDist
    header = csv_bytes(pairs).decode().splitlines()[0]
    assert header == "angDist,ra,dec,my_id,RAJ2000,DEJ2000"
