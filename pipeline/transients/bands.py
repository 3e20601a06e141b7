"""Which catalogue magnitude a candidate is compared with, and on which zero-point scale.

A candidate matched to a catalogue star is kept only when it is much brighter than the
star. The comparison is made in the image's own band when the catalogue measures it or
a published transformation reaches it (:func:`pipeline.catalogs.transform.derive_bands`);
otherwise in the catalogue's native band closest in wavelength. Magnitudes on different
zero-point scales (Vega, AB) are both brought to AB before the difference is taken.

AB − Vega offsets (m_AB = m_Vega + offset):

* U B V R I J H Ks: Blanton & Roweis 2007, AJ 133, 734, Table 1.
* Gaia G, BP, RP (EDR3): difference of the AB and Vega zero points of Riello et al. 2021,
  A&A 649, A3 (G 25.8010 − 25.6874, BP 25.3540 − 25.3385, RP 25.1040 − 24.7479).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.table import Table

from pipeline.catalogs.definitions import SDSS, SKYMAPPER, CatalogDefinition, mag_column
from pipeline.catalogs.transform import derive_bands
from pipeline.filters import FILTERS

AB_MINUS_VEGA: dict[str, float] = {
    "U": 0.79,
    "B": -0.09,
    "V": 0.02,
    "R": 0.21,
    "I": 0.45,
    "J": 0.91,
    "H": 1.39,
    "Ks": 1.85,
    "G": 0.1136,
    "BP": 0.0155,
    "RP": 0.3561,
}
AB_SYSTEMS = (SDSS, SKYMAPPER)  # native bands of these systems are on the AB scale
# SkyMapper v has no entry in pipeline.filters; its effective wavelength (Bessell et al.
# 2011, PASP 123, 789, Table 3) lets it take part in the closest-band choice.
EXTRA_WAVELENGTH_NM = {"v": 384.0}


def band_name(band: str) -> str:
    """The filter part of a band key (``"smss:g"`` → ``"g"``)."""
    return band.rpartition(":")[2]


def band_wavelength(band: str) -> float | None:
    """Effective wavelength (nm) of a band key, None when unknown."""
    name = band_name(band)
    info = FILTERS.get(name)
    if info is not None and info.wavelength_nm:
        return info.wavelength_nm
    return EXTRA_WAVELENGTH_NM.get(name)


def band_system(band: str) -> str | None:
    """``"AB"`` or ``"Vega"`` for a band key, None when unknown."""
    system, _, name = band.rpartition(":")
    if system in AB_SYSTEMS:
        return "AB"
    info = FILTERS.get(name)
    return info.magnitude_system if info is not None else None


def to_ab(mag: np.ndarray, band: str, system: str | None) -> np.ndarray:
    """Magnitudes of ``band`` on ``system`` moved to the AB scale (unchanged if unknown)."""
    if system == "Vega":
        return mag + AB_MINUS_VEGA.get(band_name(band), 0.0)
    return mag


@dataclass(frozen=True)
class Comparison:
    """Catalogue magnitudes to compare candidates with, one per matched row.

    Attributes
    ----------
    mag : numpy.ndarray
        Catalogue magnitude on the AB scale (NaN where no band has a value).
    band : numpy.ndarray of str
        Band key used for each row (``""`` where none), e.g. ``"r"`` or ``"G"``.
    """

    mag: np.ndarray
    band: np.ndarray


def band_order(definition: CatalogDefinition, image_band: str) -> list[str]:
    """Bands to try for an image band: the band itself, then native bands by wavelength."""
    target = band_wavelength(image_band)
    native = [b for b in definition.native_bands if b != image_band]
    if target is not None:
        native.sort(key=lambda b: abs((band_wavelength(b) or 1e9) - target))
    return [image_band, *native]


def comparison_magnitudes(
    normalized: Table, definition: CatalogDefinition, image_band: str
) -> Comparison:
    """Per-row catalogue magnitude in the image band, or the closest band that has one.

    Parameters
    ----------
    normalized : astropy.table.Table
        Matched catalogue rows in our normalised layout (see
        :func:`pipeline.catalogs.normalize.normalize`); the image band is derived in
        place when a published relation reaches it.
    definition : CatalogDefinition
        The catalogue the rows come from.
    image_band : str
        Band the candidates' calibrated magnitudes are in (``"r"``, ``"V"``, ``"G"``).
    """
    n = len(normalized)
    if n and mag_column(image_band) not in normalized.colnames:
        derive_bands(normalized, [image_band])
    mag = np.full(n, np.nan)
    used = np.full(n, "", dtype=object)
    for band in band_order(definition, image_band):
        column = mag_column(band)
        if column not in normalized.colnames:
            continue
        values = to_ab(np.asarray(normalized[column], float), band, band_system(band))
        fill = ~np.isfinite(mag) & np.isfinite(values)
        mag[fill] = values[fill]
        used[fill] = band
    return Comparison(mag, used.astype(str) if n else np.zeros(0, dtype=str))
