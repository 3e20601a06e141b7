"""Names to sky positions: CDS Sesame (SIMBAD, then NED, VizieR), the TNS, the Fink resolver.

Clients (httpx, real endpoints, configurable base URLs and timeout):

* **Sesame** — ``GET <sesame_url>/-oxp/SNV?<name>``; the XML answer holds one
  ``<Resolver>`` per database that knows the name, with ``<jradeg>``, ``<jdedeg>``,
  ``<oname>`` and ``<otype>``. astroquery has no Sesame client (its SIMBAD module speaks
  TAP through pyvo, without a per-request timeout and only to the two listed mirrors),
  and astropy's ``get_icrs_coordinates`` keeps the URL and timeout in process-wide
  state, so this small client is ours.
* **TNS** — ``POST <tns_url>/api/get/object`` with the bot's ``tns_marker`` User-Agent
  and the form fields ``api_key`` and ``data`` (JSON ``{"objname": "2024abc"}``); the
  JSON answer carries ``data.reply.radeg``/``decdeg``/``objname``/``name_prefix``.
* **Fink** — without a TNS bot: ``POST <fink_url>/api/v1/resolver`` with JSON
  ``{"resolver": "tns", "name": "SN 2024abc"}``; the answer is a list of rows with
  ``d:fullname``, ``d:ra``, ``d:declination`` (a prefix search: only the exact
  designation is accepted).

Order. A TNS designation (``2024abc``, ``SN 2024abc``) is asked of the TNS (or Fink)
first, then of Sesame; any other name of Sesame only. Positions found are cached on
disk by query (when a cache folder is given) so that re-running a step asks no service.
"""

from __future__ import annotations

import json
import logging
import math
import os
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import quote

import httpx

from pipeline.targets.config import TargetsConfig
from pipeline.targets.errors import ResolverUnavailable, TargetError, TargetNotFound
from pipeline.targets.parse import TargetSpec, parse_target

log = logging.getLogger("skysift.targets")

SESAME_QUERY = "-oxp/SNV"  # XML output; SIMBAD first, then NED, then VizieR
TNS_OBJECT_PATH = "/api/get/object"
FINK_RESOLVER_PATH = "/api/v1/resolver"
FINK_PREFIXES = ("AT", "SN")  # an AT is renamed SN when classified: try both
USER_AGENT = "SkySift forced photometry"
CACHE_FILE = "target_names.json"
# Sesame's resolver names start with the database letter: "S=Simbad", "N=NED", "V=VizieR".
SESAME_DATABASES = {"S": "SIMBAD", "N": "NED", "V": "VizieR"}


@dataclass(frozen=True)
class Resolution:
    """Where a name points.

    Attributes
    ----------
    ra, dec : float
        Degrees, ICRS.
    name : str
        The service's own name for the object (``"M 31"``, ``"SN 2024abc"``).
    source : str
        Who said so: ``"SIMBAD"``, ``"NED"``, ``"VizieR"`` (through Sesame), ``"TNS"``,
        ``"Fink"``, or ``"coordinates"`` for a position typed in.
    otype : str or None
        Object type when the service gives one.
    """

    ra: float
    dec: float
    name: str
    source: str
    otype: str | None = None


def coordinate_name(ra: float, dec: float) -> str:
    """A J2000-style name for a position, ``J100024.10+201230.0``."""
    hours = (ra % 360.0) / 15.0
    h, rest = divmod(round(hours * 360000), 360000)
    m, s = divmod(rest, 6000)
    sign = "-" if dec < 0 else "+"
    d, rest = divmod(round(abs(dec) * 36000), 36000)
    dm, ds = divmod(rest, 600)
    return f"J{h % 24:02d}{m:02d}{s / 100:05.2f}{sign}{d:02d}{dm:02d}{ds / 10:04.1f}"


# --- HTTP with errors a user can act on ----------------------------------------------------


def _reason(exc: httpx.HTTPError, timeout: float) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer within {timeout:g} s"
    text = str(exc) or type(exc).__name__
    if "refused" in text.lower():
        return "connection refused"
    return text[:200]


def _request(
    client: httpx.Client, method: str, url: str, service: str, timeout: float, **kwargs
) -> httpx.Response:
    """One request; transport failures and HTTP 5xx/429 become :class:`ResolverUnavailable`."""
    try:
        response = client.request(method, url, timeout=timeout, **kwargs)
    except httpx.HTTPError as exc:
        raise ResolverUnavailable(
            f"{service} is unreachable: {_reason(exc, timeout)} ({url.split('?')[0]}); try "
            "again later, or give the target's coordinates"
        ) from exc
    if response.status_code == 429:
        raise ResolverUnavailable(
            f"{service} is unreachable: too many requests (HTTP 429, its rate limit); try "
            "again in a minute"
        )
    if response.status_code >= 500:
        raise ResolverUnavailable(
            f"{service} is unreachable: it answered HTTP {response.status_code} (server "
            "error); try again later, or give the target's coordinates"
        )
    return response


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


# --- Sesame ----------------------------------------------------------------------------------


def parse_sesame(content: bytes, name: str) -> Resolution | None:
    """The first resolver's position in a Sesame XML answer; None when nothing was found.

    Raises
    ------
    ValueError
        If the answer is not Sesame XML.
    """
    try:
        root = ElementTree.fromstring(content)
    except ElementTree.ParseError as exc:
        raise ValueError(f"the answer is not XML ({exc})") from None
    if root.tag != "Sesame":
        raise ValueError(f"the answer is not a Sesame document (root <{root.tag}>)")
    for resolver in root.iter("Resolver"):
        ra = _number(resolver.findtext("jradeg"))
        dec = _number(resolver.findtext("jdedeg"))
        if ra is None or dec is None:
            continue
        label = (resolver.get("name") or "S")[:1].upper()
        oname = " ".join((resolver.findtext("oname") or name).split())
        otype = (resolver.findtext("otype") or "").strip() or None
        return Resolution(ra, dec, oname, SESAME_DATABASES.get(label, "Sesame"), otype)
    return None


def query_sesame(
    name: str, *, url: str, timeout: float, client: httpx.Client | None = None
) -> Resolution:
    """Resolve a name with CDS Sesame (SIMBAD, then NED, then VizieR).

    Raises
    ------
    TargetNotFound
        No database knows the name.
    ResolverUnavailable
        Sesame did not answer, answered HTTP 5xx or something unreadable.
    TargetError
        HTTP 4xx: the configured URL is wrong.
    """
    service = f"SIMBAD (CDS Sesame at {url})"
    with _client(client) as http:
        response = _request(http, "GET", f"{url}/{SESAME_QUERY}?{quote(name)}", service, timeout)
    if response.status_code >= 400:
        raise TargetError(
            f"{service} answered HTTP {response.status_code}: check the sesame_url setting"
        )
    try:
        found = parse_sesame(response.content, name)
    except ValueError as exc:
        raise ResolverUnavailable(f"{service} is unreachable: {exc}") from None
    if found is None:
        raise TargetNotFound(
            f"SIMBAD knows no object named {name!r} (nor do NED and VizieR, asked through CDS "
            "Sesame): check the spelling, or give the coordinates"
        )
    return found


# --- TNS ------------------------------------------------------------------------------------


def tns_marker(bot_id: str, bot_name: str) -> str:
    """The User-Agent by which the TNS recognises a bot."""
    tns_id: int | str = int(bot_id) if str(bot_id).isdigit() else str(bot_id)
    return "tns_marker" + json.dumps({"tns_id": tns_id, "type": "bot", "name": bot_name})


def _tns_json(response: httpx.Response, service: str) -> dict:
    try:
        body = response.json()
    except ValueError:
        raise ResolverUnavailable(
            f"{service} is unreachable: it answered HTTP {response.status_code} with something "
            "that is not JSON"
        ) from None
    return body if isinstance(body, dict) else {}


def query_tns(
    designation: str,
    *,
    url: str,
    bot_id: str,
    bot_name: str,
    api_key: str,
    timeout: float,
    client: httpx.Client | None = None,
) -> Resolution:
    """Ask the TNS API for an object by designation (``"2024abc"``, no prefix).

    Raises
    ------
    TargetNotFound
        The TNS has no such object.
    TargetError
        The TNS refused the bot credentials (HTTP 401/403) or the request (other 4xx).
    ResolverUnavailable
        The TNS did not answer, answered HTTP 5xx/429 or something that is not JSON.
    """
    service = "the TNS"
    form = {
        "api_key": api_key,
        "data": json.dumps({"objname": designation, "photometry": "0", "spectra": "0"}),
    }
    with _client(client) as http:
        response = _request(
            http,
            "POST",
            url + TNS_OBJECT_PATH,
            service,
            timeout,
            data=form,
            headers={"User-Agent": tns_marker(bot_id, bot_name)},
        )
    if response.status_code in (401, 403):
        raise TargetError(
            f"the TNS refused the bot credentials (HTTP {response.status_code}): check "
            "tns_bot_id, tns_bot_name and tns_api_key, or leave them empty to use the Fink "
            "resolver"
        )
    body = _tns_json(response, service)
    data = body.get("data")
    reply = data.get("reply") if isinstance(data, dict) else None
    if isinstance(reply, dict):
        ra, dec = _number(reply.get("radeg")), _number(reply.get("decdeg"))
        if ra is not None and dec is not None:
            name = f"{reply.get('name_prefix') or ''} {reply.get('objname') or designation}"
            return Resolution(ra, dec, name.strip(), "TNS", _tns_type(reply))
    if response.status_code >= 400 and response.status_code != 404:
        message = body.get("id_message") or "no message"
        raise TargetError(
            f"the TNS refused the request (HTTP {response.status_code}, {message}): check the "
            "tns_url setting"
        )
    raise TargetNotFound(
        f"the TNS knows no object named {designation!r}: check the name, or give the coordinates"
    )


def _tns_type(reply: dict) -> str | None:
    kind = reply.get("object_type")
    if isinstance(kind, dict):
        return kind.get("name") or None
    return str(kind) if kind else None


# --- Fink -----------------------------------------------------------------------------------


def _designation_of(fullname: str) -> str:
    """``"SN 2024abc"`` → ``"2024abc"``."""
    return fullname.split()[-1] if fullname.split() else ""


def query_fink(
    designation: str,
    prefix: str | None = None,
    *,
    url: str,
    timeout: float,
    client: httpx.Client | None = None,
) -> Resolution:
    """Ask the Fink resolver for a TNS object (no TNS bot needed).

    The given prefix is tried first, then AT and SN (a transient keeps its designation
    when it is classified, but changes its prefix).

    Raises
    ------
    TargetNotFound, ResolverUnavailable
    """
    service = "the Fink resolver"
    prefixes = [p for p in dict.fromkeys([prefix, *FINK_PREFIXES]) if p]
    with _client(client) as http:
        for candidate in prefixes:
            payload = {"resolver": "tns", "name": f"{candidate} {designation}"}
            response = _request(
                http, "POST", url + FINK_RESOLVER_PATH, service, timeout, json=payload
            )
            if response.status_code >= 400:
                raise TargetError(
                    f"{service} answered HTTP {response.status_code}: check the fink_url setting"
                )
            try:
                rows = response.json()
            except ValueError:
                raise ResolverUnavailable(
                    f"{service} is unreachable: its answer is not JSON"
                ) from None
            for row in rows if isinstance(rows, list) else []:
                fullname = str(row.get("d:fullname", ""))
                if _designation_of(fullname).lower() != designation.lower():
                    continue  # Fink searches by prefix: 2024ab also finds 2024abc
                ra, dec = _number(row.get("d:ra")), _number(row.get("d:declination"))
                if ra is not None and dec is not None:
                    return Resolution(ra, dec, fullname, "Fink", row.get("d:type") or None)
    raise TargetNotFound(
        f"the TNS (asked through the Fink resolver) knows no object named {designation!r}: "
        "check the name, or give the coordinates"
    )


# --- cache and the whole chain --------------------------------------------------------------


@contextmanager
def _client(client: httpx.Client | None) -> Iterator[httpx.Client]:
    """Use the given httpx client, or a short-lived one of our own."""
    if client is not None:
        yield client
        return
    with httpx.Client(headers={"User-Agent": USER_AGENT}, follow_redirects=True) as own:
        yield own


class NameCache:
    """Resolved names in one JSON file (query → position), written atomically."""

    def __init__(self, folder: str | os.PathLike):
        self.path = Path(folder) / CACHE_FILE

    def _load(self) -> dict:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, key: str) -> Resolution | None:
        entry = self._load().get(key)
        try:
            return Resolution(**entry) if isinstance(entry, dict) else None
        except TypeError:  # an entry of an older layout
            return None

    def put(self, key: str, value: Resolution) -> None:
        data = self._load()
        data[key] = asdict(value)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
            temporary.write_text(json.dumps(data, indent=1))
            temporary.replace(self.path)
        except OSError as exc:  # a cache that cannot be written costs only speed
            log.warning("name cache %s not written: %s", self.path, exc)


class TargetResolver:
    """Resolves target names with the configured services (a context manager).

    ``warnings`` collects what the user should know (a service down but another one
    answered).
    """

    def __init__(
        self,
        config: TargetsConfig,
        *,
        cache_dir: str | os.PathLike | None = None,
        logger: logging.Logger | None = None,
    ):
        self.config = config
        self.cache = NameCache(cache_dir) if cache_dir else None
        self.log = logger or log
        self.warnings: list[str] = []
        self._http = httpx.Client(headers={"User-Agent": USER_AGENT}, follow_redirects=True)

    def __enter__(self) -> TargetResolver:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _cached(self, key: str, ask) -> Resolution:
        found = self.cache.get(key) if self.cache else None
        if found is not None:
            self.log.info("%s: %s (cached)", key, found.name)
            return found
        found = ask()
        if self.cache:
            self.cache.put(key, found)
        return found

    def sesame(self, name: str) -> Resolution:
        cfg = self.config
        return self._cached(
            f"sesame:{' '.join(name.split()).lower()}",
            lambda: query_sesame(
                name, url=cfg.sesame_url, timeout=cfg.resolver_timeout, client=self._http
            ),
        )

    def tns(self, designation: str, prefix: str | None) -> Resolution:
        cfg = self.config
        if cfg.has_tns_bot:
            return self._cached(
                f"tns:{designation}",
                lambda: query_tns(
                    designation,
                    url=cfg.tns_url,
                    bot_id=cfg.tns_bot_id or "",
                    bot_name=cfg.tns_bot_name or "",
                    api_key=cfg.tns_api_key or "",
                    timeout=cfg.resolver_timeout,
                    client=self._http,
                ),
            )
        return self._cached(
            f"tns:{designation}",
            lambda: query_fink(
                designation,
                prefix,
                url=cfg.fink_url,
                timeout=cfg.resolver_timeout,
                client=self._http,
            ),
        )

    def resolve(self, spec: TargetSpec) -> Resolution:
        """Position of a parsed target of kind ``"sky"`` or ``"name"``.

        Raises
        ------
        TargetNotFound, ResolverUnavailable, TargetError
        """
        if spec.kind == "sky":
            return Resolution(spec.ra, spec.dec, coordinate_name(spec.ra, spec.dec), "coordinates")
        if spec.kind != "name" or not spec.name:
            raise ValueError(f"{spec.describe()} has no name or coordinates to resolve")
        if not spec.tns_designation:
            return self.sesame(spec.name)
        try:
            return self.tns(spec.tns_designation, spec.tns_prefix)
        except (TargetNotFound, ResolverUnavailable) as exc:
            tns_problem = exc
        self.log.info("%s: %s; asking SIMBAD", spec.describe(), tns_problem)
        try:
            found = self.sesame(spec.name)
        except TargetNotFound:
            if isinstance(tns_problem, ResolverUnavailable):
                raise tns_problem from None
            raise TargetNotFound(
                f"neither the TNS nor SIMBAD knows an object named {spec.name!r}: check the "
                "spelling, or give the coordinates"
            ) from None
        except ResolverUnavailable as sesame_down:
            # the more useful of the two failures: a service to retry
            if isinstance(tns_problem, ResolverUnavailable):
                raise tns_problem from None
            raise sesame_down from None
        if isinstance(tns_problem, ResolverUnavailable):
            self.warnings.append(f"{spec.describe()}: {tns_problem}; SIMBAD's position is used")
        return found


def resolve_name(
    text: str,
    config: TargetsConfig | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    logger: logging.Logger | None = None,
) -> Resolution:
    """Sky position of one target line (coordinates, a SIMBAD or TNS name) in one call.

    Uses the services of ``config`` (the real ones by default). Other modules use it to
    let users type a name wherever a sky position is asked for.

    Raises
    ------
    TargetError
        An unreadable line, a pixel position, or a name no service knows.
    ResolverUnavailable
        The service needed is unreachable.
    """
    spec = parse_target(text)
    if spec.kind == "pixel":
        raise TargetError(f"{spec.describe()} is a pixel position; a sky position is needed here")
    with TargetResolver(config or TargetsConfig(), cache_dir=cache_dir, logger=logger) as resolver:
        return resolver.resolve(spec)
