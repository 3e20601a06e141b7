"""SkyBoT client: the recorded answer, the local fixture, empty answers and failures."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.transients.skybot import SkybotError, parse_skybot, query_skybot
from tests.fixture_servers.skybot import Body, SkybotFixture
from tests.paths import SERVICES_DATA

RECORDED = SERVICES_DATA
EPOCH = 2460018.63385  # JD


def test_recorded_answer_is_read():
    path = RECORDED / "imcce_skybot_query.vot"
    if not path.exists():
        pytest.skip(f"{path} is missing")
    bodies = parse_skybot(path.read_bytes())
    assert len(bodies) == 4
    assert bodies.name[1] == "2014 UP224" and bodies.number[1] == "523748"
    assert bodies.ra[0] == pytest.approx(81.3031906, abs=1e-7)
    assert bodies.dec[0] == pytest.approx(4.4903002, abs=1e-7)
    assert bodies.vmag[0] == pytest.approx(19.6, abs=1e-5)


def test_answers_without_bodies_and_errors():
    assert len(parse_skybot(b"# Flag: 0\n# Ticket: 1\nNo solar system object was found")) == 0
    no_table = (
        b'<?xml version="1.0"?><VOTABLE version="1.3" '
        b'xmlns="http://www.ivoa.net/xml/VOTable/v1.3">'
        b'<INFO name="QUERY_STATUS" value="OK"/><RESOURCE/></VOTABLE>'
    )
    assert len(parse_skybot(no_table)) == 0
    with pytest.raises(SkybotError, match="reported an error"):
        parse_skybot(no_table.replace(b'value="OK"', b'value="ERROR"'))
    with pytest.raises(SkybotError, match="Flag: -1"):
        parse_skybot(b"# Flag: -1\n# Ticket: 1\nSkyBoT comet conesearch -> MySQL server")
    with pytest.raises(SkybotError, match="cannot be read"):
        parse_skybot(b"<html>maintenance</html>")


@pytest.fixture
def server():
    bodies = [
        Body("2001 FV58", 150.01, 20.0, number="107804", kind="MB>Inner", vmag=18.7),
        Body("far away", 152.0, 20.0),
    ]
    with SkybotFixture(bodies, slow_seconds=3.0) as running:
        yield running


def test_cone_search_through_the_fixture(server):
    bodies = query_skybot(150.0, 20.0, 0.1, EPOCH, url=server.conesearch_url, timeout=5)
    assert bodies.name.tolist() == ["2001 FV58"]
    assert bodies.number.tolist() == ["107804"] and bodies.kind.tolist() == ["MB>Inner"]
    assert bodies.ra[0] == pytest.approx(150.01, abs=1e-8)
    params = server.params()
    assert float(params["-rd"]) == pytest.approx(0.1)
    assert float(params["-ep"]) == pytest.approx(EPOCH, abs=1e-6)
    assert params["-loc"] == "500" and params["-mime"] == "votable"
    query_skybot(150.0, 20.0, 0.1, EPOCH, url=server.conesearch_url, timeout=5, location="I41")
    assert server.params()["-loc"] == "I41"


def test_empty_field(server):
    server.mode = "empty"
    bodies = query_skybot(150.0, 20.0, 0.1, EPOCH, url=server.conesearch_url, timeout=5)
    assert len(bodies) == 0 and bodies.ra.dtype == np.float64


@pytest.mark.parametrize(
    ("mode", "text"),
    [("down", "cannot connect"), ("slow", "did not answer within 1 s"), ("error", "HTTP 500")],
)
def test_failures(server, mode, text):
    server.mode = mode
    with pytest.raises(SkybotError, match=text):
        query_skybot(150.0, 20.0, 0.1, EPOCH, url=server.conesearch_url, timeout=1.0)
