"""Turn a catalogue table in its own layout (VizieR answer or local file) into ours.

The normalised table has ``ra``/``dec`` in degrees and, for every native band of the
catalogue found in the input, ``<band>mag``/``e_<band>mag`` (names from
:func:`~pipeline.catalogs.definitions.mag_column`) as float64 with NaN for missing
values. Magnitudes outside :data:`VALID_MAG_RANGE` (placeholders such as 99.99 or 0)
become NaN.
"""

from __future__ import annotations

import numpy as np
from astropy import units as u
from astropy.table import Table

from pipeline.catalogs.definitions import (
    DEC_COLUMN,
    GENERIC_POSITIONS,
    RA_COLUMN,
    BandSource,
    CatalogDefinition,
    err_column,
    mag_column,
)
from pipeline.catalogs.errors import CatalogError

VALID_MAG_RANGE = (-5.0, 40.0)
MAG_PER_FLUX_FRACTION = 2.5 / np.log(10.0)  # 1.0857: dm = 1.0857 dF/F


def as_float(column) -> np.ndarray:
    """A column as float64 with NaN where it is masked."""
    data = np.ma.asarray(column)
    return np.ma.filled(data.astype(float), np.nan)


def _degrees(column) -> np.ndarray:
    unit = getattr(column, "unit", None)
    values = as_float(column)
    if unit is not None and unit != u.deg:
        try:
            return (values * u.Unit(unit)).to_value(u.deg)
        except (u.UnitConversionError, ValueError) as exc:
            raise CatalogError(
                f"position column {column.name!r} is in {unit}, not an angle: give RA/Dec in "
                "degrees"
            ) from exc
    return values


def find_positions(table: Table, definition: CatalogDefinition, generic: bool) -> tuple[str, str]:
    """The (RA, Dec) column names to use; ``generic`` also tries the usual names."""
    candidates = definition.positions + (GENERIC_POSITIONS if generic else ())
    for ra_name, dec_name in candidates:
        if ra_name in table.colnames and dec_name in table.colnames:
            return ra_name, dec_name
    tried = ", ".join(f"{a}/{b}" for a, b in candidates)
    raise CatalogError(
        f"the {definition.title} table has no position columns (tried {tried}); it has "
        f"{', '.join(table.colnames[:20])}"
    )


def _magnitude(table: Table, source: BandSource) -> tuple[np.ndarray, np.ndarray]:
    mag = as_float(table[source.mag])
    lo, hi = VALID_MAG_RANGE
    mag[(mag < lo) | (mag > hi)] = np.nan
    if source.err and source.err in table.colnames:
        err = as_float(table[source.err])
    elif source.flux and source.flux in table.colnames and source.flux_err in table.colnames:
        flux = as_float(table[source.flux])
        with np.errstate(divide="ignore", invalid="ignore"):
            err = MAG_PER_FLUX_FRACTION * as_float(table[source.flux_err]) / flux
    else:
        err = np.full(len(table), np.nan)
    err[~(err >= 0)] = np.nan  # negative or NaN errors are unknown
    return mag, err


def normalize(
    table: Table, definition: CatalogDefinition, *, generic_positions: bool = False
) -> Table:
    """The catalogue in our layout, rows without a finite position dropped.

    Parameters
    ----------
    table : astropy.table.Table
        The catalogue in its own column layout.
    definition : CatalogDefinition
        Which catalogue it is (gives the column mapping).
    generic_positions : bool
        Also accept the usual RA/Dec column names (for local files).

    Raises
    ------
    CatalogError
        If no position columns or none of the catalogue's magnitude columns exist.
    """
    ra_name, dec_name = find_positions(table, definition, generic_positions)
    present = [s for s in definition.bands if s.mag in table.colnames]
    if not present:
        expected = ", ".join(s.mag for s in definition.bands)
        raise CatalogError(
            f"the table has none of the {definition.title} magnitude columns ({expected}); "
            f"it has {', '.join(table.colnames[:20])}: choose the catalogue whose layout "
            "it follows"
        )
    ra, dec = _degrees(table[ra_name]), _degrees(table[dec_name])
    good = np.isfinite(ra) & np.isfinite(dec)
    if good.any() and not (np.all(np.abs(dec[good]) <= 90.0)):
        raise CatalogError(
            f"declinations in column {dec_name!r} exceed ±90: positions must be in degrees"
        )
    out = Table(meta={"catalog": definition.key, "title": definition.title})
    out[RA_COLUMN] = np.mod(ra[good], 360.0)
    out[DEC_COLUMN] = dec[good]
    out[RA_COLUMN].unit = out[DEC_COLUMN].unit = "deg"
    for source in present:
        mag, err = _magnitude(table, source)
        out[mag_column(source.band)] = mag[good]
        out[err_column(source.band)] = err[good]
        out[mag_column(source.band)].unit = out[err_column(source.band)].unit = "mag"
    return out


def limit_band(definition: CatalogDefinition) -> str | None:
    """Our band key of the column the server-side magnitude limit applies to."""
    for source in definition.bands:
        if source.mag == definition.limit_column:
            return source.band
    return None
