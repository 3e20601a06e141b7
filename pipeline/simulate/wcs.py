"""The true (distorted) WCS of a simulated image and wrong-on-purpose variants of it.

The science image has a TAN-SIP WCS: a CD matrix for scale and rotation and
SIP polynomials A/B of order ``sip_order`` whose displacement reaches
``sip_corner_px`` pixels at the image corners. The inverse polynomials AP/BP are
fitted by least squares so that readers that need them (DS9, SCAMP) find them.
"""

from __future__ import annotations

import re

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io.fits import Header
from astropy.wcs import WCS, Sip
from numpy.typing import NDArray

# header keywords that carry a celestial WCS (removed for the 'no_wcs' variant)
_WCS_KEY = re.compile(
    r"^(WCSAXES|WCSNAME|CTYPE\d|CRVAL\d|CRPIX\d|CDELT\d|CUNIT\d|CROTA\d|CD\d_\d|PC\d_\d|"
    r"PV\d_\d+|PS\d_\d+|LONPOLE|LATPOLE|RADESYSA?|EQUINOX|EPOCH|MJDREF|DATEREF|"
    r"A_ORDER|B_ORDER|AP_ORDER|BP_ORDER|A_\d+_\d+|B_\d+_\d+|AP_\d+_\d+|BP_\d+_\d+|"
    r"A_DMAX|B_DMAX)$"
)


def rotation_matrix(angle_deg: float) -> NDArray:
    """Counter-clockwise rotation of the intermediate world plane by ``angle_deg``."""
    t = np.deg2rad(angle_deg)
    return np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])


def cd_matrix(pixel_scale_arcsec: float, rotation_deg: float) -> NDArray:
    """CD matrix for north up / east left rotated by ``rotation_deg``."""
    scale = pixel_scale_arcsec / 3600.0
    base = np.array([[-scale, 0.0], [0.0, scale]])
    return rotation_matrix(rotation_deg) @ base


def _poly_terms(order: int, min_degree: int) -> list[tuple[int, int]]:
    return [
        (p, q) for p in range(order + 1) for q in range(order + 1) if min_degree <= p + q <= order
    ]


def _evaluate(coeffs: NDArray, u_: NDArray, v_: NDArray) -> NDArray:
    out = np.zeros_like(u_, dtype=float)
    for (p, q), c in np.ndenumerate(coeffs):
        if c != 0.0:
            out += c * u_**p * v_**q
    return out


def _edge_grid(nx: int, ny: int, crpix: NDArray, n: int = 33) -> tuple[NDArray, NDArray]:
    xs = np.linspace(1.0, nx, n) - crpix[0]
    ys = np.linspace(1.0, ny, n) - crpix[1]
    uu, vv = np.meshgrid(xs, ys)
    return uu.ravel(), vv.ravel()


def make_sip_coefficients(
    nx: int, ny: int, crpix: NDArray, order: int, corner_px: float, rng: np.random.Generator
) -> tuple[NDArray, NDArray]:
    """Random forward SIP A/B arrays scaled to ``corner_px`` maximum displacement."""
    a = np.zeros((order + 1, order + 1))
    b = np.zeros((order + 1, order + 1))
    half = max(nx, ny) / 2.0
    for p, q in _poly_terms(order, 2):
        # scale each term so that it is O(1) pixel at the corner before normalising
        a[p, q] = rng.normal(0, 1) / half ** (p + q - 1) / half
        b[p, q] = rng.normal(0, 1) / half ** (p + q - 1) / half
    uu, vv = _edge_grid(nx, ny, crpix)
    shift = np.hypot(_evaluate(a, uu, vv), _evaluate(b, uu, vv)).max()
    if shift == 0 or corner_px == 0:
        return a * 0, b * 0
    return a * corner_px / shift, b * corner_px / shift


def fit_inverse_sip(
    a: NDArray, b: NDArray, nx: int, ny: int, crpix: NDArray, order: int
) -> tuple[NDArray, NDArray, float]:
    """Least-squares AP/BP (degrees 1..order) inverting A/B over the image.

    Returns AP, BP and the worst residual in pixels over a dense test grid.
    """
    uu, vv = _edge_grid(nx, ny, crpix, n=61)
    fu, fv = uu + _evaluate(a, uu, vv), vv + _evaluate(b, uu, vv)
    terms = _poly_terms(order, 1)
    design = np.stack([fu**p * fv**q for p, q in terms], axis=1)
    sol, *_ = np.linalg.lstsq(design, np.c_[uu - fu, vv - fv], rcond=None)
    sol_u, sol_v = sol[:, 0], sol[:, 1]
    ap = np.zeros((order + 1, order + 1))
    bp = np.zeros((order + 1, order + 1))
    for (p, q), cu, cv in zip(terms, sol_u, sol_v, strict=True):
        ap[p, q], bp[p, q] = cu, cv
    resid = np.hypot(fu + design @ sol_u - uu, fv + design @ sol_v - vv).max()
    return ap, bp, float(resid)


def make_wcs(
    nx: int,
    ny: int,
    ra: float,
    dec: float,
    pixel_scale: float,
    rotation_deg: float,
    sip_order: int = 3,
    sip_corner_px: float = 0.0,
    rng: np.random.Generator | None = None,
) -> WCS:
    """A TAN (or TAN-SIP if ``sip_corner_px`` > 0) WCS centred on the image centre."""
    w = WCS(naxis=2)
    crpix = np.array([(nx + 1) / 2.0, (ny + 1) / 2.0])
    w.wcs.crpix = crpix
    w.wcs.crval = [ra, dec]
    w.wcs.cd = cd_matrix(pixel_scale, rotation_deg)
    w.wcs.radesys = "ICRS"
    w.pixel_shape = (nx, ny)
    if sip_corner_px > 0:
        if rng is None:
            raise ValueError("a random generator is needed to draw SIP coefficients")
        a, b = make_sip_coefficients(nx, ny, crpix, sip_order, sip_corner_px, rng)
        ap, bp, _ = fit_inverse_sip(a, b, nx, ny, crpix, sip_order + 1)
        w.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
        w.sip = Sip(a, b, ap, bp, crpix)
    else:
        w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.set()
    return w


def wcs_header(w: WCS) -> Header:
    """Header cards of ``w`` (SIP included), without date cards the WCS may add."""
    header = w.to_header(relax=True)
    for key in ("DATEREF", "MJDREF", "MJD-OBS", "DATE-OBS", "DATEOBS"):
        header.remove(key, ignore_missing=True, remove_all=True)
    return header


def strip_wcs(header: Header) -> Header:
    """Copy of ``header`` without any celestial WCS keyword."""
    out = header.copy(strip=False)
    for key in [k for k in out if _WCS_KEY.match(k)]:
        out.remove(key, ignore_missing=True, remove_all=True)
    return out


def replace_wcs(header: Header, w: WCS) -> Header:
    """Copy of ``header`` whose WCS cards are those of ``w``."""
    out = strip_wcs(header)
    out.update(wcs_header(w))
    return out


def perturb_wcs(w: WCS, shift_arcsec: float, rot_deg: float, pa_deg: float) -> WCS:
    """A wrong-but-close copy of ``w``.

    The reference point CRVAL moves by ``shift_arcsec`` towards position angle
    ``pa_deg`` (east of north), and the CD matrix turns by ``rot_deg`` about
    CRPIX. SIP terms are kept.
    """
    out = w.deepcopy()
    centre = SkyCoord(*out.wcs.crval, unit="deg")
    moved = centre.directional_offset_by(pa_deg * u.deg, shift_arcsec * u.arcsec)
    out.wcs.crval = [moved.ra.deg, moved.dec.deg]
    out.wcs.cd = rotation_matrix(rot_deg) @ out.wcs.cd
    out.wcs.set()
    return out


def rotation_angle_deg(w: WCS) -> float:
    """Rotation of the pixel +y axis from north, east positive, from the CD matrix."""
    cd = w.wcs.cd if w.wcs.has_cd() else w.wcs.pc * w.wcs.cdelt[:, None]
    return float(np.rad2deg(np.arctan2(-cd[0, 1], cd[1, 1])))
