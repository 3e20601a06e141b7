"""On-disk cache of normalised catalogue answers, keyed by the snapped query.

Key = catalogue + snapped centre + snapped radius + magnitude limit + extra server
constraints + row limit + :data:`SCHEMA_VERSION` (bumped when the normalised layout
changes). Files are FITS tables written to a temporary name and renamed, so
concurrent workers never read half a file. Only non-empty answers are stored; a file
that cannot be read is treated as a miss and removed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from astropy.table import Table

from pipeline.catalogs.cone import Cone

log = logging.getLogger("skysift.catalogs")

SCHEMA_VERSION = 1


def cache_key(
    catalog: str,
    cone: Cone,
    mag_limit: float | None,
    filters: Mapping[str, str] | None,
    row_limit: int,
) -> str:
    """Readable key of a snapped query (the file name is its hash)."""
    parts = {
        "catalog": catalog,
        "ra": f"{cone.ra:.6f}",
        "dec": f"{cone.dec:+.6f}",
        "radius": f"{cone.radius:.6f}",
        "limit": None if mag_limit is None else f"{mag_limit:.3f}",
        "filters": dict(sorted((filters or {}).items())),
        "rows": row_limit,
        "schema": SCHEMA_VERSION,
    }
    return json.dumps(parts, sort_keys=True)


def cache_path(cache_dir: str | os.PathLike, catalog: str, key: str) -> Path:
    digest = hashlib.sha1(key.encode()).hexdigest()[:20]
    return Path(cache_dir) / f"{catalog}-{digest}.fits"


def read_cached(path: Path) -> Table | None:
    """The cached table, or None when absent or unreadable (then it is removed)."""
    if not path.exists():
        return None
    try:
        table = Table.read(path, format="fits")
    except Exception as exc:  # a damaged cache file must never break a query
        log.warning("discarding unreadable catalogue cache %s: %s", path, exc)
        path.unlink(missing_ok=True)
        return None
    if len(table) == 0:
        path.unlink(missing_ok=True)
        return None
    return table


def cached_warnings(table: Table) -> list[str]:
    """The warnings stored with a cached answer (e.g. a truncated VizieR answer)."""
    return list(json.loads(table.meta.get("WARNINGS", "[]")))


def write_cached(path: Path, table: Table, key: str, warnings: list[str] | None = None) -> None:
    """Store a non-empty table atomically; failures are logged, not raised."""
    if len(table) == 0:
        return
    stored = table.copy(copy_data=False)
    # keep FITS headers simple: key and warnings go into long-string cards
    stored.meta = {"CACHEKEY": key, "WARNINGS": json.dumps(warnings or [])}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".fits")
        os.close(fd)
        try:
            stored.write(tmp, format="fits", overwrite=True)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
    except OSError as exc:  # a full or read-only cache folder only costs speed
        log.warning("could not write catalogue cache %s: %s", path, exc)
