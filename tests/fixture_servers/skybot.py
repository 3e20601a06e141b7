"""A local IMCCE SkyBoT: answers cone searches (``conesearch.php``) in SkyBoT's VOTable.

It reads the parameters astroquery's ``SkybotClass.cone_search`` sends (``-ra``, ``-dec``,
``-rd`` in degrees, ``-ep`` Julian date, ``-loc``, ``-filter``, ``-objFilter``,
``-mime=votable``) and lists the bodies given to it that lie in the cone. The layout
copies the recorded answer ``../shared/data/services/imcce_skybot_query.vot``: ``vot:``
namespace prefix, ``QUERY_STATUS`` INFOs, a ``Skybot.ConeSearch`` RESOURCE whose TABLE
has the fields Num, Name, RA (h:m:s), DEC (d:m:s), Class, Mv, ErrPos, d, dRAcosDec,
dDEC, Dgeo, Dhelio, _RAJ2000, _DECJ2000, ExternalLink. Bodies do not move: the test
places each one where it should be at the requested epoch (``requested_epochs`` records
what was asked). With nothing in the cone the table has no rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape

import pytest
from astropy.coordinates import SkyCoord

from tests.fixture_servers.base import FixtureServer, Reply, Request
from tests.fixture_servers.vizier import _angular_distance_deg

CONESEARCH_PATH = "/webservices/skybot/api/conesearch.php"
VOTABLE_TYPE = "application/x-votable+xml; charset=utf-8"
_NS = (
    'version="1.3" xsi:schemaLocation="http://www.ivoa.net/xml/VOTable/v1.3 '
    'http://www.ivoa.net/xml/VOTable/VOTable-1.3.xsd" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
    'xmlns:vot="http://www.ivoa.net/xml/VOTable/v1.3" xmlns:stc="http://www.ivoa.net/xml/STC"'
)
_FIELDS = (
    ('ID="num" name="Num" ucd="meta.id;meta.number" datatype="char" arraysize="6"'),
    ('ID="name" name="Name" ucd="meta.id;meta.main" datatype="char" arraysize="32"'),
    ('ID="ra" name="RA" ucd="pos.eq.ra;meta.main" datatype="char" arraysize="13" unit="h:m:s"'),
    ('ID="de" name="DEC" ucd="pos.eq.dec;meta.main" datatype="char" arraysize="13" unit="d:m:s"'),
    ('ID="class" name="Class" ucd="meta.code.class;src.class" datatype="char" arraysize="24"'),
    ('ID="magV" name="Mv" ucd="phot.mag;em.opt.V" datatype="float" width="13" precision="2"'),
    ('ID="errpos" name="ErrPos" ucd="stat.error.sys" datatype="float" unit="arcsec"'),
    ('ID="angdist" name="d" ucd="pos.ang" datatype="float" unit="arcsec"'),
    ('ID="dracosdec" name="dRAcosDec" ucd="pos.pm;pos.eq.ra" datatype="double" unit="arcsec/h"'),
    ('ID="ddec" name="dDEC" ucd="pos.pm;pos.eq.dec" datatype="double" unit="arcsec/h"'),
    ('ID="dgeo" name="Dgeo" ucd="phys.distance" datatype="double" unit="AU"'),
    ('ID="dhelio" name="Dhelio" ucd="phys.distance" datatype="double" unit="AU"'),
    ('ID="_raj2000" name="_RAJ2000" ucd="pos.eq.ra" datatype="double" unit="deg" type="hidden"'),
    ('ID="_decj2000" name="_DECJ2000" ucd="pos.eq.dec" datatype="double" unit="deg" type="hidden"'),
    (
        'ID="externallink" name="ExternalLink" ucd="meta.ref.url" datatype="char" arraysize="*" '
        'type="hidden"'
    ),
)


@dataclass
class Body:
    """A solar-system body placed at (ra, dec) degrees for the test's epoch."""

    name: str
    ra: float
    dec: float
    number: str = "-"
    kind: str = "MB>Middle"
    vmag: float = 19.5


def _row(body: Body, ra0: float, dec0: float) -> str:
    coord = SkyCoord(body.ra, body.dec, unit="deg")
    ra_text = coord.ra.to_string(unit="hourangle", sep=" ", precision=4, pad=True)
    dec_text = coord.dec.to_string(sep=" ", precision=3, alwayssign=True, pad=True)
    distance = float(_angular_distance_deg(ra0, dec0, body.ra, body.dec)) * 3600.0
    cells = (
        body.number,
        body.name,
        ra_text,
        dec_text,
        body.kind,
        f"{body.vmag:.2f}",
        "0.050",
        f"{distance:.3f}",
        "12.5",
        "-3.1",
        "1.82",
        "2.74",
        f"{body.ra:.9f}",
        f"{body.dec:.9f}",
        f"https://ssp.imcce.fr/webservices/ssodnet/api/ssocard/{body.name.replace(' ', '_')}",
    )
    return "<vot:TR>" + "".join(f"<vot:TD>{escape(c)}</vot:TD>" for c in cells) + "</vot:TR>\n"


def skybot_votable(bodies: list[Body], params: dict[str, str]) -> bytes:
    """The cone-search answer for ``params`` listing the bodies inside the cone."""
    ra0, dec0 = float(params["-ra"]), float(params["-dec"])
    radius = float(params["-rd"])
    inside = [b for b in bodies if _angular_distance_deg(ra0, dec0, b.ra, b.dec) <= radius]
    fields = "".join(f"<vot:FIELD {f}/>\n" for f in _FIELDS)
    rows = "".join(_row(b, ra0, dec0) for b in inside)
    text = (
        '<?xml version="1.0" encoding="UTF-8" ?>\n'
        f"<vot:VOTABLE {_NS}>\n"
        '<vot:COOSYS ID="J2000" equinox="J2000" epoch="J2000" system="eq_FK5"/>\n'
        '<vot:INFO ID="status" name="QUERY_STATUS" value="OK"/>\n'
        f'<vot:INFO ID="reqTarget" name="-c" value="{ra0}{dec0:+},rd={radius}"/>\n'
        f'<vot:INFO ID="reqEpoch" name="Epoch" value="{params.get("-ep", "")}"/>\n'
        '<vot:INFO ID="supplier" name="Supplier" value="SkySift test fixture"/>\n'
        '<vot:RESOURCE name="Skybot.ConeSearch">'
        "<vot:DESCRIPTION>SkyBoT - List of the targets located in the FOV</vot:DESCRIPTION>\n"
        '<vot:INFO name="QUERY_STATUS" value="OK"/>\n'
        f'<vot:TABLE ID="SkybotConeSearch_results" name="SkybotConeSearch" nrows="{len(inside)}">\n'
        f"{fields}<vot:DATA><vot:TABLEDATA>{rows}</vot:TABLEDATA></vot:DATA>\n"
        "</vot:TABLE>\n</vot:RESOURCE>\n</vot:VOTABLE>\n"
    )
    return text.encode()


def skybot_error(message: str) -> bytes:
    """SkyBoT's answer to a query it cannot serve (QUERY_STATUS=ERROR)."""
    return (
        '<?xml version="1.0" encoding="UTF-8" ?>\n'
        f"<vot:VOTABLE {_NS}>\n"
        f'<vot:INFO ID="status" name="QUERY_STATUS" value="ERROR">{escape(message)}</vot:INFO>\n'
        "</vot:VOTABLE>\n"
    ).encode()


class SkybotFixture(FixtureServer):
    """A local SkyBoT listing ``bodies`` (see :class:`Body`)."""

    def __init__(self, bodies: list[Body] | None = None, slow_seconds: float = 5.0):
        super().__init__(self._answer, self._answer_empty, slow_seconds)
        self.bodies: list[Body] = list(bodies or [])
        self.requested_epochs: list[float] = []

    @property
    def conesearch_url(self) -> str:
        return self.url + CONESEARCH_PATH

    def params(self, index: int = -1) -> dict[str, str]:
        return {k: v[-1] for k, v in self.requests[index].query.items()}

    def _answer(self, request: Request, empty: bool = False) -> Reply:
        if request.path != CONESEARCH_PATH:
            return Reply(404, b"not found: this fixture answers " + CONESEARCH_PATH.encode())
        params = {k: v[-1] for k, v in request.query.items()}
        missing = [k for k in ("-ra", "-dec", "-rd", "-ep") if k not in params]
        if missing:
            return Reply(200, skybot_error(f"missing {', '.join(missing)}"), VOTABLE_TYPE)
        try:
            self.requested_epochs.append(float(params["-ep"]))
        except ValueError:
            return Reply(200, skybot_error(f"bad epoch {params['-ep']!r}"), VOTABLE_TYPE)
        bodies = [] if empty else self.bodies
        return Reply(200, skybot_votable(bodies, params), VOTABLE_TYPE)

    def _answer_empty(self, request: Request) -> Reply:
        return self._answer(request, empty=True)


@pytest.fixture
def skybot_server():
    """A running :class:`SkybotFixture` with no bodies; the test adds what it needs."""
    with SkybotFixture() as server:
        yield server
