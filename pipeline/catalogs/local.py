"""Reference catalogues from local files (any table astropy can read).

The file must follow the column layout of one of the named catalogues (the
simulator's ``catalog.fits`` is in the Pan-STARRS VizieR layout; a saved VizieR
extract of ATLAS-REFCAT2 is in the ``atlas`` layout). Usual RA/Dec column names are
accepted besides the catalogue's own.
"""

from __future__ import annotations

from pathlib import Path

from astropy.table import Table

from pipeline.catalogs.definitions import CATALOGS, CatalogDefinition
from pipeline.catalogs.errors import CatalogError
from pipeline.catalogs.normalize import find_positions, normalize
from pipeline.catalogs.transform import derivable_bands

# Extensions astropy cannot guess a reader for by itself.
_FORMATS = {".vot": "votable", ".xml": "votable", ".csv": "ascii.csv", ".tsv": "ascii.tab"}


def _read_table(path: str | Path) -> Table:
    path = Path(path)
    if not path.is_file():
        raise CatalogError(f"catalogue file {path} does not exist: check the path")
    suffix = path.suffix.lower()
    try:
        if suffix in _FORMATS:
            return Table.read(path, format=_FORMATS[suffix])
        return Table.read(path)
    except Exception as exc:  # astropy raises many kinds for unreadable input
        raise CatalogError(
            f"cannot read catalogue file {path.name} as a table ({exc}); give a FITS, ECSV, "
            "VOTable or CSV table"
        ) from exc


def read_catalog_file(path: str | Path, definition: CatalogDefinition) -> Table:
    """Read and normalise a local catalogue file (the whole file).

    Raises
    ------
    CatalogError
        If the file is missing, unreadable as a table, or lacks the catalogue's columns.
    """
    normalised = normalize(_read_table(path), definition, generic_positions=True)
    normalised.meta["source"] = f"file:{path}"
    return normalised


def detect_catalog(path: str | Path, band: str | None = None) -> str:
    """The catalogue whose layout a local file follows best.

    Preference: a catalogue that can serve ``band``, then the largest share of its
    magnitude columns present, then the most columns present.

    Raises
    ------
    CatalogError
        If the file matches no catalogue layout.
    """
    table = _read_table(path)
    scores = []
    for key, definition in CATALOGS.items():
        present = sum(source.mag in table.colnames for source in definition.bands)
        if present == 0:
            continue
        try:
            find_positions(table, definition, generic=True)
        except CatalogError:
            continue
        serves = band is None or band in derivable_bands(key)
        scores.append((serves, present / len(definition.bands), present, key))
    if not scores:
        raise CatalogError(
            f"catalogue file {Path(path).name} follows none of the known layouts "
            f"({', '.join(CATALOGS)}); its columns are {', '.join(table.colnames[:20])}"
        )
    best = max(scores, key=lambda score: score[:3])
    return best[3]
