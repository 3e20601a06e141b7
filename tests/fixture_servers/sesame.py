"""A local CDS Sesame name resolver answering ``/cgi-bin/nph-sesame/-oxp/SNV?<name>`` in XML.

The answer has Sesame's layout: a ``<Sesame>`` document with one ``<Target>`` holding
the query ``<name>`` and, when the object is known, a ``<Resolver name="S=Simbad ...">``
with ``<otype>``, ``<jpos>``, ``<jradeg>``, ``<jdedeg>``, ``<oname>`` and ``<nrefs>``;
when nothing is known, an ``<INFO>*** Nothing found ***</INFO>`` instead (HTTP 200 in
both cases). Names are matched as Sesame matches identifiers: case and spaces ignored
(``M31`` = ``m 31``). Objects are added with :meth:`SesameFixture.add`.

Sesame's query is a bare ``?M%2031`` (no ``key=value``), which the shared request
parser drops; this server's handler passes it on as the ``_raw`` parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape

import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord

from tests.fixture_servers.base import FixtureServer, Reply, Request, _Handler

SESAME_PATH = "/cgi-bin/nph-sesame"
XML_TYPE = "text/xml; charset=UTF-8"
RAW_QUERY_KEY = "_raw"


@dataclass(frozen=True)
class SesameObject:
    """One object SIMBAD knows: main identifier, position, type."""

    main_id: str
    ra: float
    dec: float
    otype: str = "*"
    nrefs: int = 1


def _key(name: str) -> str:
    return "".join(name.split()).lower()


class _RawQueryHandler(_Handler):
    def _handle(self) -> None:
        base, _, query = self.path.partition("?")
        if query and "=" not in query:
            self.path = f"{base}?{RAW_QUERY_KEY}={query}"
        super()._handle()


def sesame_answer(query: str, found: SesameObject | None) -> bytes:
    """Sesame's XML answer to ``-oxp/SNV`` for one name."""
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<Sesame xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xsi:noNamespaceSchemaLocation="http://vizier.cds.unistra.fr/xml/sesame_4x.xsd">',
        '<Target option="SNV">',
        f"  <name>{escape(query)}</name>",
    ]
    if found is None:
        lines.append("  <INFO>*** Nothing found *** </INFO>")
    else:
        position = SkyCoord(found.ra * u.deg, found.dec * u.deg)
        jpos = position.to_string("hmsdms", sep=":", precision=2)
        lines += [
            "  <!-- Q0 #1 -->",
            '  <Resolver name="S=Simbad (CDS, via client/server):    1">',
            "    <INFO>*** from cache</INFO>",
            f"    <otype>{escape(found.otype)}</otype>",
            f"    <jpos>{jpos}</jpos>",
            f"    <jradeg>{found.ra:.9f}</jradeg>",
            f"    <jdedeg>{found.dec:+.9f}</jdedeg>",
            "    <refPos>2020yCat.1350....0G</refPos>",
            f"    <oname>{escape(found.main_id)}</oname>",
            f"    <nrefs>{found.nrefs}</nrefs>",
            "  </Resolver>",
        ]
    lines += ["</Target>", "</Sesame>", "<!-- ====Done (SkySift test fixture)==== -->", ""]
    return "\n".join(lines).encode()


class SesameFixture(FixtureServer):
    """A local Sesame; ``sesame_url`` is what the client is configured with."""

    def __init__(self, slow_seconds: float = 5.0):
        super().__init__(self._answer, self._answer_empty, slow_seconds)
        self.objects: dict[str, SesameObject] = {}

    def start(self) -> SesameFixture:
        super().start()
        self._httpd.RequestHandlerClass = _RawQueryHandler  # type: ignore[union-attr]
        return self

    @property
    def sesame_url(self) -> str:
        return self.url + SESAME_PATH

    def add(self, name: str, ra: float, dec: float, otype: str = "*", *aliases: str) -> None:
        """Make ``name`` (and aliases) known, with ``name`` as the main identifier."""
        entry = SesameObject(name, ra, dec, otype)
        for alias in (name, *aliases):
            self.objects[_key(alias)] = entry

    def queried_names(self) -> list[str]:
        return [r.query.get(RAW_QUERY_KEY, [""])[0] for r in self.requests]

    def _answer(self, request: Request, empty: bool = False) -> Reply:
        prefix = SESAME_PATH + "/"
        if not request.path.startswith(prefix) or "xp" not in request.path[len(prefix) :]:
            return Reply(404, b"not found: this fixture answers /cgi-bin/nph-sesame/-oxp/...")
        name = request.query.get(RAW_QUERY_KEY, [""])[0].strip()
        found = None if empty else self.objects.get(_key(name))
        return Reply(200, sesame_answer(name, found), XML_TYPE)

    def _answer_empty(self, request: Request) -> Reply:
        return self._answer(request, empty=True)


@pytest.fixture
def sesame_server():
    """A running :class:`SesameFixture` knowing nothing; the test adds objects."""
    with SesameFixture(slow_seconds=3.0) as server:
        yield server
