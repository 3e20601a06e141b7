"""Catalogue stars closer than the image resolution: merge them (default) or drop them.

Two catalogue stars closer than ~2·FWHM are one object in the image, so matching
either of them to the detection compares a single star's magnitude with the flux of
both. Groups are found friends-of-friends (any chain of pairs closer than the
separation is one group).

``mode="merge"`` (default, as the reference system does) replaces a group by one
entry: in every band the fluxes are summed (m = −2.5·log10 Σ 10^(−0.4·m_k)), the error
is that of the summed flux, and the position is the flux-weighted mean. This is what
the detector measures, keeps the group usable for calibration — in crowded fields
dropping would lose a large share of the reference stars — and, since each band is
summed separately, the merged colour is the colour of the light actually measured.
A band in which any member has no magnitude is left NaN for the group (a missing
companion flux would make the sum too faint).

``mode="drop"`` removes every member instead: safest when the catalogue is deep
and complete enough that losing the groups costs little.
"""

from __future__ import annotations

import numpy as np
from astropy.table import Table
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from pipeline.catalogs.definitions import DEC_COLUMN, RA_COLUMN, err_column, mag_column
from pipeline.catalogs.errors import CatalogError
from pipeline.catalogs.normalize import MAG_PER_FLUX_FRACTION
from pipeline.catalogs.transform import bands_in_table

BLEND_COLUMN = "n_blended"  # number of catalogue stars merged into the row (1 = isolated)
BLEND_MODES = ("merge", "drop")


def blend_separation_arcsec(
    fwhm_arcsec: float | None = None,
    *,
    fwhm_pixels: float | None = None,
    pixel_scale_arcsec: float | None = None,
    factor: float = 2.0,
) -> float:
    """``factor``·FWHM in arcsec, from the FWHM in arcsec or in pixels with a pixel scale."""
    if fwhm_arcsec is None:
        if fwhm_pixels is None or pixel_scale_arcsec is None:
            raise CatalogError(
                "give the FWHM in arcsec, or in pixels together with the pixel scale "
                "(arcsec/pixel), to find blended catalogue stars"
            )
        fwhm_arcsec = float(fwhm_pixels) * float(pixel_scale_arcsec)
    separation = float(factor) * float(fwhm_arcsec)
    if not np.isfinite(separation) or separation <= 0:
        raise CatalogError(
            f"blend separation {separation!r}″ (factor {factor} × FWHM {fwhm_arcsec}″) must be "
            "a positive number: check the FWHM and pixel scale"
        )
    return separation


def blend_groups(table: Table, separation_arcsec: float) -> np.ndarray:
    """Group label of every row; rows sharing a label are closer than the separation."""
    ra = np.radians(np.asarray(table[RA_COLUMN], float))
    dec = np.radians(np.asarray(table[DEC_COLUMN], float))
    xyz = np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])
    chord = 2.0 * np.sin(np.radians(separation_arcsec / 3600.0) / 2.0)
    pairs = cKDTree(xyz).query_pairs(chord, output_type="ndarray")
    n = len(table)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels


def remove_blends(
    table: Table,
    fwhm_arcsec: float | None = None,
    *,
    fwhm_pixels: float | None = None,
    pixel_scale_arcsec: float | None = None,
    factor: float = 2.0,
    mode: str = "merge",
) -> Table:
    """Merge (or drop) catalogue stars closer than ``factor``·FWHM to each other.

    Parameters
    ----------
    table : astropy.table.Table
        Normalised catalogue (see :func:`pipeline.catalogs.get_catalog`).
    fwhm_arcsec : float, optional
        Image FWHM in arcsec; or give ``fwhm_pixels`` and ``pixel_scale_arcsec``.
    factor : float
        Separation threshold in units of the FWHM (2 by default).
    mode : {"merge", "drop"}
        Merge each group into one flux-weighted entry, or remove its members.

    Returns
    -------
    astropy.table.Table
        A new table; with ``merge`` it has a ``n_blended`` column. ``meta["blends"]``
        records the separation, the mode, the number of groups and of stars in them.
    """
    if mode not in BLEND_MODES:
        raise CatalogError(f"blend mode {mode!r} is not one of {', '.join(BLEND_MODES)}")
    separation = blend_separation_arcsec(
        fwhm_arcsec, fwhm_pixels=fwhm_pixels, pixel_scale_arcsec=pixel_scale_arcsec, factor=factor
    )
    labels = blend_groups(table, separation) if len(table) else np.zeros(0, int)
    sizes = np.bincount(labels) if len(labels) else np.zeros(0, int)
    in_group = sizes[labels] > 1 if len(labels) else np.zeros(0, bool)
    summary = {
        "separation_arcsec": separation,
        "mode": mode,
        "groups": int(np.count_nonzero(sizes > 1)),
        "stars_in_groups": int(np.count_nonzero(in_group)),
    }
    result = table[~in_group] if mode == "drop" else _merge(table, labels, sizes)
    result.meta = {**table.meta, "blends": summary}
    return result


def _merge(table: Table, labels: np.ndarray, sizes: np.ndarray) -> Table:
    bands = sorted(bands_in_table(table), key=lambda b: table.colnames.index(mag_column(b)))
    weight = _position_weights(table, bands)
    # representative row of a group: its brightest member (keeps ids and other columns)
    order = np.lexsort((-weight, labels))
    first = np.ones(len(order), bool)
    first[1:] = labels[order][1:] != labels[order][:-1]
    keep = np.sort(order[first])
    result = table[keep]
    keep_labels = labels[keep]
    merged = sizes[keep_labels] > 1
    result[BLEND_COLUMN] = sizes[keep_labels].astype(np.int32)
    if not merged.any():
        return result
    for band in bands:
        mag, err = _summed_band(table, band, labels, len(sizes))
        for name, values in ((mag_column(band), mag), (err_column(band), err)):
            if name in result.colnames:
                column = np.asarray(result[name], float).copy()
                column[merged] = values[keep_labels[merged]]
                result[name] = column
    ra, dec = _weighted_positions(table, labels, weight, len(sizes))
    result[RA_COLUMN][merged] = ra[keep_labels[merged]]
    result[DEC_COLUMN][merged] = dec[keep_labels[merged]]
    return result


def _summed_band(table: Table, band: str, labels: np.ndarray, n_groups: int):
    mag = np.asarray(table[mag_column(band)], float)
    flux = 10.0 ** (-0.4 * mag)
    missing = np.bincount(labels, ~np.isfinite(flux), n_groups) > 0
    total = np.bincount(labels, np.nan_to_num(flux), n_groups)
    if err_column(band) in table.colnames:
        err = np.asarray(table[err_column(band)], float)
        flux_err = flux * err / MAG_PER_FLUX_FRACTION
        variance = np.bincount(labels, np.nan_to_num(flux_err) ** 2, n_groups)
        unknown = np.bincount(labels, ~np.isfinite(flux_err), n_groups) > 0
    else:
        variance = np.zeros(n_groups)
        unknown = np.ones(n_groups, bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        merged_mag = np.where(missing | (total <= 0), np.nan, -2.5 * np.log10(total))
        merged_err = np.where(
            missing | unknown, np.nan, MAG_PER_FLUX_FRACTION * np.sqrt(variance) / total
        )
    return merged_mag, merged_err


def _position_weights(table: Table, bands: list[str]) -> np.ndarray:
    """Flux in the band measured for most stars (1 where it is missing)."""
    if not bands:
        return np.ones(len(table))
    counts = [np.count_nonzero(np.isfinite(np.asarray(table[mag_column(b)], float))) for b in bands]
    mag = np.asarray(table[mag_column(bands[int(np.argmax(counts))])], float)
    flux = 10.0 ** (-0.4 * mag)
    return np.where(np.isfinite(flux), flux, 1.0)


def _weighted_positions(table: Table, labels: np.ndarray, weight: np.ndarray, n_groups: int):
    ra = np.radians(np.asarray(table[RA_COLUMN], float))
    dec = np.radians(np.asarray(table[DEC_COLUMN], float))
    vectors = (np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec))
    x, y, z = (np.bincount(labels, weight * v, n_groups) for v in vectors)
    return np.degrees(np.arctan2(y, x)) % 360.0, np.degrees(np.arctan2(z, np.hypot(x, y)))
