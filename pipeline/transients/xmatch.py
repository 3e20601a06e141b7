"""Cross-match of transient candidates with VizieR catalogues through CDS XMatch.

The candidates are uploaded as a table (``cand_id``, ``cand_ra``, ``cand_dec``) and
matched against ``vizier:<id>`` by astroquery's :class:`~astroquery.xmatch.XMatchClass`
within a radius; the answer holds every pair closer than the radius (``angDist`` in
arcsec, our columns, then the catalogue's). A matched candidate survives only when it is
brighter than every catalogue object within the radius by more than a margin (see
:func:`judge_matches`).

Catalogues are chosen by sky position as the reference system does (Gaia eDR3 always,
Pan-STARRS DR1 and SkyMapper DR4 where their footprints in
:data:`pipeline.catalogs.definitions.CATALOGS` cover the field).

Server URL and timeout. astroquery's XMatch reads both from class attributes; our
subclass sets them per instance, lists the server's tables without astroquery's disk
cache and with the timeout (astroquery sends that request without one).
"""

from __future__ import annotations

import contextlib
import functools
import io
from dataclasses import dataclass, field

import numpy as np
from astropy.table import Table

from pipeline.catalogs.definitions import CATALOGS, CatalogDefinition
from pipeline.catalogs.errors import CatalogError
from pipeline.catalogs.normalize import normalize
from pipeline.steps.base import ServiceUnavailable, StepError
from pipeline.transients.bands import comparison_magnitudes

DEFAULT_XMATCH_URL = "https://cdsxmatch.cds.unistra.fr/xmatch/api/v1/sync"
DEFAULT_XMATCH_TIMEOUT_S = 120.0
MAX_XMATCH_RADIUS_ARCSEC = 180.0  # the service's limit
XMATCH_CATALOGS = ("gaiaedr3", "ps1", "skymapper")  # offered, in the order they are queried
MIN_OFFSET_PAIRS = 10  # matches needed before a median offset is trusted
ID_COLUMN, RA_COLUMN, DEC_COLUMN = "cand_id", "cand_ra", "cand_dec"


def catalogs_for_field(dec: float, wanted: list[str] | None = None) -> list[str]:
    """Catalogue keys to cross-match a field at ``dec`` with (in query order).

    ``wanted`` restricts the automatic list; catalogues whose footprint misses the
    field are left out either way.
    """
    keys = [k for k in XMATCH_CATALOGS if wanted is None or k in wanted]
    return [k for k in keys if CATALOGS[k].covers(dec)]


@functools.cache
def _client_class():
    """astroquery's XMatch client with a per-instance URL and timeout (lazy import)."""
    from astroquery.utils import url_helpers

    with contextlib.redirect_stdout(io.StringIO()):  # it prints a note about 'regions'
        from astroquery.xmatch import XMatchClass

    class _XMatchAtUrl(XMatchClass):
        def __init__(self, url: str, timeout: float):
            super().__init__()
            self.URL = url
            self.TIMEOUT = timeout
            self._tables: list[str] | None = None

        def get_available_tables(self, *, cache: bool = False) -> list[str]:
            if self._tables is None:
                response = self._request(
                    "GET",
                    url_helpers.urljoin_keep_path(self.URL, "tables"),
                    {"action": "getVizieRTableNames", "RESPONSEFORMAT": "txt"},
                    timeout=self.TIMEOUT,
                    cache=False,
                )
                response.raise_for_status()
                self._tables = response.text.splitlines()
            return self._tables

    return _XMatchAtUrl


def xmatch_client(url: str = DEFAULT_XMATCH_URL, timeout: float = DEFAULT_XMATCH_TIMEOUT_S):
    """An XMatch client for the server at ``url`` (reuse it for several catalogues)."""
    if not url.startswith(("http://", "https://")):
        raise StepError(f"XMatch URL {url!r} is not an http(s) URL: give e.g. {DEFAULT_XMATCH_URL}")
    return _client_class()(url, timeout)


def _failure(exc: Exception, where: str, timeout: float) -> StepError:
    """The user-facing error for a failed XMatch request."""
    import requests
    from astroquery.exceptions import InvalidQueryError

    if isinstance(exc, requests.exceptions.Timeout):
        return ServiceUnavailable(
            f"{where} did not answer within {timeout:g} s; try again later or raise the "
            "XMatch timeout"
        )
    if isinstance(exc, requests.exceptions.ConnectionError):
        return ServiceUnavailable(f"cannot connect to {where}; try again later")
    if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
        status = exc.response.status_code
        if status < 500:
            return StepError(f"{where} answered HTTP {status}: check the XMatch URL")
        return ServiceUnavailable(f"{where} answered HTTP {status} (server error); try later")
    if isinstance(exc, InvalidQueryError):
        cause = exc.__cause__
        status = getattr(getattr(cause, "response", None), "status_code", 500)
        if status < 500:
            return StepError(f"{where} refused the cross-match: {exc}")
        return ServiceUnavailable(f"{where} failed (HTTP {status}): {exc}; try again later")
    text = str(exc)[:200] or type(exc).__name__
    return ServiceUnavailable(f"{where} sent an answer that cannot be read ({text})")


def query_xmatch(
    client, ra: np.ndarray, dec: np.ndarray, definition: CatalogDefinition, radius_arcsec: float
) -> Table:
    """All pairs (candidate, catalogue object) closer than ``radius_arcsec``.

    Parameters
    ----------
    client
        From :func:`xmatch_client`.
    ra, dec : numpy.ndarray
        Candidate positions, degrees; the row index is the id sent and returned.
    definition : CatalogDefinition
        The VizieR catalogue.
    radius_arcsec : float
        Match radius (at most 180″).

    Returns
    -------
    astropy.table.Table
        XMatch's answer: ``angDist`` (arcsec), ``cand_id`` and the catalogue columns.

    Raises
    ------
    ServiceUnavailable
        The service is unreachable, too slow, failing or answering nonsense.
    StepError
        The service refuses the query (unknown catalogue, wrong URL).
    """
    import astropy.units as u

    radius = min(float(radius_arcsec), MAX_XMATCH_RADIUS_ARCSEC)
    upload = Table({ID_COLUMN: np.arange(len(ra)), RA_COLUMN: ra, DEC_COLUMN: dec})
    where = f"CDS XMatch at {client.URL} ({definition.title})"
    try:
        answer = client.query(
            cat1=upload,
            cat2=f"vizier:{definition.vizier_id}",
            max_distance=radius * u.arcsec,
            colRA1=RA_COLUMN,
            colDec1=DEC_COLUMN,
            cache=False,
        )
    except ValueError as exc:  # astroquery: the table is not on this server
        if "not available" in str(exc):
            raise StepError(
                f"{where}: the server does not offer {definition.vizier_id}; choose other "
                "catalogues or another XMatch server"
            ) from exc
        raise _failure(exc, where, client.TIMEOUT) from exc
    except Exception as exc:  # requests, HTTP and VOTable errors all mean a failed query
        raise _failure(exc, where, client.TIMEOUT) from exc
    if len(answer) and (ID_COLUMN not in answer.colnames or "angDist" not in answer.colnames):
        raise ServiceUnavailable(f"{where} answered without the angDist/{ID_COLUMN} columns")
    return answer


@dataclass
class MatchVerdict:
    """Outcome of one catalogue's cross-match for the uploaded candidates.

    Attributes
    ----------
    rejected : numpy.ndarray of bool
        Per candidate: a catalogue object within the radius is not much fainter.
    sep, dmag : numpy.ndarray
        Per candidate: separation (arcsec) and magnitude difference (ours − catalogue,
        AB, median offset removed; negative = brighter) of the nearest match, NaN when
        none.
    band : numpy.ndarray of str
        Catalogue band the nearest match was compared in.
    offset : float
        Median of ours − catalogue over the matched pairs (0 when not removed).
    bands_used : dict
        Band → number of pairs compared in it.
    """

    rejected: np.ndarray
    sep: np.ndarray
    dmag: np.ndarray
    band: np.ndarray
    offset: float = 0.0
    bands_used: dict[str, int] = field(default_factory=dict)


def _normalized_rows(answer: Table, definition: CatalogDefinition) -> Table:
    """The matched rows in our layout (positions are ours: only magnitudes matter)."""
    rows = Table({"ra": np.zeros(len(answer)), "dec": np.zeros(len(answer))})
    for source in definition.bands:
        for name in source.columns:
            if name in answer.colnames:
                rows[name] = answer[name]
    try:
        return normalize(rows, definition, generic_positions=True)
    except CatalogError:  # none of the catalogue's magnitude columns in the answer
        return Table({"ra": rows["ra"], "dec": rows["dec"]})


def judge_matches(
    answer: Table,
    n_candidates: int,
    definition: CatalogDefinition,
    our_mag_ab: np.ndarray | None,
    image_band: str,
    mag_diff: float,
    median_offset: bool,
) -> MatchVerdict:
    """Decide which candidates a catalogue explains.

    A candidate is rejected when any catalogue object within the radius is not fainter
    than it by more than ``mag_diff`` (ours − catalogue > −mag_diff), or has no
    magnitude to compare with; ``mag_diff = 0`` (or no calibrated magnitudes) rejects
    every positional match. With ``median_offset`` and at least
    :data:`MIN_OFFSET_PAIRS` comparable pairs, the median of ours − catalogue is removed
    first: it absorbs a zero-point or band difference shared by the ordinary stars.
    """
    ids = np.asarray(answer[ID_COLUMN], int) if len(answer) else np.zeros(0, int)
    sep = np.asarray(answer["angDist"], float) if len(answer) else np.zeros(0)
    comparison = comparison_magnitudes(_normalized_rows(answer, definition), definition, image_band)
    if our_mag_ab is not None and len(ids):
        dmag = our_mag_ab[ids] - comparison.mag
    else:
        dmag = np.full(len(ids), np.nan)
    finite = np.isfinite(dmag)
    offset = 0.0
    if median_offset and finite.sum() >= MIN_OFFSET_PAIRS:
        offset = float(np.median(dmag[finite]))
        dmag = dmag - offset
    if mag_diff > 0 and our_mag_ab is not None:
        explains = ~(dmag < -mag_diff)  # NaN (nothing to compare) explains it too
    else:
        explains = np.ones(len(ids), bool)
    rejected = np.zeros(n_candidates, bool)
    rejected[ids[explains]] = True
    best_sep = np.full(n_candidates, np.nan)
    best_dmag = np.full(n_candidates, np.nan)
    best_band = np.full(n_candidates, "", dtype=object)
    for k in np.argsort(-sep, kind="stable"):  # nearest written last, so it wins
        best_sep[ids[k]], best_dmag[ids[k]] = sep[k], dmag[k]
        best_band[ids[k]] = comparison.band[k]
    used, counts = np.unique(comparison.band[finite], return_counts=True)
    return MatchVerdict(
        rejected,
        best_sep,
        best_dmag,
        best_band.astype(str),
        offset,
        {str(b): int(c) for b, c in zip(used, counts, strict=True) if b},
    )
