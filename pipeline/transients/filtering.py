"""The local filters of the catalogue-based transient search: flags, cone, other images.

* Flags: every flagged object is rejected except deblended ones (0x002) and those whose
  footprint touches masked pixels (0x100) — as the reference system does — and, when
  asked, shape-prefilter outliers (0x800; a transient on a galaxy often is one).
* Cone: keep objects within a radius of a centre given as coordinates (degrees or
  sexagesimal) or, when a name resolver is installed, as an object name.
* Other images: keep objects detected in every other image of the same field, matched
  within a fraction of the FWHM (multi-image confirmation of real sources).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from astropy.table import Table

from pipeline.flags import ObjectFlag
from pipeline.transients.matching import nearest_within

# Flags that do not disqualify a candidate: deblending and masked pixels in the isophotal
# footprint (the aperture itself being masked is 0x200, which does).
ALLOWED_FLAGS = ObjectFlag.DEBLENDED | ObjectFlag.FOOTPRINT_MASKED
_NUMBER = r"[+-]?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?"
_DEGREES = re.compile(rf"^\s*({_NUMBER})\s*[,\s]\s*({_NUMBER})\s*$")


class FilterInputError(ValueError):
    """An input of the local filters is unusable; the message says what to give instead."""


def rejected_flags(keep_shape_outliers: bool) -> int:
    """Bitmask of flags that reject an object."""
    allowed = ALLOWED_FLAGS | (ObjectFlag.SHAPE_OUTLIER if keep_shape_outliers else 0)
    every = 0
    for bit in ObjectFlag:
        every |= int(bit)
    return every & ~int(allowed)


def flag_filter(flags: np.ndarray, keep_shape_outliers: bool = False) -> np.ndarray:
    """True for objects whose flags allow them to be candidates."""
    return (np.asarray(flags, np.int64) & rejected_flags(keep_shape_outliers)) == 0


def parse_coordinates(text: str) -> tuple[float, float] | None:
    """(ra, dec) in degrees from ``"150.1 20.2"``, ``"150.1, 20.2"`` or sexagesimal
    (``"10:00:24 +20:12:00"``, ``"10h00m24s +20d12m"``); None when it is not coordinates.

    Raises
    ------
    FilterInputError
        If the text looks like coordinates but is out of range.
    """
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    found = _DEGREES.match(text)
    if found:
        ra, dec = float(found[1]), float(found[2])
    else:
        if not re.search(r"\d", text) or not re.search(r"[:hdms°\s]", text.strip()):
            return None
        try:
            coord = SkyCoord(text, unit=(u.hourangle, u.deg))
        except (ValueError, u.UnitsError):
            return None
        ra, dec = float(coord.ra.deg), float(coord.dec.deg)
    if not -90.0 <= dec <= 90.0:
        raise FilterInputError(f"declination {dec:g} in {text!r} is outside [-90, 90] degrees")
    if not found or 0.0 <= ra < 360.0:
        return ra % 360.0, dec
    raise FilterInputError(f"right ascension {ra:g} in {text!r} is outside [0, 360) degrees")


def resolve_centre(text: str) -> tuple[float, float]:
    """Centre of the search cone from coordinates, or from a name through the target
    resolver of :mod:`pipeline.targets` when that module is installed.

    Raises
    ------
    FilterInputError
        If the text is neither coordinates nor a name that can be resolved.
    """
    text = (text or "").strip()
    if not text:
        raise FilterInputError("the cone centre is empty: give coordinates such as '150.1 20.2'")
    coords = parse_coordinates(text)
    if coords is not None:
        return coords
    resolver = _name_resolver()
    if resolver is None:
        raise FilterInputError(
            f"cannot read {text!r} as coordinates, and names cannot be resolved in this "
            "version: give the centre as 'RA Dec' in degrees or as 'hh:mm:ss ±dd:mm:ss'"
        )
    try:
        return resolver(text)
    except Exception as exc:  # the resolver's own errors carry the reason
        raise FilterInputError(f"cannot resolve {text!r}: {exc}") from exc


def _name_resolver():
    """``name -> (ra, dec)`` from :mod:`pipeline.targets` when it offers one, else None."""
    try:
        from pipeline import targets  # optional: written separately
    except ImportError:
        return None
    resolve = getattr(targets, "resolve_name", None) or getattr(targets, "resolve_target", None)
    if resolve is None:
        return None

    def as_pair(name: str) -> tuple[float, float]:
        found = resolve(name)
        if hasattr(found, "ra") and hasattr(found, "dec"):
            ra, dec = found.ra, found.dec
            ra = getattr(ra, "deg", ra)
            dec = getattr(dec, "deg", dec)
            return float(ra), float(dec)
        ra, dec = found[0], found[1]
        return float(ra), float(dec)

    return as_pair


def cone_filter(
    ra: np.ndarray, dec: np.ndarray, centre: tuple[float, float], radius_deg: float
) -> np.ndarray:
    """True for positions within ``radius_deg`` of ``centre``."""
    from astropy.coordinates import SkyCoord

    here = SkyCoord(np.asarray(ra, float), np.asarray(dec, float), unit="deg")
    return here.separation(SkyCoord(*centre, unit="deg")).deg <= radius_deg


def read_other_objects(path: Path) -> Table:
    """The objects table of another task (``objects.fits``), checked for positions.

    Raises
    ------
    FilterInputError
        If it is missing, unreadable or has no sky positions.
    """
    if not path.is_file():
        raise FilterInputError(
            f"{path.parent.name}/{path.name} does not exist: run photometry in that task first"
        )
    try:
        table = Table.read(path, hdu=1)
    except Exception as exc:  # astropy raises many kinds for a broken file
        raise FilterInputError(f"{path.parent.name}/{path.name} cannot be read: {exc}") from exc
    missing = [c for c in ("ra", "dec") if c not in table.colnames]
    if missing:
        raise FilterInputError(f"{path.parent.name}/{path.name} has no {'/'.join(missing)}")
    good = np.isfinite(np.asarray(table["ra"], float)) & np.isfinite(
        np.asarray(table["dec"], float)
    )
    if not good.any():
        raise FilterInputError(
            f"{path.parent.name}/{path.name} has no sky positions: that image needs astrometry"
        )
    return table[good]


def seen_in_all(
    ra: np.ndarray, dec: np.ndarray, others: list[Table], radius_arcsec: float
) -> np.ndarray:
    """True for positions with a detection within ``radius_arcsec`` in every other table."""
    keep = np.ones(len(ra), bool)
    for other in others:
        index, _ = nearest_within(ra, dec, other["ra"], other["dec"], radius_arcsec)
        keep &= index >= 0
    return keep


def brightest_first(mag: np.ndarray, limit: int) -> np.ndarray:
    """Indices of the ``limit`` brightest (NaN magnitudes last)."""
    order = np.argsort(np.where(np.isfinite(mag), mag, np.inf), kind="stable")
    return order[:limit]
