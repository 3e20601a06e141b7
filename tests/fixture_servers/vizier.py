"""A local VizieR: answers ``/viz-bin/votable`` cone queries in VizieR's VOTable format.

It understands what astroquery sends (a POST body of ``key=value`` lines, or a form/GET
query): ``-source``, ``-c`` (``<ra><+|-><dec>`` in degrees), ``-c.rd``/``-c.rm``/``-c.rs``
(radius), ``-out`` (``*``, ``**`` or column names), ``-out.add`` (computed ``_RAJ2000``,
``_DEJ2000``, ``_r``), ``-out.all``, ``-out.max`` (number or ``unlimited``) and column
constraints (``rmag=<20``, ``>x``, ``<=x``, ``>=x``, ``=x``, ``a..b``, ``!=x``). The
answer is built from the tables given to it (VizieR id → astropy Table in that
catalogue's layout) and laid out like the recorded answers in
``../shared/data/services/vizier_*.xml``: a DESCRIPTION, a ``queryParameters`` INFO, one
RESOURCE named after the catalogue holding a TABLE with the same name, rows sorted by
distance, and ``INFO name="QUERY_STATUS" value="OVERFLOW"`` when ``-out.max`` truncates.
Errors (unknown catalogue or column, or ``query_error = True``) come back as VizieR
sends them: HTTP 200 with ``INFO name="Error"`` lines and ``QUERY_STATUS=ERROR``.
"""

from __future__ import annotations

import re
from io import BytesIO
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

import numpy as np
import pytest
from astropy.io.votable.tree import Info, Resource, TableElement, VOTableFile
from astropy.table import Table

from tests.fixture_servers.base import FixtureServer, Reply, Request

VOTABLE_TYPE = "text/xml; charset=UTF-8"
POSITION_PAIRS = (("RAJ2000", "DEJ2000"), ("RA_ICRS", "DE_ICRS"), ("_RAJ2000", "_DEJ2000"))
RADIUS_UNITS = {"-c.rd": 1.0, "-c.rm": 1.0 / 60.0, "-c.rs": 1.0 / 3600.0, "-c.r": 1.0 / 60.0}
_CENTRE = re.compile(r"^\s*([0-9.]+)\s*([+-]\s*[0-9.]+)\s*$")


class VizierQueryError(Exception):
    """The query cannot be answered; VizieR reports this inside a VOTable."""


def parse_params(request: Request) -> dict[str, str]:
    """Query parameters from astroquery's ``key=value`` script, a form body or the URL."""
    params = {key: values[-1] for key, values in request.query.items()}
    text = request.text
    if "application/x-www-form-urlencoded" in request.headers.get("Content-Type", ""):
        params.update({k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()})
        return params
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("===="):
            continue
        key, _, value = line.partition("=")
        params[key.strip()] = value.strip()
    return params


def _angular_distance_deg(ra0, dec0, ra, dec):
    ra0, dec0, ra, dec = (np.radians(np.asarray(v, float)) for v in (ra0, dec0, ra, dec))
    h = np.sin((dec - dec0) / 2) ** 2 + np.cos(dec0) * np.cos(dec) * np.sin((ra - ra0) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(h, 0, 1))))


def _positions(table: Table) -> tuple[np.ndarray, np.ndarray]:
    for ra_name, dec_name in POSITION_PAIRS:
        if ra_name in table.colnames and dec_name in table.colnames:
            return np.asarray(table[ra_name], float), np.asarray(table[dec_name], float)
    raise VizierQueryError("the fixture table has no position columns")


def _cone(params: dict[str, str]) -> tuple[float, float, float]:
    match = _CENTRE.match(params.get("-c", ""))
    if not match:
        raise VizierQueryError(f"cannot read the position -c={params.get('-c')!r}")
    for key, scale in RADIUS_UNITS.items():
        if key in params:
            return float(match[1]), float(match[2].replace(" ", "")), float(params[key]) * scale
    raise VizierQueryError("only cone queries (-c.rd/-c.rm/-c.rs) are answered by this server")


def _constraint_mask(values: np.ma.MaskedArray, text: str) -> np.ndarray:
    data = np.ma.filled(values.astype(float), np.nan)
    text = text.strip()
    for op, test in (
        ("<=", np.less_equal),
        (">=", np.greater_equal),
        ("!=", np.not_equal),
        ("<", np.less),
        (">", np.greater),
        ("=", np.equal),
    ):
        if text.startswith(op):
            return test(data, float(text[len(op) :]))
    if ".." in text:
        lo, hi = (float(v) for v in text.split(".."))
        return (data >= lo) & (data <= hi)
    return data == float(text)


def _columns(table: Table, params: dict[str, str]) -> list[str]:
    requested = [c.strip() for c in params.get("-out", "").split(",") if c.strip()]
    if "-out.all" in params or "**" in requested or "*" in requested or not requested:
        return list(table.colnames)
    return [name for name in table.colnames if name in requested]  # VizieR ignores unknown


def select(table: Table, params: dict[str, str]) -> tuple[Table, bool]:
    """The rows and columns VizieR would return, and whether -out.max truncated them."""
    ra0, dec0, radius = _cone(params)
    ra, dec = _positions(table)
    distance = _angular_distance_deg(ra0, dec0, ra, dec)
    keep = distance <= radius
    for key, constraint in params.items():
        if key.startswith("-"):
            continue
        if key not in table.colnames:
            raise VizierQueryError(f"Unknown column '{key}' in constraint {key}={constraint}")
        keep &= _constraint_mask(np.ma.asarray(table[key]), constraint)
    rows = np.flatnonzero(keep)
    rows = rows[np.argsort(distance[rows], kind="stable")]
    limit = params.get("-out.max", "50")
    overflow = False
    if limit != "unlimited" and len(rows) > int(limit):
        rows, overflow = rows[: int(limit)], True
    out = Table()
    added = [c.strip() for c in params.get("-out.add", "").split(",") if c.strip()]
    computed = {"_r": distance * 60.0, "_RAJ2000": ra, "_DEJ2000": dec}  # _r in arcmin
    units = {"_r": "arcmin", "_RAJ2000": "deg", "_DEJ2000": "deg"}
    for name in added:
        if name in computed:
            out[name] = computed[name][rows]
            out[name].unit = units[name]
    for name in _columns(table, params):
        if name not in out.colnames:
            out[name] = table[name][rows]
    return out, overflow


def _query_info(params: dict[str, str]) -> Info:
    info = Info(name="queryParameters", value=str(len(params)))
    info.content = "\n".join(f"{k}={v}" if v else k for k, v in params.items())
    return info


def votable_answer(source: str, table: Table, params: dict[str, str], overflow: bool) -> bytes:
    """A VizieR-style VOTable holding one catalogue table."""
    document = VOTableFile(version="1.4")
    document.description = "VizieR Astronomical Server (SkySift test fixture)"
    document.infos.append(_query_info(params))
    resource = Resource(name=source, ID="yCat_" + re.sub(r"\W", "_", source))
    document.resources.append(resource)
    element = TableElement.from_table(document, table)
    element.name = source
    element.ID = source.replace("/", "_")
    for votable_field in element.fields:
        if votable_field.name in ("RAJ2000", "_RAJ2000", "RA_ICRS"):
            votable_field.ucd = "pos.eq.ra;meta.main"
        elif votable_field.name in ("DEJ2000", "_DEJ2000", "DE_ICRS"):
            votable_field.ucd = "pos.eq.dec;meta.main"
    resource.tables.append(element)
    if overflow:
        info = Info(name="QUERY_STATUS", value="OVERFLOW")
        info.content = f"truncated result (maxtup={params.get('-out.max')})"
        resource.infos.append(info)
    buffer = BytesIO()
    document.to_xml(buffer, tabledata_format="tabledata")
    return buffer.getvalue()


def error_answer(message: str) -> bytes:
    """VizieR's error answer: HTTP 200, Error INFOs, QUERY_STATUS=ERROR, empty RESOURCE."""
    text = escape(message, {'"': "&quot;"})
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<VOTABLE xmlns="http://www.ivoa.net/xml/VOTable/v1.3" version="1.4">\n'
        "  <DESCRIPTION>VizieR Astronomical Server (SkySift test fixture)</DESCRIPTION>\n"
        f'  <INFO ID="Error" name="Error" value="{text}" />\n'
        f'  <INFO name="QUERY_STATUS" value="ERROR">\n{escape(message)}\n</INFO>\n'
        "  <RESOURCE>\n</RESOURCE>\n</VOTABLE>\n"
    ).encode()


class VizierFixture(FixtureServer):
    """A local VizieR serving the given tables (VizieR id → Table in its layout).

    Attributes
    ----------
    catalogs : dict
        The tables served; tests may add or replace entries while it runs.
    query_error : str or None
        When set, every query is answered with this VizieR error message.
    """

    def __init__(self, catalogs: dict[str, Table] | None = None, slow_seconds: float = 5.0):
        super().__init__(self._answer, self._answer_empty, slow_seconds)
        self.catalogs: dict[str, Table] = dict(catalogs or {})
        self.query_error: str | None = None

    def params(self, index: int = -1) -> dict[str, str]:
        """Parsed parameters of a recorded request (the last one by default)."""
        return parse_params(self.requests[index])

    def _answer(self, request: Request, empty: bool = False) -> Reply:
        if not request.path.rstrip("/").endswith("/viz-bin/votable"):
            return Reply(404, b"not found: this fixture answers /viz-bin/votable")
        params = parse_params(request)
        if self.query_error:
            return Reply(200, error_answer(self.query_error), VOTABLE_TYPE)
        source = params.get("-source", "")
        if source not in self.catalogs:
            message = f"No catalogue found for -source={source}"
            return Reply(200, error_answer(message), VOTABLE_TYPE)
        try:
            table, overflow = select(self.catalogs[source], params)
        except VizierQueryError as exc:
            return Reply(200, error_answer(str(exc)), VOTABLE_TYPE)
        if empty:
            table, overflow = table[:0], False
        return Reply(200, votable_answer(source, table, params, overflow), VOTABLE_TYPE)

    def _answer_empty(self, request: Request) -> Reply:
        return self._answer(request, empty=True)


@pytest.fixture
def vizier_server():
    """A running :class:`VizierFixture` with no tables; the test adds what it needs."""
    with VizierFixture() as server:
        yield server
