"""Cone queries to VizieR through astroquery, with a configurable server URL.

astroquery builds the query (``-source``, ``-c``/``-c.rd``, ``-out``, ``-out.add``,
``-out.max``, column constraints such as ``rmag=<20``) and sends it; we read the VOTable
it gets back with :mod:`astropy.io.votable` so that VizieR's own error and overflow
notices (``INFO name="QUERY_STATUS"``) are seen rather than silently turned into an
empty result.

Server URL. astroquery 0.4.x has a setting for the VizieR *host* only
(``astroquery.vizier.conf.server`` / ``VizierClass(vizier_server=...)``) and always
prepends ``https://``. Our subclass of ``VizierClass`` overrides the one method that builds the
URL so a full base URL works too (``https://vizier.cfa.harvard.edu``, an institute
mirror, or ``http://127.0.0.1:<port>`` in tests); payload, request and timeout
handling stay astroquery's.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from io import BytesIO
from urllib.parse import urlsplit

from astropy.table import Table, vstack

from pipeline.catalogs.definitions import CatalogDefinition
from pipeline.catalogs.errors import CatalogError, ServiceUnavailable

log = logging.getLogger("skysift.catalogs")

DEFAULT_VIZIER_URL = "https://vizier.cds.unistra.fr"
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_ROW_LIMIT = 200_000
MAX_ERROR_LINES = 4
# Words in a VizieR error that blame the query (retrying cannot help) rather than the service.
REFUSAL_WORDS = ("unknown column", "constraint", "syntax")


@dataclass
class VizierAnswer:
    """A parsed VizieR answer: the table (possibly empty) and VizieR's notices."""

    table: Table
    url: str
    warnings: list[str] = field(default_factory=list)


@functools.cache
def _client_class():
    """astroquery's VizieR client with a full base URL (imported lazily: slow import)."""
    from astroquery.vizier import VizierClass

    class _VizierAtUrl(VizierClass):
        def __init__(self, base_url: str, **kwargs):
            super().__init__(vizier_server=urlsplit(base_url).netloc, **kwargs)
            self._base_url = base_url.rstrip("/")

        def _server_to_url(self, return_type="votable"):
            return f"{self._base_url}/viz-bin/{return_type}"

    return _VizierAtUrl


def _client(server_url: str, columns: list[str], constraints: dict, timeout: float, rows: int):
    parts = urlsplit(server_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CatalogError(
            f"VizieR server URL {server_url!r} is not an http(s) URL: give e.g. "
            f"{DEFAULT_VIZIER_URL}"
        )
    return _client_class()(
        server_url, columns=columns, column_filters=constraints, timeout=timeout, row_limit=rows
    )


def limit_constraint(mag_limit: float) -> str:
    """VizieR constraint text for "fainter stars left out", e.g. ``"<20"``."""
    return f"<{mag_limit:g}"


def query_vizier(
    definition: CatalogDefinition,
    ra: float,
    dec: float,
    radius_deg: float,
    *,
    mag_limit: float | None = None,
    filters: Mapping[str, str] | None = None,
    server_url: str = DEFAULT_VIZIER_URL,
    timeout: float = DEFAULT_TIMEOUT_S,
    row_limit: int = DEFAULT_ROW_LIMIT,
) -> VizierAnswer:
    """Ask VizieR for the catalogue's stars in a cone.

    Parameters
    ----------
    definition : CatalogDefinition
        The catalogue (VizieR id, columns, limit column).
    ra, dec, radius_deg : float
        Cone, degrees.
    mag_limit : float, optional
        Server-side cut ``<limit_column> < mag_limit``.
    filters : mapping, optional
        Extra VizieR column constraints, e.g. ``{"Qual": "<64"}``.
    server_url : str
        Base URL of the VizieR server.
    timeout : float
        Seconds to wait for the connection and for each read.
    row_limit : int
        ``-out.max``; -1 for unlimited.

    Returns
    -------
    VizierAnswer
        The raw table in VizieR's layout (may be empty) and notices such as truncation.

    Raises
    ------
    ServiceUnavailable
        The server is unreachable, too slow, answers HTTP 5xx, something that is not a
        VOTable, or a VOTable reporting an error of its own.
    CatalogError
        The server answers HTTP 4xx (wrong URL), the URL is malformed, or VizieR
        refuses the query itself (an unknown column in ``filters``).
    """
    import requests
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    constraints = dict(filters or {})
    if mag_limit is not None:
        constraints[definition.limit_column] = limit_constraint(mag_limit)
    client = _client(server_url, definition.vizier_columns(), constraints, timeout, row_limit)
    where = f"VizieR at {server_url}"
    try:
        response = client.query_region_async(
            SkyCoord(ra, dec, unit="deg", frame="icrs"),
            radius=radius_deg * u.deg,
            catalog=definition.vizier_id,
            cache=False,
            frame="icrs",
        )
    except requests.exceptions.Timeout as exc:
        raise ServiceUnavailable(
            f"{where} did not answer within {timeout:g} s ({definition.title}); try again "
            "later, raise the timeout, or use a local catalogue file"
        ) from exc
    except requests.exceptions.ConnectionError as exc:
        raise ServiceUnavailable(
            f"cannot connect to {where} ({_reason(exc)}); try again later, choose another "
            "VizieR mirror, or use a local catalogue file"
        ) from exc
    except requests.exceptions.RequestException as exc:
        raise ServiceUnavailable(f"the request to {where} failed: {_reason(exc)}") from exc
    _check_status(response, where)
    return _parse_answer(response.content, definition, where)


def _reason(exc: Exception) -> str:
    text = str(exc.args[0]) if exc.args else type(exc).__name__
    if "Connection refused" in text or "ConnectionRefused" in text:
        return "connection refused"
    return text[:200]


def _check_status(response, where: str) -> None:
    status = response.status_code
    if status >= 500:
        raise ServiceUnavailable(f"{where} answered HTTP {status} (server error); try again later")
    if status >= 400:
        raise CatalogError(
            f"{where} answered HTTP {status}: check the VizieR server URL in the settings"
        )


def _parse_answer(content: bytes, definition: CatalogDefinition, where: str) -> VizierAnswer:
    from astropy.io import votable

    head = content[:2000].lstrip()
    if not (head.startswith(b"<?xml") or b"<VOTABLE" in head.upper()):
        raise ServiceUnavailable(
            f"{where} answered with something that is not a VOTable "
            f"({head[:80].decode('utf-8', 'replace')!r}); it may be under maintenance"
        )
    try:
        document = votable.parse(BytesIO(content), verify="ignore")
    except Exception as exc:  # any parser failure means a broken answer
        raise ServiceUnavailable(f"{where} sent a VOTable that cannot be read: {exc}") from exc
    infos = list(_all_infos(document))
    errors = _error_notices(infos)
    if errors:
        text = "; ".join(errors)
        if any(word in text.lower() for word in REFUSAL_WORDS):  # our query, not the service
            raise CatalogError(
                f"{where} refused the query: {text}; check the extra column constraints"
            )
        raise ServiceUnavailable(f"{where} reported an error: {text}")
    warnings = []
    if any(_is_status(info, "OVERFLOW") for info in infos):
        warnings.append(
            f"{definition.title}: VizieR truncated the answer at its row limit; the faintest "
            "or outermost stars may be missing (lower the magnitude limit or the radius)"
        )
    table_id = definition.vizier_id.replace("/", "_")
    tables = [
        t.to_table(use_names_over_ids=True)
        for t in document.iter_tables()
        if definition.vizier_id == t.name or table_id == t.ID
    ]
    tables = [t for t in tables if len(t)]
    if not tables:
        return VizierAnswer(Table(), where, warnings)
    table = tables[0] if len(tables) == 1 else vstack(tables, metadata_conflicts="silent")
    return VizierAnswer(table, where, warnings)


def _all_infos(document):
    yield from document.infos
    stack = list(document.resources)
    while stack:
        resource = stack.pop()
        yield from resource.infos
        for table in resource.tables:
            yield from getattr(table, "infos", [])
        stack.extend(resource.resources)


def _is_status(info, value: str) -> bool:
    return (info.name or "").upper() == "QUERY_STATUS" and (info.value or "").upper() == value


def _error_notices(infos) -> list[str]:
    if not any(_is_status(info, "ERROR") for info in infos):
        return []
    lines = []
    for info in infos:
        if (info.name or "").lower() == "error" and (info.value or "").strip():
            text = info.value.strip()
            if text not in lines:
                lines.append(text)
    if not lines:
        lines = [str(info.content or "").strip() for info in infos if _is_status(info, "ERROR")]
    return lines[:MAX_ERROR_LINES] or ["QUERY_STATUS=ERROR"]
