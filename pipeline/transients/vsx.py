"""Known variable stars near the candidates: the AAVSO VSX catalogue (VizieR B/vsx/vsx).

A candidate that survives the catalogue cross-match may still be a known variable in
outburst (a dwarf nova, a flare star, a Mira near maximum). It is annotated, not
rejected: the user sees "known variable" and the VSX name, type and range.

The query goes through the VizieR client of :mod:`pipeline.catalogs.vizier`: one
cone around the candidates, then a local match
(:func:`pipeline.transients.matching.nearest_within`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.table import Table

from pipeline.catalogs.definitions import CatalogDefinition
from pipeline.catalogs.vizier import DEFAULT_TIMEOUT_S, DEFAULT_VIZIER_URL, query_vizier

VSX = CatalogDefinition(
    key="vsx",
    title="AAVSO VSX",
    vizier_id="B/vsx/vsx",
    positions=(("RAJ2000", "DEJ2000"),),
    bands=(),
    limit_column="max",
    note="known variable stars, their type, period and magnitude range",
)
MAX_CONE_DEG = 5.0  # the VizieR client's largest cone
VSX_ROW_LIMIT = 20_000

__all__ = ["DEFAULT_TIMEOUT_S", "DEFAULT_VIZIER_URL", "VSX", "Variables", "query_vsx"]


@dataclass(frozen=True)
class Variables:
    """VSX entries in a cone: name, type, magnitude range text, positions (degrees)."""

    name: np.ndarray
    kind: np.ndarray
    range_text: np.ndarray
    ra: np.ndarray
    dec: np.ndarray

    def __len__(self) -> int:
        return len(self.name)


def _text(table: Table, name: str) -> np.ndarray:
    if name not in table.colnames:
        return np.full(len(table), "")
    return np.asarray([str(v).strip() for v in np.ma.filled(table[name].astype(str), "")])


def _number(table: Table, name: str) -> np.ndarray:
    if name not in table.colnames:
        return np.full(len(table), np.nan)
    return np.ma.filled(np.ma.asarray(table[name]).astype(float), np.nan)


def variables_from_table(table: Table) -> Variables:
    """Turn a VizieR B/vsx/vsx answer into :class:`Variables` (rows without a position
    are dropped)."""
    ra, dec = _number(table, "RAJ2000"), _number(table, "DEJ2000")
    low, high = _number(table, "min"), _number(table, "max")
    passband = _text(table, "n_max")
    ranges = []
    for bright, faint, band in zip(high, low, passband, strict=True):
        if np.isfinite(bright) and np.isfinite(faint):
            ranges.append(f"{bright:.2f}-{faint:.2f} {band}".strip())
        elif np.isfinite(bright):
            ranges.append(f"max {bright:.2f} {band}".strip())
        else:
            ranges.append("")
    good = np.isfinite(ra) & np.isfinite(dec)
    return Variables(
        _text(table, "Name")[good],
        _text(table, "Type")[good],
        np.asarray(ranges, dtype=str)[good] if len(ranges) else np.zeros(0, dtype=str),
        ra[good],
        dec[good],
    )


def query_vsx(
    ra: float,
    dec: float,
    radius_deg: float,
    *,
    url: str = DEFAULT_VIZIER_URL,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> Variables:
    """VSX variables within ``radius_deg`` of (ra, dec).

    Raises
    ------
    pipeline.catalogs.ServiceUnavailable, pipeline.catalogs.CatalogError
        As :func:`pipeline.catalogs.vizier.query_vizier` does.
    """
    answer = query_vizier(
        VSX,
        ra,
        dec,
        min(float(radius_deg), MAX_CONE_DEG),
        server_url=url,
        timeout=timeout,
        row_limit=VSX_ROW_LIMIT,
    )
    return variables_from_table(answer.table)
