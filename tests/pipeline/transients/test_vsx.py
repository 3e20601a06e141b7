"""VSX through the VizieR client and the local VizieR fixture."""

from __future__ import annotations

import pytest
from astropy.table import Table

from pipeline.catalogs.errors import ServiceUnavailable
from pipeline.transients.vsx import query_vsx, variables_from_table
from tests.fixture_servers.vizier import VizierFixture
from tests.pipeline.transients.conftest import vsx_row

ROWS = [
    vsx_row("SS Cyg", "UGSS", 325.6780, 43.5860, 7.7, 12.4),
    vsx_row("V1 far", "EW", 327.0, 43.5860, 13.0, 13.4),
]


@pytest.fixture
def vizier():
    with VizierFixture({"B/vsx/vsx": Table(rows=ROWS)}, slow_seconds=3.0) as server:
        yield server


def test_cone_query(vizier):
    found = query_vsx(325.68, 43.59, 0.05, url=vizier.url, timeout=5)
    assert found.name.tolist() == ["SS Cyg"]
    assert found.kind.tolist() == ["UGSS"] and found.range_text.tolist() == ["7.70-12.40 V"]
    assert found.ra[0] == pytest.approx(325.678)
    params = vizier.params()
    assert params["-source"] == "B/vsx/vsx"
    assert any(key in params for key in ("-c.rd", "-c.rm", "-c.rs"))


def test_failure_and_empty(vizier):
    vizier.mode = "empty"
    assert len(query_vsx(325.68, 43.59, 0.05, url=vizier.url, timeout=5)) == 0
    vizier.mode = "down"
    with pytest.raises(ServiceUnavailable):
        query_vsx(325.68, 43.59, 0.05, url=vizier.url, timeout=1)


def test_rows_without_range_or_position():
    table = Table(rows=ROWS)
    table["min"][1] = float("nan")
    table["DEJ2000"][0] = float("nan")
    found = variables_from_table(table)
    assert found.name.tolist() == ["V1 far"] and found.range_text.tolist() == ["max 13.00 V"]
