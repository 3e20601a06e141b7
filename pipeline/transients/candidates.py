"""The candidate list: annotation columns, names and the files users download.

The table keeps every column of the objects table (same names) and adds the
annotations of :data:`ANNOTATION_COLUMNS`. It is written as FITS (the step's own
copy), CSV, VOTable and a DS9 region file (circles of the aperture radius).
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import Table

CANDIDATES_FITS = "candidates_simple.fits"
CANDIDATES_CSV = "candidates_simple.csv"
CANDIDATES_VOT = "candidates_simple.vot"
CANDIDATES_REG = "candidates_simple.reg"
CUTOUT_DIR = "candidates_simple"

# name -> (dtype, fill, description); the fill is what a candidate without that
# annotation carries.
ANNOTATION_COLUMNS: dict[str, tuple[str, object, str]] = {
    "object_index": ("i8", -1, "row of the candidate in objects.fits"),
    "jname": ("U32", "", "IAU-style name from the position"),
    "xmatch_catalog": ("U16", "", "catalogue of the nearest positional match, if any"),
    "xmatch_sep": ("f8", np.nan, "separation of that match, arcsec"),
    "xmatch_dmag": ("f8", np.nan, "ours - catalogue (AB) of that match; negative: brighter"),
    "xmatch_band": ("U16", "", "catalogue band the magnitudes were compared in"),
    "known_variable": ("?", False, "a VSX variable star lies within the match radius"),
    "vsx_name": ("U40", "", "VSX name of that variable"),
    "vsx_type": ("U24", "", "VSX variability type"),
    "vsx_range": ("U40", "", "VSX magnitude range"),
    "vsx_sep": ("f8", np.nan, "separation of the VSX entry, arcsec"),
    "minor_planet": ("U40", "", "known minor body within the SkyBoT radius (when kept)"),
    "minor_planet_sep": ("f8", np.nan, "separation of that body, arcsec"),
    "cutout": ("U64", "", "cutout PNG, relative to the task folder"),
}


def jname(ra: float, dec: float) -> str:
    """``Jhhmmss.ss+ddmmss.s`` name of a position (truncated, as IAU names are)."""
    coord = SkyCoord(ra, dec, unit="deg")
    hms = coord.ra.hms
    sign = "-" if dec < 0 else "+"
    d = abs(dec)
    deg = int(d)
    minutes = int((d - deg) * 60)
    seconds = (d - deg - minutes / 60) * 3600
    ra_seconds = np.floor(hms.s * 100) / 100
    dec_seconds = np.floor(seconds * 10) / 10
    return (
        f"J{int(hms.h):02d}{int(hms.m):02d}{ra_seconds:05.2f}"
        f"{sign}{deg:02d}{minutes:02d}{dec_seconds:04.1f}"
    )


def candidate_table(objects: Table, rows: np.ndarray) -> Table:
    """The chosen object rows with empty annotation columns (filled by the step)."""
    table = Table(objects[rows], copy=True)
    table.meta = dict(objects.meta)
    n = len(table)
    for name, (dtype, fill, description) in ANNOTATION_COLUMNS.items():
        table[name] = np.full(n, fill, dtype=dtype)
        table[name].description = description
    table["object_index"] = np.asarray(rows, np.int64)
    table["jname"] = [jname(r, d) for r, d in zip(table["ra"], table["dec"], strict=True)]
    return table


def _replace(path: Path, write) -> None:
    temporary = path.with_name(path.name + ".tmp")
    write(temporary)
    os.replace(temporary, path)


def _plain_meta(meta: dict) -> dict:
    """Meta values FITS/VOTable writers accept (numbers and short strings)."""
    return {k: v for k, v in meta.items() if isinstance(v, str | int | float | bool)}


def _ascii_strings(table: Table) -> Table:
    """A copy whose text columns are ASCII (FITS tables hold nothing else)."""
    out = Table(table, copy=True)
    for name in out.colnames:
        if out[name].dtype.kind == "U" and len(out):
            out[name] = [
                unicodedata.normalize("NFKD", str(v)).encode("ascii", "replace").decode()
                for v in out[name]
            ]
    return out


def write_regions(table: Table, path: Path, radius_arcsec: float) -> None:
    """DS9 region file: one fk5 circle per candidate, labelled by name."""
    lines = [
        "# Region file format: DS9 version 4.1",
        'global color=green dashlist=8 3 width=1 font="helvetica 10 normal roman" select=1',
        "fk5",
    ]
    for row in table:
        colour = " color=orange" if row["known_variable"] else ""
        lines.append(
            f'circle({row["ra"]:.7f},{row["dec"]:+.7f},{radius_arcsec:.2f}") '
            f"# text={{{row['jname']}}}{colour}"
        )
    _replace(path, lambda p: p.write_text("\n".join(lines) + "\n"))


def write_candidates(table: Table, folder: Path, radius_arcsec: float) -> list[str]:
    """Write FITS, CSV, VOTable and DS9 regions into ``folder``; return the file names."""
    out = Table(table, copy=False)
    out.meta = _plain_meta(table.meta)
    _replace(folder / CANDIDATES_FITS, lambda p: _ascii_strings(out).write(p, format="fits"))
    _replace(folder / CANDIDATES_CSV, lambda p: out.write(p, format="ascii.csv"))
    _replace(folder / CANDIDATES_VOT, lambda p: out.write(p, format="votable"))
    write_regions(table, folder / CANDIDATES_REG, radius_arcsec)
    return [CANDIDATES_FITS, CANDIDATES_CSV, CANDIDATES_VOT, CANDIDATES_REG]
