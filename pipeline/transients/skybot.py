"""Known solar-system bodies in the field at the time of the image: IMCCE SkyBoT.

One cone search covers every candidate (astroquery's
:meth:`~astroquery.imcce.SkybotClass.cone_search_async` builds the request); the
bodies it lists are then matched to the candidates within a radius (10″ by default).

We read the VOTable ourselves rather than through astroquery's parser so that an answer
with no body (no table, or a table without rows) is "nothing there" instead of an
error, and a ``QUERY_STATUS=ERROR`` answer is a failure. The server URL and timeout are
per client (astroquery reads them from its global configuration).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from io import BytesIO

import numpy as np
from astropy.table import Table

DEFAULT_SKYBOT_URL = "https://ssp.imcce.fr/webservices/skybot/api/conesearch.php"
DEFAULT_SKYBOT_TIMEOUT_S = 60.0
GEOCENTRE = "500"  # IAU observatory code of the Earth's centre
MAX_CONE_DEG = 10.0  # SkyBoT's largest cone


class SkybotError(Exception):
    """SkyBoT could not be asked or did not answer usefully; the message says why."""


@functools.cache
def _client_class():
    """astroquery's SkyBoT client sending to our URL with our timeout (lazy import)."""
    from astroquery.imcce import SkybotClass

    class _SkybotAtUrl(SkybotClass):
        def __init__(self, url: str, timeout: float):
            super().__init__()
            self._url = url
            self._timeout = timeout

        def _request(self, method, url, *args, **kwargs):
            kwargs["timeout"] = self._timeout
            kwargs["cache"] = False
            return super()._request(method, self._url, *args, **kwargs)

    return _SkybotAtUrl


@dataclass(frozen=True)
class Bodies:
    """Solar-system bodies SkyBoT lists in a cone (positions in degrees)."""

    name: np.ndarray
    number: np.ndarray
    kind: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    vmag: np.ndarray

    def __len__(self) -> int:
        return len(self.name)


def _empty() -> Bodies:
    nothing = np.zeros(0)
    text = np.zeros(0, dtype=str)
    return Bodies(text, text, text, nothing, nothing, nothing)


def _status(document) -> tuple[str, str]:
    infos = list(document.infos)
    for resource in document.resources:
        infos.extend(resource.infos)
    for info in infos:
        if (info.name or "").upper() == "QUERY_STATUS":
            return (info.value or "").upper(), str(info.content or "").strip()
    return "OK", ""


def _column(table: Table, *names: str) -> np.ndarray | None:
    for name in names:
        if name in table.colnames:
            return np.asarray(
                np.ma.filled(table[name], np.nan if table[name].dtype.kind == "f" else "")
            )
    return None


def _positions(table: Table) -> tuple[np.ndarray, np.ndarray]:
    ra = _column(table, "_RAJ2000", "_raj2000")
    dec = _column(table, "_DECJ2000", "_decj2000")
    if ra is not None and dec is not None:
        return ra.astype(float), dec.astype(float)
    from astropy.coordinates import SkyCoord

    ra_text, dec_text = _column(table, "RA", "ra"), _column(table, "DEC", "de")
    if ra_text is None or dec_text is None:
        raise SkybotError("the SkyBoT answer has no position columns")
    coords = SkyCoord(ra_text.astype(str), dec_text.astype(str), unit=("hourangle", "deg"))
    return coords.ra.deg, coords.dec.deg


def parse_skybot(content: bytes) -> Bodies:
    """Bodies in a SkyBoT cone-search answer (VOTable); empty when it lists none.

    Raises
    ------
    SkybotError
        The answer is not a VOTable, reports an error, or lacks positions.
    """
    from astropy.io import votable

    head = content[:500].lstrip()
    if head.startswith(b"#"):  # the text answer: "# Flag: 0" means nothing in the field
        if b"Flag: 0" in head:
            return _empty()
        raise SkybotError(f"SkyBoT answered {head[:120].decode('utf-8', 'replace')!r}")
    try:
        document = votable.parse(BytesIO(content), verify="ignore")
    except Exception as exc:  # any parser failure is a broken answer
        raise SkybotError(f"the SkyBoT answer cannot be read as a VOTable: {exc}") from exc
    status, message = _status(document)
    if status == "ERROR":
        raise SkybotError(f"SkyBoT reported an error: {message or 'QUERY_STATUS=ERROR'}")
    tables = list(document.iter_tables())
    if not tables:
        return _empty()
    table = tables[0].to_table(use_names_over_ids=True)
    if len(table) == 0:
        return _empty()
    ra, dec = _positions(table)
    name = _column(table, "Name", "name")
    number = _column(table, "Num", "num")
    kind = _column(table, "Class", "class")
    vmag = _column(table, "Mv", "magV")
    n = len(table)
    return Bodies(
        name.astype(str) if name is not None else np.full(n, "?"),
        number.astype(str) if number is not None else np.full(n, ""),
        kind.astype(str) if kind is not None else np.full(n, ""),
        ra,
        dec,
        vmag.astype(float) if vmag is not None else np.full(n, np.nan),
    )


def query_skybot(
    ra: float,
    dec: float,
    radius_deg: float,
    epoch_jd: float,
    *,
    url: str = DEFAULT_SKYBOT_URL,
    timeout: float = DEFAULT_SKYBOT_TIMEOUT_S,
    location: str = GEOCENTRE,
) -> Bodies:
    """Solar-system bodies within ``radius_deg`` of (ra, dec) at Julian date ``epoch_jd``.

    Raises
    ------
    SkybotError
        The service is unreachable, too slow, failing or answering nonsense.
    """
    import astropy.units as u
    import requests
    from astropy.coordinates import SkyCoord
    from astropy.time import Time

    client = _client_class()(url, timeout)
    radius = min(float(radius_deg), MAX_CONE_DEG)
    where = f"SkyBoT at {url}"
    try:
        response = client.cone_search_async(
            SkyCoord(ra, dec, unit="deg"),
            radius * u.deg,
            Time(epoch_jd, format="jd", scale="utc"),
            location=location,
            cache=False,
        )
    except requests.exceptions.Timeout as exc:
        raise SkybotError(f"{where} did not answer within {timeout:g} s") from exc
    except requests.exceptions.ConnectionError as exc:
        raise SkybotError(f"cannot connect to {where}") from exc
    except requests.exceptions.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        raise SkybotError(f"{where} answered HTTP {status}") from exc
    except requests.exceptions.RequestException as exc:
        raise SkybotError(f"the request to {where} failed: {exc}") from exc
    return parse_skybot(response.content)
