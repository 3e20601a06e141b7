"""VizieR queries through the real astroquery client against a local VizieR server.

The server (tests/fixture_servers/vizier.py) answers in VizieR's VOTable format from a
simulated Pan-STARRS catalogue (or the real ATLAS-REFCAT2 extract); nothing in the
client is mocked. Failures are real: a closed port, an answer slower than the timeout,
HTTP 500, an empty table, VizieR's own error VOTable.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from pipeline.catalogs import (
    CATALOGS,
    CatalogError,
    ServiceUnavailable,
    get_catalog,
    get_definition,
    mag_column,
)
from pipeline.catalogs.cone import Cone, angular_distance, snap_cone
from pipeline.catalogs.normalize import limit_band
from tests.paths import SERVICES_DATA
from tests.pipeline.catalogs.conftest import SKY_DEC, SKY_RA
from tests.pipeline.catalogs.helpers import layout_table

PS1 = "II/349/ps1"
RADIUS = 0.1  # deg: inside the simulated field (±0.13°)
TIMEOUT = 5.0


def _expected(ps1_table: Table, ra: float, dec: float, radius: float, limit: float | None):
    """Rows of the simulated catalogue in the cone (and brighter than the r limit)."""
    ra_all = np.asarray(ps1_table["RAJ2000"], float)
    dec_all = np.asarray(ps1_table["DEJ2000"], float)
    keep = angular_distance(ra, dec, ra_all, dec_all) <= radius
    if limit is not None:
        rmag = np.ma.filled(np.ma.asarray(ps1_table["rmag"]).astype(float), np.nan)
        keep &= rmag < limit
    return ps1_table[keep]


def _cache_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.fits")) if folder.exists() else []


def test_cone_returns_the_simulated_stars_with_their_magnitudes(vizier_server, ps1_table):
    vizier_server.catalogs[PS1] = ps1_table
    result = get_catalog(
        "ps1", SKY_RA, SKY_DEC, RADIUS, mag_limit=20.0, server_url=vizier_server.url
    )
    expected = _expected(ps1_table, SKY_RA, SKY_DEC, RADIUS, 20.0)
    assert len(expected) > 100
    assert len(result) == len(expected)
    got = result[np.argsort(result["ra"])]
    want = expected[np.argsort(expected["RAJ2000"])]
    # positions travel as text in the VOTable: equal to the 7 decimals they are written with
    assert np.allclose(got["ra"], want["RAJ2000"], atol=1e-7)
    assert np.allclose(got["dec"], want["DEJ2000"], atol=1e-7)
    for band in "grizy":
        listed = np.ma.filled(np.ma.asarray(want[f"{band}mag"]).astype(float), np.nan)
        # magnitudes are float32 in the catalogue: equal to 1e-6 mag, blanks stay NaN
        assert np.array_equal(np.isnan(got[mag_column(band)]), np.isnan(listed))
        ok = ~np.isnan(listed)
        assert np.allclose(got[mag_column(band)][ok], listed[ok], atol=1e-6)
    assert result.meta["catalog"] == "ps1"
    assert result.meta["source"] == f"vizier:{vizier_server.url}"
    assert {"B", "V", "R", "I"} <= set(result.meta["derived"])


def test_query_is_snapped_and_the_limit_is_applied_by_the_server(vizier_server, ps1_table):
    vizier_server.catalogs[PS1] = ps1_table
    result = get_catalog(
        "ps1", SKY_RA + 0.003, SKY_DEC - 0.002, RADIUS, 18.5, server_url=vizier_server.url
    )
    params = vizier_server.params()
    assert params["-source"] == PS1
    assert params["rmag"] == "<18.5"  # the constraint travels to the server ...
    snapped = snap_cone(Cone(SKY_RA + 0.003, SKY_DEC - 0.002, RADIUS))
    ra_sent, dec_sent = params["-c"].split("+")
    assert float(ra_sent) == pytest.approx(snapped.ra, abs=1e-8)
    assert float(dec_sent) == pytest.approx(snapped.dec, abs=1e-8)
    assert float(params["-c.rd"]) == pytest.approx(snapped.radius, abs=1e-9)
    assert float(params["-c.rd"]) > RADIUS
    # ... and the client cuts only the cone, so the missing faint stars were left out by
    # the server: the answer is exactly the simulated stars brighter than the limit
    assert np.all(np.asarray(result["rmag"]) < 18.5)
    expected = _expected(ps1_table, SKY_RA + 0.003, SKY_DEC - 0.002, RADIUS, 18.5)
    everything = _expected(ps1_table, SKY_RA + 0.003, SKY_DEC - 0.002, RADIUS, None)
    assert len(result) == len(expected) > 20
    assert len(everything) > 2 * len(expected)


def test_repeat_and_nearby_queries_hit_the_cache(vizier_server, ps1_table, tmp_path):
    vizier_server.catalogs[PS1] = ps1_table
    cache = tmp_path / "cache"
    kwargs = dict(mag_limit=20.0, cache_dir=cache, server_url=vizier_server.url)
    first = get_catalog("ps1", SKY_RA, SKY_DEC, RADIUS, **kwargs)
    assert vizier_server.request_count == 1
    assert len(_cache_files(cache)) == 1
    again = get_catalog("ps1", SKY_RA, SKY_DEC, RADIUS, **kwargs)
    # 1 arcsec away and a slightly smaller radius: same grid cone, same cache entry
    nearby = get_catalog("ps1", SKY_RA + 1 / 3600, SKY_DEC, RADIUS * 0.98, **kwargs)
    assert vizier_server.request_count == 1
    assert again.meta["source"].startswith("cache:")
    assert len(again) == len(first)
    assert np.allclose(again["rmag"], first["rmag"], equal_nan=True)
    assert np.allclose(again["Bmag"], first["Bmag"], equal_nan=True)
    assert 0 < len(nearby) <= len(first)
    # another limit is another query
    get_catalog("ps1", SKY_RA, SKY_DEC, RADIUS, 19.0, cache_dir=cache, server_url=vizier_server.url)
    assert vizier_server.request_count == 2
    assert len(_cache_files(cache)) == 2


def test_unreadable_cache_file_is_replaced(vizier_server, ps1_table, tmp_path):
    vizier_server.catalogs[PS1] = ps1_table
    kwargs = dict(cache_dir=tmp_path, server_url=vizier_server.url)
    get_catalog("ps1", SKY_RA, SKY_DEC, RADIUS, 20.0, **kwargs)
    (path,) = _cache_files(tmp_path)
    path.write_bytes(b"not a FITS file")
    result = get_catalog("ps1", SKY_RA, SKY_DEC, RADIUS, 20.0, **kwargs)
    assert vizier_server.request_count == 2
    assert len(result) > 100
    assert Table.read(path, format="fits")["rmag"].shape[0] >= len(result)


def test_server_down_is_a_retryable_error_and_nothing_is_cached(vizier_server, ps1_table, tmp_path):
    vizier_server.catalogs[PS1] = ps1_table
    vizier_server.mode = "down"
    with pytest.raises(ServiceUnavailable, match="connection refused"):
        get_catalog(
            "ps1",
            SKY_RA,
            SKY_DEC,
            RADIUS,
            20.0,
            cache_dir=tmp_path,
            timeout=TIMEOUT,
            server_url=vizier_server.url,
        )
    assert _cache_files(tmp_path) == []
    vizier_server.mode = "ok"  # back up: the same call now works (no failure was cached)
    result = get_catalog(
        "ps1",
        SKY_RA,
        SKY_DEC,
        RADIUS,
        20.0,
        cache_dir=tmp_path,
        timeout=TIMEOUT,
        server_url=vizier_server.url,
    )
    assert len(result) > 100
    assert vizier_server.request_count == 1


def test_slow_server_times_out(vizier_server, ps1_table, tmp_path):
    vizier_server.catalogs[PS1] = ps1_table
    vizier_server.slow_seconds = 3.0
    vizier_server.mode = "slow"
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable, match=r"did not answer within 0\.5 s"):
        get_catalog(
            "ps1",
            SKY_RA,
            SKY_DEC,
            RADIUS,
            20.0,
            cache_dir=tmp_path,
            timeout=0.5,
            server_url=vizier_server.url,
        )
    # the client gave up at its timeout, not when the server finally answered
    assert time.monotonic() - started < 2.5
    assert vizier_server.request_count == 1
    assert _cache_files(tmp_path) == []


def test_http_500_is_a_retryable_error(vizier_server, ps1_table, tmp_path):
    vizier_server.catalogs[PS1] = ps1_table
    vizier_server.mode = "error"
    with pytest.raises(ServiceUnavailable, match="HTTP 500"):
        get_catalog(
            "ps1", SKY_RA, SKY_DEC, RADIUS, cache_dir=tmp_path, server_url=vizier_server.url
        )
    assert _cache_files(tmp_path) == []


def test_empty_answer_is_an_error_with_advice_and_is_not_cached(vizier_server, ps1_table, tmp_path):
    vizier_server.catalogs[PS1] = ps1_table
    vizier_server.mode = "empty"
    with pytest.raises(CatalogError, match="has no stars") as info:
        get_catalog(
            "ps1", SKY_RA, SKY_DEC, RADIUS, 20.0, cache_dir=tmp_path, server_url=vizier_server.url
        )
    assert "fainter magnitude limit" in str(info.value)
    assert "skymapper" not in str(info.value)  # SkyMapper does not reach Dec +20
    assert _cache_files(tmp_path) == []
    vizier_server.mode = "ok"
    get_catalog(
        "ps1", SKY_RA, SKY_DEC, RADIUS, 20.0, cache_dir=tmp_path, server_url=vizier_server.url
    )
    assert vizier_server.request_count == 2  # the empty answer was not served from a cache


def test_too_bright_limit_gives_no_stars(vizier_server, ps1_table):
    vizier_server.catalogs[PS1] = ps1_table
    with pytest.raises(CatalogError, match="brighter than rmag 5"):
        get_catalog("ps1", SKY_RA, SKY_DEC, RADIUS, 5.0, server_url=vizier_server.url)


def test_vizier_error_votable_is_reported(vizier_server, ps1_table, tmp_path):
    vizier_server.catalogs[PS1] = ps1_table
    vizier_server.query_error = "The database is not currently reachable."
    with pytest.raises(ServiceUnavailable, match="database is not currently reachable"):
        get_catalog(
            "ps1", SKY_RA, SKY_DEC, RADIUS, cache_dir=tmp_path, server_url=vizier_server.url
        )
    assert _cache_files(tmp_path) == []


def test_recorded_vizier_error_answer_is_recognised(vizier_server):
    """The real VizieR error answer (recorded by astroquery's tests) is served as is."""
    recorded = SERVICES_DATA / "vizier_no_server_error.xml"
    if not recorded.exists():
        pytest.skip(f"{recorded} is missing")
    from tests.fixture_servers.base import Reply

    vizier_server.answer = lambda request: Reply(200, recorded.read_bytes(), "text/xml")
    with pytest.raises(ServiceUnavailable, match="not currently reachable"):
        get_catalog("ps1", SKY_RA, SKY_DEC, RADIUS, server_url=vizier_server.url)


def test_truncated_answer_carries_a_warning_also_from_the_cache(vizier_server, ps1_table, tmp_path):
    vizier_server.catalogs[PS1] = ps1_table
    kwargs = dict(server_url=vizier_server.url, row_limit=25, cache_dir=tmp_path)
    result = get_catalog("ps1", SKY_RA, SKY_DEC, RADIUS, **kwargs)
    assert vizier_server.params()["-out.max"] == "25"
    assert len(result) <= 25
    assert any("truncated" in warning for warning in result.meta["warnings"])
    again = get_catalog("ps1", SKY_RA, SKY_DEC, RADIUS, **kwargs)
    assert again.meta["source"].startswith("cache:")
    assert again.meta["warnings"] == result.meta["warnings"]


def test_unknown_column_constraint_is_refused_not_retried(vizier_server, ps1_table):
    vizier_server.catalogs[PS1] = ps1_table
    with pytest.raises(CatalogError, match="Unknown column 'nosuch'"):
        get_catalog(
            "ps1", SKY_RA, SKY_DEC, RADIUS, filters={"nosuch": "<1"}, server_url=vizier_server.url
        )
    assert vizier_server.params()["nosuch"] == "<1"


@pytest.mark.parametrize(
    ("catalog", "dec", "advice"),
    [
        ("ps1", -45.0, "Pan-STARRS DR1 covers only Dec > -30°: try skymapper, atlas or gaiadr3syn"),
        ("skymapper", 30.0, "SkyMapper DR4 covers only Dec < +2°: try ps1 or gaiadr3syn"),
    ],
)
def test_field_outside_the_footprint_is_refused_before_any_query(
    vizier_server, catalog, dec, advice
):
    with pytest.raises(CatalogError) as info:
        get_catalog(catalog, 10.0, dec, 0.2, server_url=vizier_server.url)
    assert advice in str(info.value)
    assert vizier_server.request_count == 0


@pytest.mark.parametrize("catalog", sorted(CATALOGS))
def test_every_catalogue_layout_is_normalised(vizier_server, ps1_table, catalog):
    """Each catalogue's own VizieR columns (and computed _RAJ2000) map to our names."""
    definition = get_definition(catalog)
    dec = -40.0 if definition.dec_max < SKY_DEC else SKY_DEC
    layout = layout_table(definition, ps1_table, dec_center=dec)
    vizier_server.catalogs[definition.vizier_id] = layout
    result = get_catalog(catalog, SKY_RA, dec, RADIUS, 21.0, server_url=vizier_server.url)
    params = vizier_server.params()
    assert params[definition.limit_column] == "<21"
    assert len(result) > 50
    assert np.all(np.asarray(result[mag_column(limit_band(definition))]) < 21.0)
    for source in definition.bands:
        values = np.asarray(result[mag_column(source.band)])
        assert np.isfinite(values).mean() > 0.5, source.band
        errors = np.asarray(result["e_" + mag_column(source.band)])
        assert np.nanmedian(errors) > 0, source.band
    assert np.all(angular_distance(SKY_RA, dec, result["ra"], result["dec"]) <= RADIUS)


def test_real_refcat2_extract_served_by_vizier_gives_johnson_b_v(vizier_server, real_data):
    """End to end on real VizieR columns: REFCAT2 through the client, transformed to B, V."""
    refcat = Table.read(real_data / "catalogs" / "all_refcat2_ey_uma.ecsv")
    apass = Table.read(real_data / "catalogs" / "all_apass_ey_uma.ecsv")
    vizier_server.catalogs["J/ApJ/867/105/refcat2"] = refcat
    # the extracts are 10′ cones round (135.5509, +49.8429)
    result = get_catalog("atlas", 135.5509, 49.8429, 0.166, server_url=vizier_server.url)
    from tests.pipeline.catalogs.helpers import match_positions

    i_apass, i_ref = match_positions(
        apass["RAJ2000"], apass["DEJ2000"], result["ra"], result["dec"], 2.0
    )
    assert len(i_apass) >= 30
    for band in "BV":
        diff = (
            np.asarray(result[f"{band}mag"])[i_ref]
            - np.ma.filled(np.ma.asarray(apass[f"{band}mag"]).astype(float), np.nan)[i_apass]
        )
        assert abs(np.nanmedian(diff)) < 0.06  # acceptance: 0.06 mag median


def test_fixture_answer_is_vizier_format_for_astroquery_itself(vizier_server, ps1_table):
    """astroquery's own VOTable parsing (Vizier.query_region) reads the fixture's answer."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord
    from astroquery.vizier import VizierClass

    vizier_server.catalogs[PS1] = ps1_table
    client = VizierClass(columns=["*"], row_limit=-1)
    client._server_to_url = lambda return_type="votable": f"{vizier_server.url}/viz-bin/votable"
    tables = client.query_region(
        SkyCoord(SKY_RA, SKY_DEC, unit="deg"), radius=3 * u.arcmin, catalog=PS1, cache=False
    )
    assert list(tables.keys()) == [PS1]
    expected = _expected(ps1_table, SKY_RA, SKY_DEC, 3 / 60, None)
    assert len(tables[PS1]) == len(expected) > 5
