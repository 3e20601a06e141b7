"""The WCS file of a task (``image.wcs``) and putting a WCS into an image header.

``image.wcs`` is a FITS file whose primary header holds only the WCS cards
(plus the image size and the fit quality), like astrometry.net's ``wcs.fits``.
"""

from __future__ import annotations

import os
import re
import warnings
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning
from numpy.typing import ArrayLike, NDArray

from pipeline.astrometry.errors import AstrometryError
from pipeline.fitsio import write_atomic

# Header keywords that carry a celestial WCS, primary or alternate (suffix A-Z);
# everything :func:`strip_wcs` removes before a new solution is written.
_WCS_KEY = re.compile(
    r"^(WCSAXES|WCSNAME|CTYPE\d|CRVAL\d|CRPIX\d|CDELT\d|CUNIT\d|CROTA\d|CD\d_\d|PC\d_\d|"
    r"PV\d_\d+|PS\d_\d+|LONPOLE|LATPOLE|RADESYS|RADECSYS|EQUINOX|"
    r"A_ORDER|B_ORDER|AP_ORDER|BP_ORDER|A_\d+_\d+|B_\d+_\d+|AP_\d+_\d+|BP_\d+_\d+|"
    r"A_DMAX|B_DMAX|IMAGEW|IMAGEH)[A-Z]?$"
)
# Cards astropy adds that describe the observation, not the WCS.
_NOT_WCS = ("DATEREF", "MJDREF", "MJD-OBS", "DATE-OBS", "DATEOBS", "MJDREFI", "MJDREFF")


def strip_wcs(header: fits.Header) -> fits.Header:
    """Copy of ``header`` without any celestial WCS keyword (alternates included)."""
    out = header.copy()
    for key in [k for k in out if _WCS_KEY.match(k)]:
        out.remove(key, ignore_missing=True, remove_all=True)
    return out


def wcs_header(wcs: WCS, extra: dict[str, Any] | None = None) -> fits.Header:
    """The WCS cards of ``wcs`` (SIP or TPV terms included), plus ``extra`` cards.

    ``extra`` maps keyword to value or (value, comment), e.g. the fit RMS.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        header = wcs.to_header(relax=True)
    for key in _NOT_WCS:
        header.remove(key, ignore_missing=True, remove_all=True)
    if wcs.pixel_shape is not None:
        header["IMAGEW"] = (int(wcs.pixel_shape[0]), "image width, pixels")
        header["IMAGEH"] = (int(wcs.pixel_shape[1]), "image height, pixels")
    for key, value in (extra or {}).items():
        header[key] = value
    return header


def write_wcs_file(wcs: WCS, path: str | os.PathLike, extra: dict[str, Any] | None = None) -> None:
    """Write ``wcs`` as a header-only FITS file (``image.wcs``), atomically.

    Parameters
    ----------
    wcs : astropy.wcs.WCS
        Celestial WCS (TAN, TAN-SIP, TPV, ...).
    path : path-like
        Destination, usually ``<task>/image.wcs``.
    extra : dict, optional
        Further cards, e.g. ``{"ASTRRMS": (0.12, "astrometric RMS, arcsec")}``.
    """
    if not wcs.has_celestial:
        raise AstrometryError("the WCS to write has no celestial axes")
    hdu = fits.PrimaryHDU(header=wcs_header(wcs, extra))
    hdu.header.add_history("astrometric solution written by SkySift")
    write_atomic(hdu, path)


def read_wcs_file(path: str | os.PathLike) -> WCS:
    """Read the WCS written by :func:`write_wcs_file` (or astrometry.net's ``wcs.fits``)."""
    try:
        header = fits.getheader(path)
    except (OSError, ValueError) as exc:
        raise AstrometryError(f"cannot read the WCS file {path}: {exc}") from exc
    return wcs_from_header(header)


def wcs_from_header(header: fits.Header) -> WCS:
    """The celestial WCS of a header, with the image size from NAXISn or IMAGEW/IMAGEH."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(header, naxis=2, relax=True)
    except Exception as exc:  # wcslib raises many types for broken headers
        raise AstrometryError(f"the WCS cannot be read: {exc}") from exc
    if not wcs.has_celestial:
        raise AstrometryError("the header holds no celestial WCS")
    width = header.get("IMAGEW", header.get("NAXIS1"))
    height = header.get("IMAGEH", header.get("NAXIS2"))
    if width and height and wcs.pixel_shape is None:
        wcs.pixel_shape = (int(width), int(height))
    return wcs


def pixel_to_sky(wcs: WCS, x: ArrayLike, y: ArrayLike) -> tuple[NDArray, NDArray]:
    """RA, Dec (degrees) of 0-based pixel positions, distortions included."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        ra, dec = wcs.all_pix2world(np.asarray(x, float), np.asarray(y, float), 0)
    return ra, dec


def sky_to_pixel(
    wcs: WCS, ra: ArrayLike, dec: ArrayLike, tolerance: float = 1e-8
) -> tuple[NDArray, NDArray]:
    """0-based pixel positions of sky positions, inverted to ``tolerance`` pixels.

    astropy inverts SIP/TPV distortions iteratively with a 1e-4 pixel
    tolerance by default; this asks for a far tighter one so that pixel →
    sky → pixel round trips are exact for any use.
    """
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", FITSFixedWarning)
        x, y = wcs.all_world2pix(
            np.asarray(ra, float),
            np.asarray(dec, float),
            0,
            tolerance=tolerance,
            maxiter=100,
            quiet=True,
        )
    return x, y


def apply_wcs(header: fits.Header, wcs: WCS, extra: dict[str, Any] | None = None) -> fits.Header:
    """Copy of an image header whose WCS is replaced by ``wcs`` (for the download).

    Every old WCS card (CDELT/CROTA, PC, SIP, TPV PV terms, alternates) is
    removed first so that no stale term distorts the new solution.
    """
    out = strip_wcs(header)
    cards = wcs_header(wcs, extra)
    for key in ("IMAGEW", "IMAGEH"):
        cards.remove(key, ignore_missing=True)
    out.update(cards)
    out.add_history("WCS replaced by the SkySift astrometric solution")
    return out
