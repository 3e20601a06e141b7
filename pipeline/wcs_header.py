"""Repairing and checking the WCS keywords of an image header.

Headers from SCAMP, IRAF, PRISM and degenerate cubes carry WCS keywords that
make astropy fail or misread the solution. :func:`sanitize_wcs_header`
repairs them (reporting each change) and :func:`check_wcs` decides whether
the result is a usable celestial WCS.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS

from pipeline.header import to_float

MAX_PIXEL_SCALE_ARCSEC = 100.0  # coarser than this is a placeholder WCS, not a solution
MIN_PIXEL_SCALE_ARCSEC = 1e-3


@dataclass
class WcsCheck:
    """Whether the header holds a celestial WCS we can use.

    Attributes
    ----------
    wcs : astropy.wcs.WCS or None
        The celestial WCS (sanitised header), None if there is none.
    usable : bool
        Celestial, finite over the image and with a plausible pixel scale.
    pixel_scale_arcsec : float or None
        Geometric-mean pixel scale at the image centre.
    ra_center, dec_center : float or None
        Sky position of the image centre, degrees.
    reason : str
        Why the WCS is not usable (empty when it is).
    """

    wcs: WCS | None = None
    usable: bool = False
    pixel_scale_arcsec: float | None = None
    ra_center: float | None = None
    dec_center: float | None = None
    reason: str = ""


_WCS_NUMERIC = re.compile(
    r"^(CRVAL|CRPIX|CDELT|CROTA)\d+$|^(CD|PC|PV)\d+_\d+$|^(A|B|AP|BP)_\d+_\d+$"
    r"|^(A|B|AP|BP)_ORDER$|^(EQUINOX|LONPOLE|LATPOLE|WCSAXES)$"
)
_IRAF_KEYS = re.compile(r"^WAT\d_\d{3}$|^WCSDIM$")
_PRISM_KEYS = ("CDELTM1", "CDELTM2", "XPIXELSZ", "YPIXELSZ")
_AXIS_KEY = re.compile(r"^(CTYPE|CUNIT|CRVAL|CRPIX|CDELT|CROTA|NAXIS)(\d+)$")
_MATRIX_KEY = re.compile(r"^(CD|PC)(\d+)_(\d+)$")
_PARAMETER_KEY = re.compile(r"^(PV|PS)(\d+)_(\d+)$")  # PVi_m: i is the axis, m a parameter


def _is_high_axis(key: str) -> bool:
    """True for WCS keywords of a third or higher axis (degenerate cube leftovers)."""
    for pattern, axis_groups in ((_AXIS_KEY, (2,)), (_MATRIX_KEY, (2, 3)), (_PARAMETER_KEY, (2,))):
        match = pattern.match(key)
        if match:
            return any(int(match.group(g)) > 2 for g in axis_groups)
    return False


def _fix_ctype(value: str) -> str:
    """Re-pad a CTYPE like ``DEC---TAN`` (PRISM) to the 8-character form ``DEC--TAN``."""
    match = re.fullmatch(r"\s*(RA|DEC|GLON|GLAT|ELON|ELAT)-+([A-Z]{3})(-SIP)?\s*", value.upper())
    if not match:
        return value
    axis, proj, sip = match.groups()
    return f"{axis}{'-' * (5 - len(axis))}{proj}{sip or ''}"


def sanitize_wcs_header(header: fits.Header) -> tuple[fits.Header, list[str]]:
    """Repair WCS keywords that make astropy fail or misread the WCS.

    Handles RADECSYS (renamed RADESYS), numbers written as strings, SCAMP
    polynomial PV terms on a TAN CTYPE (renamed TPV, which astropy supports),
    PRISM's malformed CTYPE and extra keywords, IRAF WAT cards (and TNX/ZPX,
    which astropy cannot evaluate: replaced by TAN/ZPN without distortion),
    SIP coefficients without ``-SIP`` in CTYPE, and leftovers of a third axis.

    Returns
    -------
    header, fixes
        A repaired copy and a description of each change.
    """
    out = header.copy()
    fixes: list[str] = []
    if "RADECSYS" in out:
        if "RADESYS" not in out:
            out["RADESYS"] = str(out["RADECSYS"]).strip()
        del out["RADECSYS"]
        fixes.append("RADECSYS renamed to RADESYS")
    for key in list(out.keys()):
        if _WCS_NUMERIC.match(key) and isinstance(out[key], str):
            number = to_float(out[key])
            if number is None:
                del out[key]
                fixes.append(f"{key} removed: {header[key]!r} is not a number")
            else:
                out[key] = number
                fixes.append(f"{key} converted from the string {header[key]!r} to a number")
    for axis in ("1", "2"):
        key = f"CTYPE{axis}"
        if key in out and isinstance(out[key], str) and out[key].strip():
            fixed = _fix_ctype(out[key])
            if fixed != out[key].strip():
                fixes.append(f"{key} {out[key]!r} corrected to {fixed!r}")
                out[key] = fixed
    _fix_distortions(out, fixes)
    for key in list(out.keys()):
        if _is_high_axis(key):
            del out[key]
            fixes.append(f"{key} removed (third-axis leftover)")
    if int(out.get("WCSAXES", 2) or 2) > 2:
        out["WCSAXES"] = 2
        fixes.append("WCSAXES set to 2")
    return out, fixes


def _fix_distortions(out: fits.Header, fixes: list[str]) -> None:
    ctype1 = str(out.get("CTYPE1", "")).upper()
    ctype2 = str(out.get("CTYPE2", "")).upper()
    pv_keys = [k for k in out if re.fullmatch(r"PV[12]_\d+", k)]
    has_sip = "A_ORDER" in out and "B_ORDER" in out
    if ctype1.endswith("TAN") and ctype2.endswith("TAN") and pv_keys:
        # SCAMP always writes the linear terms PV1_1 and PV2_1 (close to 1)
        if to_float(out.get("PV1_1")) and to_float(out.get("PV2_1")) and not has_sip:
            out["CTYPE1"], out["CTYPE2"] = "RA---TPV", "DEC--TPV"
            fixes.append("TAN with SCAMP PV distortion terms relabelled TPV")
        else:
            for key in pv_keys:
                del out[key]
            fixes.append(f"projection parameters {', '.join(pv_keys)} removed from a TAN WCS")
    if has_sip and not ctype1.endswith("-SIP") and ctype1[5:8] == "TAN":
        out["CTYPE1"], out["CTYPE2"] = ctype1[:8] + "-SIP", ctype2[:8] + "-SIP"
        fixes.append("SIP coefficients present: -SIP appended to CTYPE")
    if ctype1[5:8] in ("TNX", "ZPX"):
        replacement = "TAN" if ctype1[5:8] == "TNX" else "ZPN"
        out["CTYPE1"] = ctype1[:5] + replacement
        out["CTYPE2"] = ctype2[:5] + replacement
        fixes.append(
            f"IRAF {ctype1[5:8]} projection replaced by {replacement}: "
            "its distortion terms cannot be evaluated"
        )
    iraf = [k for k in out if _IRAF_KEYS.match(k)]
    for key in iraf:
        del out[key]
    if iraf:
        fixes.append(f"IRAF WAT keywords removed ({len(iraf)})")
    prism = [k for k in _PRISM_KEYS if k in out]
    for key in prism:
        del out[key]
    if prism:
        fixes.append(f"PRISM keywords removed: {', '.join(prism)}")


def check_wcs(header: fits.Header, shape: tuple[int, int]) -> WcsCheck:
    """Build the celestial WCS of a (sanitised) header and check it is usable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wcs = WCS(header, naxis=2)
    except Exception as exc:  # astropy/wcslib raise many types for broken headers
        return WcsCheck(reason=f"astropy cannot read the WCS: {exc}")
    if not wcs.has_celestial:
        return WcsCheck(reason="no celestial WCS in the header")
    wcs = wcs.celestial
    ny, nx = shape
    cx, cy = (nx - 1) / 2.0, (ny - 1) / 2.0
    xs = np.array([cx, cx + 1, cx, 0, nx - 1, 0, nx - 1])
    ys = np.array([cy, cy, cy + 1, 0, 0, ny - 1, ny - 1])
    try:
        ra, dec = wcs.all_pix2world(xs, ys, 0)
    except Exception as exc:
        return WcsCheck(wcs=wcs, reason=f"the WCS cannot be evaluated: {exc}")
    if not (np.all(np.isfinite(ra)) and np.all(np.isfinite(dec))):
        return WcsCheck(wcs=wcs, reason="the WCS gives no sky position for parts of the image")
    points = SkyCoord(ra, dec, unit="deg")
    step_x = points[0].separation(points[1]).arcsec
    step_y = points[0].separation(points[2]).arcsec
    scale = float(np.sqrt(step_x * step_y))
    check = WcsCheck(
        wcs=wcs,
        pixel_scale_arcsec=scale,
        ra_center=float(ra[0] % 360.0),
        dec_center=float(dec[0]),
    )
    if not MIN_PIXEL_SCALE_ARCSEC < scale < MAX_PIXEL_SCALE_ARCSEC:
        check.reason = (
            f"pixel scale {scale:.4g}″ is implausible (must be between "
            f"{MIN_PIXEL_SCALE_ARCSEC}″ and {MAX_PIXEL_SCALE_ARCSEC}″)"
        )
        return check
    check.usable = True
    return check
