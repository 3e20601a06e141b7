"""The calibration stars: per-pair arrays of a match and why a pair is left out.

A pair (object, catalogue star) calibrates only if both magnitudes are finite, the
object carries no flag beyond the accepted ones (0x002 deblended by default), the
catalogue star has no close neighbour that is not much fainter (a probable blend in
the image), the pair is one-to-one, and, when a colour term is used, the star has a
colour. :func:`prepare_pairs` records the first reason that applies to each pair.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.table import Table
from numpy.typing import NDArray

from pipeline.calibration.columns import CalibrationColumns
from pipeline.calibration.config import CalibrationConfig
from pipeline.calibration.fit import FitOutput
from pipeline.calibration.match import CatalogMatch, crowded_catalog_stars

EXCLUSION_REASONS = ("no magnitude", "flagged", "crowded", "ambiguous", "no colour")


def float_column(column) -> NDArray:
    """A table column as float, masked entries as NaN."""
    return np.where(np.ma.getmaskarray(column), np.nan, np.ma.getdata(column).astype(float))


def column_or(table: Table, name: str | None, fill: float) -> NDArray:
    """A column as float (masked as NaN), or ``fill`` everywhere when it is absent."""
    if name and name in table.colnames:
        return float_column(table[name])
    return np.full(len(table), fill)


@dataclass
class CalibrationPairs:
    """Per-pair arrays of one band's calibration (index i is pair i of the match)."""

    match: CatalogMatch
    x: NDArray
    y: NDArray
    mag_inst: NDArray
    magerr: NDArray
    mag_cat: NDArray
    err_cat: NDArray
    color: NDArray | None
    color_err: NDArray | None
    reason: NDArray  # "" for candidates, else one of EXCLUSION_REASONS

    def candidates(self, need_color: bool) -> NDArray:
        ok = self.reason == ""
        if not need_color:
            ok |= self.reason == "no colour"
        return ok


def prepare_pairs(
    objects: Table,
    catalog: Table,
    match: CatalogMatch,
    columns: CalibrationColumns,
    config: CalibrationConfig,
    isolation_radius: float,
) -> CalibrationPairs:
    """Gather the arrays of every pair and say why a pair cannot calibrate."""
    obj, cat = match.object_index, match.catalog_index
    mag_cat_all = float_column(catalog[columns.mag])
    flags = np.asarray(objects["flags"], np.int64) if "flags" in objects.colnames else 0
    flags = np.broadcast_to(flags, (len(objects),))[obj]
    xy = (match.catalog_x, match.catalog_y) if match.unit == "pix" else None
    crowded = crowded_catalog_stars(
        catalog, mag_cat_all, isolation_radius, config.calib_isolation_dmag, xy=xy
    )
    color = color_err = None
    if columns.color is not None:
        blue, red = columns.color
        color = (float_column(catalog[blue]) - float_column(catalog[red]))[cat]
        e_blue = column_or(catalog, columns.color_err[0], 0.0)
        e_red = column_or(catalog, columns.color_err[1], 0.0)
        color_err = np.hypot(np.nan_to_num(e_blue), np.nan_to_num(e_red))[cat]
    pairs = CalibrationPairs(
        match=match,
        x=float_column(objects["x"])[obj],
        y=float_column(objects["y"])[obj],
        mag_inst=float_column(objects["mag"])[obj],
        magerr=float_column(objects["magerr"])[obj],
        mag_cat=mag_cat_all[cat],
        err_cat=np.nan_to_num(column_or(catalog, columns.err, 0.0)[cat], nan=0.0),
        color=color,
        color_err=color_err,
        reason=np.full(len(match), "", dtype=object),
    )
    no_mag = ~(np.isfinite(pairs.mag_inst) & np.isfinite(pairs.magerr) & np.isfinite(pairs.mag_cat))
    # the first reason that applies is recorded (checked from the most basic)
    steps = (
        ("no magnitude", no_mag),
        ("flagged", (flags & ~int(config.calib_accept_flags)) != 0),
        ("crowded", crowded[cat]),
        ("ambiguous", match.ambiguous),
        ("no colour", ~np.isfinite(color) if color is not None else np.zeros(len(match), bool)),
    )
    for name, bad in steps:
        pairs.reason[(pairs.reason == "") & bad] = name
    return pairs


def matches_table(pairs: CalibrationPairs, fit: FitOutput, candidates: NDArray) -> Table:
    """One row per matched pair with everything the plots and users need."""
    n = len(pairs.match)
    fitted = np.full(n, np.nan)
    model, error = fitted.copy(), fitted.copy()
    used = np.zeros(n, bool)
    model[candidates] = fit.model
    error[candidates] = fit.total_error
    used[candidates] = fit.used
    reason = pairs.reason.astype(str)
    reason[candidates & ~used] = "outlier"
    reason[(reason == "no colour") & candidates] = ""
    delta = pairs.mag_cat - pairs.mag_inst
    nan = np.full(n, np.nan)
    return Table(
        {
            "object_index": pairs.match.object_index,
            "catalog_index": pairs.match.catalog_index,
            "x": pairs.x,
            "y": pairs.y,
            "dx": pairs.match.dx,
            "dy": pairs.match.dy,
            "distance": pairs.match.distance,
            "mag_inst": pairs.mag_inst,
            "magerr": pairs.magerr,
            "mag_cat": pairs.mag_cat,
            "mag_cat_err": pairs.err_cat,
            "color": pairs.color if pairs.color is not None else nan,
            "delta": delta,
            "model": model,
            "residual": delta - model,
            "error": error,
            "candidate": candidates,
            "used": used,
            "excluded": reason,
        },
        meta={"unit": pairs.match.unit, "radius": pairs.match.radius},
    )


def object_colors(pairs: CalibrationPairs, n_objects: int) -> NDArray | None:
    """Catalogue colour of each object with exactly one catalogue partner, else NaN."""
    if pairs.color is None:
        return None
    colors = np.full(n_objects, np.nan)
    single = ~pairs.match.ambiguous
    colors[pairs.match.object_index[single]] = pairs.color[single]
    return colors
