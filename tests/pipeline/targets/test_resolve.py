"""Name resolution against local Sesame, TNS and Fink servers (real httpx clients, no mocks).

Each server answers in its service's format (Sesame XML, TNS and Fink JSON; see
``tests/fixture_servers``) and can be switched down (connection refused), slow (longer
than the client's timeout) or broken (HTTP 500).
"""

from __future__ import annotations

import json

import pytest

from pipeline.targets import (
    ResolverUnavailable,
    TargetError,
    TargetNotFound,
    TargetResolver,
    TargetsConfig,
    parse_target,
    query_fink,
    query_sesame,
    query_tns,
    resolve_name,
)
from tests.fixture_servers.tns import API_KEY, BOT_ID, BOT_NAME, TNSObject, form_fields

SHORT_TIMEOUT = 0.5  # s; the slow servers wait 3 s

M31 = (10.684708333, 41.268750000)
SN = TNSObject("2024abc", "SN", 150.25, 2.125, "SN Ia", "ZTF24abcdefg")
SN_NEIGHBOUR = TNSObject("2024abcd", "AT", 151.5, 3.5, "", "ATLAS24xyz")


def config_for(sesame=None, tns=None, fink=None, bot=False, **kwargs) -> TargetsConfig:
    urls = {}
    if sesame is not None:
        urls["sesame_url"] = sesame.sesame_url
    if tns is not None:
        urls["tns_url"] = tns.url
    if fink is not None:
        urls["fink_url"] = fink.url
    if bot:
        urls.update(tns_bot_id=BOT_ID, tns_bot_name=BOT_NAME, tns_api_key=API_KEY)
    return TargetsConfig(resolver_timeout=SHORT_TIMEOUT, **urls, **kwargs)


# --- Sesame ---------------------------------------------------------------------------------


def test_sesame_found(sesame_server):
    sesame_server.add("M  31", *M31, "AGN", "NGC 224", "Andromeda")
    found = query_sesame("m31", url=sesame_server.sesame_url, timeout=SHORT_TIMEOUT)
    assert (found.ra, found.dec) == pytest.approx(M31, abs=1e-9)
    assert (found.name, found.source, found.otype) == ("M 31", "SIMBAD", "AGN")
    request = sesame_server.requests[-1]
    assert request.method == "GET" and request.path == "/cgi-bin/nph-sesame/-oxp/SNV"
    assert sesame_server.queried_names() == ["m31"]
    # an alias with spaces survives the URL encoding
    assert query_sesame("NGC 224", url=sesame_server.sesame_url, timeout=1).name == "M 31"
    assert sesame_server.queried_names()[-1] == "NGC 224"


def test_sesame_not_found(sesame_server):
    with pytest.raises(TargetNotFound) as raised:
        query_sesame("M 999", url=sesame_server.sesame_url, timeout=SHORT_TIMEOUT)
    assert str(raised.value).startswith("SIMBAD knows no object named 'M 999'")
    assert isinstance(raised.value, TargetError) and isinstance(raised.value, ValueError)


@pytest.mark.parametrize(
    ("mode", "words"),
    [
        ("down", "is unreachable: connection refused"),
        ("slow", f"is unreachable: no answer within {SHORT_TIMEOUT:g} s"),
        ("error", "is unreachable: it answered HTTP 500"),
    ],
)
def test_sesame_unavailable(sesame_server, mode, words):
    sesame_server.add("M 31", *M31)
    url = sesame_server.sesame_url
    sesame_server.mode = mode
    with pytest.raises(ResolverUnavailable) as raised:
        query_sesame("M 31", url=url, timeout=SHORT_TIMEOUT)
    message = str(raised.value)
    assert message.startswith(f"SIMBAD (CDS Sesame at {url}) ")
    assert words in message
    assert "give the target's coordinates" in message or mode == "error"


def test_sesame_wrong_url(sesame_server):
    with pytest.raises(TargetError, match="answered HTTP 404: check the sesame_url"):
        query_sesame("M 31", url=sesame_server.url + "/wrong", timeout=SHORT_TIMEOUT)


# --- TNS ------------------------------------------------------------------------------------


def test_tns_with_bot(tns_server):
    tns_server.add(SN)
    found = query_tns(
        "2024abc",
        url=tns_server.url,
        bot_id=BOT_ID,
        bot_name=BOT_NAME,
        api_key=API_KEY,
        timeout=SHORT_TIMEOUT,
    )
    assert (found.ra, found.dec) == (SN.ra, SN.dec)
    assert (found.name, found.source, found.otype) == ("SN 2024abc", "TNS", "SN Ia")
    request = tns_server.requests[-1]
    assert request.method == "POST" and request.path == "/api/get/object"
    marker = json.loads(request.headers["User-Agent"].removeprefix("tns_marker"))
    assert marker == {"tns_id": int(BOT_ID), "type": "bot", "name": BOT_NAME}
    fields = form_fields(request)
    assert fields["api_key"] == API_KEY
    assert json.loads(fields["data"])["objname"] == "2024abc"


def test_tns_refuses_wrong_key(tns_server):
    tns_server.add(SN)
    with pytest.raises(TargetError, match="the TNS refused the bot credentials \\(HTTP 401\\)"):
        query_tns(
            "2024abc",
            url=tns_server.url,
            bot_id=BOT_ID,
            bot_name=BOT_NAME,
            api_key="wrong",
            timeout=SHORT_TIMEOUT,
        )


def test_tns_not_found(tns_server):
    with pytest.raises(TargetNotFound, match="the TNS knows no object named '2024zzz'"):
        query_tns(
            "2024zzz",
            url=tns_server.url,
            bot_id=BOT_ID,
            bot_name=BOT_NAME,
            api_key=API_KEY,
            timeout=SHORT_TIMEOUT,
        )


@pytest.mark.parametrize("mode", ["down", "slow", "error"])
def test_tns_unreachable(tns_server, mode):
    tns_server.add(SN)
    url = tns_server.url
    tns_server.mode = mode
    with pytest.raises(ResolverUnavailable, match=r"^the TNS is unreachable: "):
        query_tns(
            "2024abc",
            url=url,
            bot_id=BOT_ID,
            bot_name=BOT_NAME,
            api_key=API_KEY,
            timeout=SHORT_TIMEOUT,
        )


# --- Fink -----------------------------------------------------------------------------------


def test_fink_finds_renamed_transient(fink_server):
    fink_server.add(SN_NEIGHBOUR)  # 2024abcd: a prefix match of 2024abc that must not win
    fink_server.add(SN)
    found = query_fink("2024abc", "AT", url=fink_server.url, timeout=SHORT_TIMEOUT)
    assert (found.ra, found.dec, found.name, found.source) == (SN.ra, SN.dec, "SN 2024abc", "Fink")
    # the user's prefix first (AT: only the neighbour matches), then SN
    assert fink_server.queried_names() == ["AT 2024abc", "SN 2024abc"]
    request = fink_server.requests[-1]
    assert request.path == "/api/v1/resolver"
    assert json.loads(request.text)["resolver"] == "tns"


def test_fink_not_found_and_down(fink_server):
    fink_server.add(SN_NEIGHBOUR)
    with pytest.raises(TargetNotFound, match=r"through the Fink resolver.*'2024abc'"):
        query_fink("2024abc", None, url=fink_server.url, timeout=SHORT_TIMEOUT)
    url = fink_server.url
    fink_server.mode = "slow"
    with pytest.raises(ResolverUnavailable, match=r"^the Fink resolver is unreachable: no answer"):
        query_fink("2024abc", None, url=url, timeout=SHORT_TIMEOUT)


# --- the chain --------------------------------------------------------------------------------


def test_chain_tns_with_bot_then_sesame(tns_server, sesame_server):
    tns_server.add(SN)
    sesame_server.add("SN 1987A", 83.86675, -69.26974, "SN*")
    config = config_for(sesame_server, tns_server, bot=True)
    with TargetResolver(config) as resolver:
        assert resolver.resolve(parse_target("SN 2024abc")).source == "TNS"
        # a TNS-shaped name the TNS does not know, SIMBAD does
        old = resolver.resolve(parse_target("SN 1987A"))
        assert (old.source, old.name) == ("SIMBAD", "SN 1987A")
        with pytest.raises(TargetNotFound, match=r"neither the TNS nor SIMBAD knows .*'2024zzz'"):
            resolver.resolve(parse_target("2024zzz"))
        # names that are no TNS designation go to Sesame only
        n_tns = tns_server.request_count
        with pytest.raises(TargetNotFound, match="SIMBAD knows no object named 'M 999'"):
            resolver.resolve(parse_target("M 999"))
        assert tns_server.request_count == n_tns
        assert resolver.warnings == []


def test_chain_without_bot_uses_fink(tns_server, fink_server, sesame_server):
    fink_server.add(SN)
    config = config_for(sesame_server, tns_server, fink_server)
    with TargetResolver(config) as resolver:
        found = resolver.resolve(parse_target("2024abc"))
    assert (found.source, found.name) == ("Fink", "SN 2024abc")
    assert tns_server.request_count == 0


def test_chain_tns_down(tns_server, sesame_server):
    sesame_server.add("SN 2024abc", SN.ra, SN.dec, "SN*")
    config = config_for(sesame_server, tns_server, bot=True)
    tns_server.mode = "down"
    with TargetResolver(config) as resolver:
        found = resolver.resolve(parse_target("SN 2024abc"))
        assert found.source == "SIMBAD"
        assert len(resolver.warnings) == 1
        assert "the TNS is unreachable: connection refused" in resolver.warnings[0]
        # when SIMBAD does not know the name either, the TNS failure is the error
        with pytest.raises(ResolverUnavailable, match=r"^the TNS is unreachable"):
            resolver.resolve(parse_target("2024xyz"))


def test_chain_coordinates_need_no_service(sesame_server):
    with TargetResolver(config_for(sesame_server)) as resolver:
        found = resolver.resolve(parse_target("10:00:24.1 +20:12:30"))
    assert (found.name, found.source) == ("J100024.10+201230.0", "coordinates")
    assert sesame_server.request_count == 0


def test_cache_answers_reruns(tmp_path, sesame_server, fink_server):
    sesame_server.add("M 31", *M31)
    fink_server.add(SN)
    config = config_for(sesame_server, fink=fink_server)
    for _ in range(2):
        with TargetResolver(config, cache_dir=tmp_path) as resolver:
            assert resolver.resolve(parse_target("M31")).name == "M 31"
            assert resolver.resolve(parse_target("SN 2024abc")).source == "Fink"
    assert sesame_server.request_count == 1
    assert fink_server.request_count == 1
    sesame_server.mode = "down"  # cached: no service needed any more
    with TargetResolver(config, cache_dir=tmp_path) as resolver:
        assert resolver.resolve(parse_target("m31")).ra == pytest.approx(M31[0])


def test_resolve_name_in_one_call(sesame_server):
    sesame_server.add("M 31", *M31)
    config = config_for(sesame_server)
    assert resolve_name("M31", config).name == "M 31"
    assert resolve_name("10:00:24.1 +20:12:30", config).ra == pytest.approx(150.1004166667)
    with pytest.raises(TargetError, match="is a pixel position; a sky position is needed"):
        resolve_name("x=1 y=2", config)
