"""One entry point for reference catalogues: :func:`get_catalog`.

VizieR (through astroquery) or a local file, the same normalised table either way:
``ra``/``dec`` in degrees, ``<band>mag``/``e_<band>mag`` for the catalogue's bands and,
unless ``derive=False``, every calibration band the published transformations reach
(see :mod:`pipeline.catalogs.transform`).

VizieR queries are snapped to a grid (:func:`pipeline.catalogs.cone.snap_cone`) and the
normalised answer is kept in ``cache_dir``; a repeated or nearby request reads the
cache. Empty or failed answers are never cached.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from astropy.table import Table

from pipeline.catalogs.cache import (
    cache_key,
    cache_path,
    cached_warnings,
    read_cached,
    write_cached,
)
from pipeline.catalogs.cone import Cone, check_cone, in_cone, snap_cone
from pipeline.catalogs.definitions import (
    DEC_COLUMN,
    RA_COLUMN,
    CatalogDefinition,
    get_definition,
    mag_column,
)
from pipeline.catalogs.errors import CatalogError
from pipeline.catalogs.local import read_catalog_file
from pipeline.catalogs.normalize import limit_band, normalize
from pipeline.catalogs.transform import derive_bands
from pipeline.catalogs.vizier import (
    DEFAULT_ROW_LIMIT,
    DEFAULT_TIMEOUT_S,
    DEFAULT_VIZIER_URL,
    query_vizier,
)

log = logging.getLogger("skysift.catalogs")


def get_catalog(
    name: str,
    ra: float,
    dec: float,
    radius_deg: float,
    mag_limit: float | None = None,
    filters: Mapping[str, str] | None = None,
    cache_dir: str | Path | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    *,
    server_url: str = DEFAULT_VIZIER_URL,
    local_file: str | Path | None = None,
    row_limit: int = DEFAULT_ROW_LIMIT,
    derive: bool = True,
    prefer: Sequence[str] = (),
    logger: logging.Logger | None = None,
) -> Table:
    """Stars of a reference catalogue in a cone, in our normalised layout.

    Parameters
    ----------
    name : str
        Catalogue key, one of :data:`pipeline.catalogs.definitions.CATALOG_NAMES`.
    ra, dec : float
        Cone centre, degrees (ICRS).
    radius_deg : float
        Cone radius, degrees (at most 5).
    mag_limit : float, optional
        Faint limit applied to the catalogue's limit column (``rmag`` for PS1, ``Gmag``
        for Gaia ...), on the server for VizieR.
    filters : mapping, optional
        Extra VizieR column constraints (``{"Qual": "<64"}``); ignored for local files.
    cache_dir : path, optional
        Folder of the on-disk cache of VizieR answers; None disables caching.
    timeout : float
        Seconds to wait for VizieR (connection and each read).
    server_url : str
        VizieR base URL (a mirror, or a local server in tests).
    local_file : path, optional
        Read this file (in the catalogue's layout) instead of querying VizieR.
    row_limit : int
        Largest number of rows VizieR may return (-1: unlimited).
    derive : bool
        Add the calibration bands the published transformations can derive.
    prefer : sequence of str
        Transformation sources to prefer (see :func:`pipeline.catalogs.transform.derive_bands`).
    logger : logging.Logger, optional
        Where to log (e.g. a step's ``ctx.log``).

    Returns
    -------
    astropy.table.Table
        One row per star within ``radius_deg``; ``meta`` holds ``catalog``, ``title``,
        ``source`` (``vizier:<url>``, ``cache:<file>`` or ``file:<path>``), ``query``,
        ``derived`` (band → relations) and ``warnings`` (list of str).

    Raises
    ------
    CatalogError
        Bad arguments, a field outside the catalogue's footprint (with the catalogues to
        try instead), no stars in the cone, or an unusable local file.
    ServiceUnavailable
        VizieR is down, too slow or answers with an error; the same call may work later.
    """
    logger = logger or log
    definition = get_definition(name)
    cone = check_cone(ra, dec, radius_deg)
    mag_limit = _check_limit(mag_limit)
    if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
        raise CatalogError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if isinstance(row_limit, bool) or not isinstance(row_limit, int) or row_limit == 0:
        raise CatalogError(f"row_limit must be a positive integer or -1, got {row_limit!r}")
    warnings: list[str] = []
    if local_file is not None:
        table = _from_file(local_file, definition, mag_limit)
    else:
        table = _from_vizier(
            definition,
            cone,
            mag_limit=mag_limit,
            filters=_check_filters(filters),
            cache_dir=cache_dir,
            timeout=float(timeout),
            server_url=server_url,
            row_limit=row_limit,
            warnings=warnings,
            logger=logger,
        )
    source = table.meta.get("source", "")
    table = table[in_cone(table[RA_COLUMN], table[DEC_COLUMN], cone)]
    if len(table) == 0:
        raise CatalogError(_empty_message(definition, cone, mag_limit))
    if derive:
        derive_bands(table, prefer=prefer)
    table.meta.update(
        catalog=definition.key,
        title=definition.title,
        vizier_id=definition.vizier_id,
        source=source,
        query={"ra": cone.ra, "dec": cone.dec, "radius_deg": cone.radius, "mag_limit": mag_limit},
        warnings=warnings,
    )
    table.meta.setdefault("derived", {})
    return table


def _check_limit(mag_limit: float | None) -> float | None:
    if mag_limit is None:
        return None
    try:
        value = float(mag_limit)
    except (TypeError, ValueError) as exc:
        raise CatalogError(f"magnitude limit {mag_limit!r} is not a number") from exc
    if not math.isfinite(value):
        raise CatalogError(f"magnitude limit must be finite, got {mag_limit!r}")
    return value


def _check_filters(filters: Mapping[str, str] | None) -> dict[str, str]:
    if filters is not None and not isinstance(filters, Mapping):
        raise CatalogError(
            f"filters must be a mapping of VizieR column constraints such as "
            f"{{'Qual': '<64'}}, got {type(filters).__name__}"
        )
    checked = {}
    for column, constraint in (filters or {}).items():
        if not isinstance(column, str) or not column or "\n" in column + str(constraint):
            raise CatalogError(
                f"bad VizieR constraint {column!r}: {constraint!r}; give column names and "
                "constraints such as {'Qual': '<64'}"
            )
        checked[column] = str(constraint)
    return checked


def _from_file(path, definition: CatalogDefinition, mag_limit: float | None) -> Table:
    table = read_catalog_file(path, definition)
    band = limit_band(definition)
    if mag_limit is not None and band is not None and mag_column(band) in table.colnames:
        keep = np.asarray(table[mag_column(band)]) < mag_limit
        table = table[keep]
    return table


def _from_vizier(
    definition: CatalogDefinition,
    cone: Cone,
    *,
    mag_limit: float | None,
    filters: dict[str, str],
    cache_dir,
    timeout: float,
    server_url: str,
    row_limit: int,
    warnings: list[str],
    logger: logging.Logger,
) -> Table:
    if not definition.covers(cone.dec):
        raise CatalogError(
            f"the field (Dec {cone.dec:+.2f}°) is outside {definition.title}: "
            f"{definition.footprint_message()}"
        )
    edges = (cone.dec - cone.radius, cone.dec + cone.radius)
    if not all(definition.covers(edge) for edge in edges):
        warnings.append(
            f"the field reaches beyond {definition.title}'s footprint; part of it has no "
            f"reference stars ({definition.footprint_message()})"
        )
    snapped = snap_cone(cone)
    key = cache_key(definition.key, snapped, mag_limit, filters, row_limit)
    path = cache_path(cache_dir, definition.key, key) if cache_dir is not None else None
    if path is not None:
        cached = read_cached(path)
        if cached is not None:
            logger.info("%s: %d stars from the cache (%s)", definition.key, len(cached), path.name)
            warnings.extend(cached_warnings(cached))
            cached.meta = {"source": f"cache:{path}"}
            return cached
    started = time.monotonic()
    answer = query_vizier(
        definition,
        snapped.ra,
        snapped.dec,
        snapped.radius,
        mag_limit=mag_limit,
        filters=filters,
        server_url=server_url,
        timeout=timeout,
        row_limit=row_limit,
    )
    warnings.extend(answer.warnings)
    if len(answer.table) == 0:
        raise CatalogError(_empty_message(definition, cone, mag_limit))
    table = normalize(answer.table, definition)
    logger.info(
        "%s: %d stars from %s in %.1f s",
        definition.key,
        len(table),
        answer.url,
        time.monotonic() - started,
    )
    if path is not None and len(table):
        write_cached(path, table, key, answer.warnings)
    table.meta["source"] = f"vizier:{server_url}"
    return table


def _empty_message(definition: CatalogDefinition, cone: Cone, mag_limit: float | None) -> str:
    where = f"within {cone.radius * 60:.1f}′ of RA {cone.ra:.5f}°, Dec {cone.dec:+.5f}°"
    limit = ""
    if mag_limit is not None:
        limit = f" brighter than {definition.limit_column} {mag_limit:g}"
    others = [k for k in definition.alternatives if get_definition(k).covers(cone.dec)]
    advice = f"try {' or '.join(others)}" if others else "try another catalogue"
    if mag_limit is not None:
        advice += ", or a fainter magnitude limit"
    return f"{definition.title} has no stars{limit} {where} ({definition.note}): {advice}"
