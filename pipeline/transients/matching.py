"""Positional matching on the sky shared by the transient filters."""

from __future__ import annotations

import numpy as np


def nearest_within(
    ra: np.ndarray, dec: np.ndarray, ra2: np.ndarray, dec2: np.ndarray, radius_arcsec: float
) -> tuple[np.ndarray, np.ndarray]:
    """For each (ra, dec): index of the nearest (ra2, dec2) within the radius and the
    separation in arcsec; −1 and NaN where there is none. Degrees in, ICRS."""
    index = np.full(len(ra), -1)
    sep = np.full(len(ra), np.nan)
    if len(ra2) == 0 or len(ra) == 0:
        return index, sep
    from astropy.coordinates import SkyCoord

    ours = SkyCoord(np.asarray(ra, float), np.asarray(dec, float), unit="deg")
    theirs = SkyCoord(np.asarray(ra2, float), np.asarray(dec2, float), unit="deg")
    nearest, distance, _ = ours.match_to_catalog_sky(theirs)
    close = distance.arcsec <= radius_arcsec
    index[close] = nearest[close]
    sep[close] = distance.arcsec[close]
    return index, sep
