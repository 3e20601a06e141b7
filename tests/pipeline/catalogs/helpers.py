"""Test helpers: catalogue tables in other catalogues' VizieR layouts, real-data matching."""

from __future__ import annotations

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import Table

from pipeline.catalogs.definitions import CatalogDefinition
from pipeline.catalogs.normalize import MAG_PER_FLUX_FRACTION

# which PS1 band stands in for a band of another catalogue (values need not be physical
# here: these tables check column mapping and plumbing, not photometry)
_STAND_IN = {
    "u": "g",
    "v": "g",
    "U": "g",
    "B": "g",
    "V": "r",
    "R": "r",
    "I": "i",
    "G": "r",
    "BP": "g",
    "RP": "i",
    "J": "z",
    "H": "y",
    "Ks": "y",
}


def layout_table(
    definition: CatalogDefinition, ps1: Table, dec_center: float | None = None
) -> Table:
    """The simulated PS1 stars in ``definition``'s VizieR layout, optionally moved to
    another declination (RA offsets scaled so the field keeps its shape on the sky)."""
    ra = np.asarray(ps1["RAJ2000"], float)
    dec = np.asarray(ps1["DEJ2000"], float)
    if dec_center is not None:
        centre_dec = float(np.median(dec))
        centre_ra = float(np.median(ra))
        scale = np.cos(np.radians(centre_dec)) / np.cos(np.radians(dec_center))
        ra = centre_ra + (ra - centre_ra) * scale
        dec = dec - centre_dec + dec_center
    table = Table()
    ra_name, dec_name = definition.positions[0]
    if ra_name.startswith("_"):  # VizieR computes these; the table holds ICRS positions
        ra_name, dec_name = "RA_ICRS", "DE_ICRS"
    table[ra_name], table[dec_name] = ra, dec
    for source in definition.bands:
        letter = source.band.rpartition(":")[2]
        base = letter if f"{letter}mag" in ps1.colnames else _STAND_IN.get(letter, "r")
        mag = np.ma.filled(np.ma.asarray(ps1[f"{base}mag"]).astype(float), np.nan)
        err = np.ma.filled(np.ma.asarray(ps1[f"e_{base}mag"]).astype(float), np.nan)
        table[source.mag] = np.ma.masked_invalid(mag)
        if source.err:
            table[source.err] = np.ma.masked_invalid(err)
        if source.flux:
            flux = 10 ** (-0.4 * mag)
            table[source.flux] = np.ma.masked_invalid(flux)
            table[source.flux_err] = np.ma.masked_invalid(flux * err / MAG_PER_FLUX_FRACTION)
    return table


def match_positions(ra1, dec1, ra2, dec2, radius_arcsec: float):
    """Indices (i1, i2) of nearest-neighbour pairs closer than the radius."""
    first = SkyCoord(ra1, dec1, unit="deg")
    second = SkyCoord(ra2, dec2, unit="deg")
    index, distance, _ = first.match_to_catalog_sky(second)
    good = distance.arcsec < radius_arcsec
    return np.flatnonzero(good), index[good]
