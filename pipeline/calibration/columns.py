"""Which catalogue columns a calibration uses, and how its photometric system is named.

The calibration takes plain column names (a magnitude, its error, a colour as the
difference of two magnitude columns), so it works on any catalogue table. For the
usual case the columns follow from the calibration band: :meth:`CalibrationColumns.for_band`
looks the colour up in the one table of colours by band,
:data:`pipeline.catalogs.choice.CALIBRATION_COLOURS` (g−r for u/g/r/i, r−i for z/y,
B−V for UBVRI, BP−RP for G/BP/RP, J−Ks for JHKs), and names the columns with
:func:`pipeline.catalogs.definitions.mag_column` / ``err_column``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from astropy.table import Table

from pipeline.catalogs.choice import CALIBRATION_COLOURS
from pipeline.catalogs.definitions import err_column, mag_column
from pipeline.filters import FILTERS

# "gmag" -> "g", "gmag_sdss" -> "g (sdss)", "Bmag" -> "B"; anything else is shown as is.
_MAG_NAME = re.compile(r"^(?P<band>[A-Za-z]+?)mag(?:_(?P<system>\w+))?$")


def band_label(column: str) -> str:
    """Short band name for a magnitude column (``"gmag"`` → ``"g"``)."""
    found = _MAG_NAME.match(column)
    if found is None:
        return column
    band, system = found.group("band"), found.group("system")
    return f"{band} ({system})" if system else band


@dataclass(frozen=True)
class CalibrationColumns:
    """The catalogue columns of one calibration.

    Attributes
    ----------
    mag : str
        Catalogue magnitude in the calibration band (``"rmag"``).
    err : str or None
        Its error column (``"e_rmag"``); None when the catalogue gives none.
    color : (str, str) or None
        Magnitude columns whose difference is the colour (``("gmag", "rmag")``);
        None for no colour term.
    color_err : (str or None, str or None)
        Error columns of the two colour magnitudes.
    band : str
        Name of the calibration band for messages and metadata.
    """

    mag: str
    err: str | None = None
    color: tuple[str, str] | None = None
    color_err: tuple[str | None, str | None] = (None, None)
    band: str = ""

    def __post_init__(self) -> None:
        if not self.band:
            object.__setattr__(self, "band", band_label(self.mag))
        if self.color is not None and self.color_err == (None, None):
            object.__setattr__(self, "color_err", tuple(f"e_{name}" for name in self.color))

    @classmethod
    def for_band(cls, band: str) -> CalibrationColumns:
        """Columns for a calibration band of :mod:`pipeline.filters` (``"r"``, ``"V"`` ...).

        Raises
        ------
        ValueError
            If the band has no entry in the colour table.
        """
        if band not in CALIBRATION_COLOURS:
            known = ", ".join(CALIBRATION_COLOURS)
            raise ValueError(
                f"no calibration colour is defined for band {band!r}: use one of {known}, "
                "or give the catalogue columns explicitly (CalibrationColumns(mag=..., ...))"
            )
        blue, red = CALIBRATION_COLOURS[band]
        return cls(
            mag=mag_column(band),
            err=err_column(band),
            color=(mag_column(blue), mag_column(red)),
            color_err=(err_column(blue), err_column(red)),
            band=band,
        )

    @property
    def color_name(self) -> str | None:
        """``"g-r"`` style name of the colour, None without one."""
        if self.color is None:
            return None
        return f"{band_label(self.color[0])}-{band_label(self.color[1])}"

    def without_color(self) -> CalibrationColumns:
        """The same columns with no colour."""
        return CalibrationColumns(self.mag, self.err, None, (None, None), self.band)

    def missing(self, table: Table) -> list[str]:
        """Columns (magnitude and colour) that ``table`` lacks."""
        wanted = [self.mag, *(self.color or ())]
        return [name for name in wanted if name not in table.colnames]


def supported_bands(table: Table) -> list[str]:
    """Calibration bands whose magnitude and colour columns are all in ``table``."""
    bands = []
    for band in CALIBRATION_COLOURS:
        columns = CalibrationColumns.for_band(band)
        if not columns.missing(table):
            bands.append(band)
    return bands


def system_text(band: str, catalog_title: str | None = None) -> tuple[str, str | None]:
    """(system words, AB/Vega) for a band: ``("Pan-STARRS DR1", "AB")``.

    Bands outside :data:`pipeline.filters.FILTERS` give the catalogue title (or
    ``"catalogue system"``) and None.
    """
    info = FILTERS.get(band)
    system = catalog_title or (info.system if info else None) or "catalogue system"
    return system, (info.magnitude_system if info else None)


def describe_calibration(
    band: str,
    catalog_title: str | None,
    color_name: str | None,
    color_term: float | None,
    color_term_err: float | None,
    fitted: bool,
) -> str:
    """One line saying what a calibrated magnitude is.

    Example: ``"r (Pan-STARRS DR1, AB) with g-r colour term C = 0.102 ± 0.004"``.
    """
    system, zero = system_text(band, catalog_title)
    head = f"{band} ({system}, {zero})" if zero else f"{band} ({system})"
    if color_name is None or color_term is None:
        return f"{head} without a colour term"
    how = f"± {color_term_err:.3f}" if fitted and color_term_err is not None else "(fixed)"
    return f"{head} with {color_name} colour term C = {color_term:.3f} {how}"
