"""A local CDS XMatch: answers ``/xmatch/api/v1/sync`` cross-matches of an uploaded table.

It speaks what astroquery's ``XMatchClass`` sends: a multipart POST with ``request=xmatch``,
``distMaxArcsec``, ``RESPONSEFORMAT`` (``votable`` or ``csv``), ``cat1`` uploaded as CSV
with ``colRA1``/``colDec1``, and ``cat2=vizier:<id>``; and the GET
``/xmatch/api/v1/sync/tables?action=getVizieRTableNames`` listing the VizieR tables it
serves. The answer holds every pair closer than the distance, as the real service
does (see ``../shared/data/services/xmatch_query_res.csv``): ``angDist`` (arcsec) first,
then the uploaded columns, then the catalogue's, grouped by uploaded row and sorted by
distance. The catalogues are tables in their VizieR layout (VizieR id → Table).
Errors come back as XMatch sends them: HTTP 400 with a VOTable whose ``QUERY_STATUS``
INFO holds the message.
"""

from __future__ import annotations

import csv
import email.parser
import email.policy
from io import BytesIO, StringIO
from urllib.parse import parse_qs

import numpy as np
import pytest
from astropy.io.votable.tree import Info, Resource, TableElement, VOTableFile
from astropy.table import Table, hstack

from tests.fixture_servers.base import FixtureServer, Reply, Request
from tests.fixture_servers.vizier import POSITION_PAIRS, _angular_distance_deg

SYNC_PATH = "/xmatch/api/v1/sync"
VOTABLE_TYPE = "application/x-votable+xml"


class XMatchQueryError(Exception):
    """The cross-match cannot be done; XMatch answers HTTP 400 with the reason."""


def parse_form(request: Request) -> tuple[dict[str, str], dict[str, bytes]]:
    """Form fields and uploaded files of a multipart (or url-encoded) POST."""
    content_type = request.headers.get("Content-Type", "")
    if content_type.startswith("multipart/form-data"):
        head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + request.body)
        fields, files = {}, {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True) or b""
            if part.get_filename():
                files[name] = payload
            else:
                fields[name] = payload.decode("utf-8")
        return fields, files
    fields = {k: v[-1] for k, v in parse_qs(request.text, keep_blank_values=True).items()}
    return fields, {}


def _uploaded_table(data: bytes) -> Table:
    text = data.decode("utf-8")
    if text.lstrip().startswith("<"):
        return Table.read(BytesIO(data), format="votable")
    rows = list(csv.reader(StringIO(text)))
    if not rows:
        raise XMatchQueryError("the uploaded table is empty")
    names, body = rows[0], [r for r in rows[1:] if r]
    columns = {}
    for k, name in enumerate(names):
        values = [r[k] for r in body]
        try:
            columns[name] = np.array(values, dtype=float)
        except ValueError:
            columns[name] = np.array(values, dtype=str)
    return Table(columns, names=names) if body else Table(names=names)


def cross_match(upload: Table, ra_col: str, dec_col: str, catalog: Table, radius: float) -> Table:
    """Every (uploaded row, catalogue row) pair closer than ``radius`` arcsec."""
    for ra_name, dec_name in POSITION_PAIRS:
        if ra_name in catalog.colnames and dec_name in catalog.colnames:
            cat_ra = np.asarray(catalog[ra_name], float)
            cat_dec = np.asarray(catalog[dec_name], float)
            break
    else:
        raise XMatchQueryError("the catalogue has no position columns")
    pairs_up, pairs_cat, distances = [], [], []
    for i, (ra, dec) in enumerate(zip(upload[ra_col], upload[dec_col], strict=True)):
        near = np.flatnonzero(np.abs(cat_dec - float(dec)) <= radius / 3600.0)
        if near.size == 0:
            continue
        dist = _angular_distance_deg(float(ra), float(dec), cat_ra[near], cat_dec[near]) * 3600
        inside = dist <= radius
        order = np.argsort(dist[inside], kind="stable")
        pairs_up.extend([i] * int(inside.sum()))
        pairs_cat.extend(near[inside][order])
        distances.extend(dist[inside][order])
    left = upload[np.asarray(pairs_up, int)]
    right = catalog[np.asarray(pairs_cat, int)]
    out = hstack([Table({"angDist": np.asarray(distances, float)}), left, right])
    out["angDist"].unit = "arcsec"
    return out


def votable_bytes(table: Table) -> bytes:
    document = VOTableFile(version="1.4")
    resource = Resource(type="results")
    document.resources.append(resource)
    element = TableElement.from_table(document, Table(table, masked=True))
    resource.tables.append(element)
    buffer = BytesIO()
    document.to_xml(buffer, tabledata_format="tabledata")
    return buffer.getvalue()


def csv_bytes(table: Table) -> bytes:
    buffer = StringIO()
    table.write(buffer, format="ascii.csv")
    return buffer.getvalue().encode()


def error_votable(message: str) -> bytes:
    document = VOTableFile(version="1.4")
    info = Info(ID="QUERY_STATUS", name="QUERY_STATUS", value="ERROR")
    info.content = message
    document.infos.append(info)
    document.resources.append(Resource())
    buffer = BytesIO()
    document.to_xml(buffer)
    return buffer.getvalue()


class XMatchFixture(FixtureServer):
    """A local XMatch serving the given VizieR tables (VizieR id → Table in its layout).

    Attributes
    ----------
    catalogs : dict
        The tables served; tests may add or replace entries while it runs.
    uploads : list of Table
        The candidate tables received, in order (to check what the client sent).
    """

    def __init__(self, catalogs: dict[str, Table] | None = None, slow_seconds: float = 5.0):
        super().__init__(self._answer, self._answer_empty, slow_seconds)
        self.catalogs: dict[str, Table] = dict(catalogs or {})
        self.uploads: list[Table] = []
        self.forms: list[dict[str, str]] = []

    @property
    def sync_url(self) -> str:
        return self.url + SYNC_PATH

    def _answer(self, request: Request, empty: bool = False) -> Reply:
        path = request.path.rstrip("/")
        if path == SYNC_PATH + "/tables":
            names = "\n".join(["simbad", *self.catalogs]) + "\n"
            return Reply(200, names.encode())
        if path != SYNC_PATH or request.method != "POST":
            return Reply(404, b"not found: this fixture answers " + SYNC_PATH.encode())
        fields, files = parse_form(request)
        self.forms.append(fields)
        try:
            table = self._cross_match(fields, files)
        except XMatchQueryError as exc:
            return Reply(400, error_votable(str(exc)), VOTABLE_TYPE)
        if empty:
            table = table[:0]
        if fields.get("RESPONSEFORMAT", "csv").lower() == "votable":
            return Reply(200, votable_bytes(table), VOTABLE_TYPE)
        return Reply(200, csv_bytes(table), "text/csv")

    def _cross_match(self, fields: dict[str, str], files: dict[str, bytes]) -> Table:
        if fields.get("request") != "xmatch":
            raise XMatchQueryError("request must be xmatch")
        if "cat1" not in files:
            raise XMatchQueryError("cat1 must be an uploaded table")
        source = fields.get("cat2", "")
        if not source.startswith("vizier:") or source[7:] not in self.catalogs:
            raise XMatchQueryError(f"Unknown catalogue {source}")
        radius = float(fields.get("distMaxArcsec", "nan"))
        if not 0 < radius <= 180:
            raise XMatchQueryError("distMaxArcsec must be in (0, 180]")
        upload = _uploaded_table(files["cat1"])
        self.uploads.append(upload)
        ra_col, dec_col = fields.get("colRA1"), fields.get("colDec1")
        if ra_col not in upload.colnames or dec_col not in upload.colnames:
            raise XMatchQueryError(f"columns {ra_col}/{dec_col} are not in cat1")
        return cross_match(upload, ra_col, dec_col, self.catalogs[source[7:]], radius)

    def _answer_empty(self, request: Request) -> Reply:
        return self._answer(request, empty=True)


@pytest.fixture
def xmatch_server():
    """A running :class:`XMatchFixture` with no tables; the test adds what it needs."""
    with XMatchFixture() as server:
        yield server
