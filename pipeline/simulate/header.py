"""FITS headers of simulated images, and their deliberately damaged variants."""

from __future__ import annotations

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io.fits import Header
from astropy.time import Time
from astropy.wcs import WCS

from .config import FILTER_NAME, SkyConfig
from .wcs import perturb_wcs, replace_wcs, strip_wcs, wcs_header

HEADER_VARIANTS = ("perturbed_wcs", "no_wcs", "no_sip")


def pointing_hint(ra: float, dec: float, error_arcsec: float, rng: np.random.Generator) -> SkyCoord:
    """Where the telescope thought it pointed: the truth moved by ``error_arcsec``."""
    centre = SkyCoord(ra, dec, unit="deg")
    return centre.directional_offset_by(rng.uniform(0, 360) * u.deg, error_arcsec * u.arcsec)


def _radec_cards(hint: SkyCoord, fmt: str) -> tuple[object, object]:
    if fmt == "degrees":
        return round(float(hint.ra.deg), 6), round(float(hint.dec.deg), 6)
    ra = hint.ra.to_string(unit=u.hourangle, sep=":", precision=2, pad=True)
    dec = hint.dec.to_string(unit=u.deg, sep=":", precision=1, alwayssign=True, pad=True)
    return ra, dec


def observation_header(
    *,
    telescope: str,
    instrument: str,
    object_name: str,
    date_obs: str,
    exptime: float,
    gain: float,
    read_noise: float,
    saturation: float,
    hint: SkyCoord,
    radec_format: str,
    wcs: WCS,
) -> Header:
    """Observation cards (as a camera writes them) followed by the WCS cards."""
    header = Header()
    ra_card, dec_card = _radec_cards(hint, radec_format)
    cards = [
        ("ORIGIN", "SkySift simulate", "simulated image with known truth"),
        ("TELESCOP", telescope, "telescope"),
        ("INSTRUME", instrument, "camera"),
        ("OBJECT", object_name, "target name"),
        ("IMAGETYP", "object", "frame type"),
        ("FILTER", FILTER_NAME, "filter (PS1-like r)"),
        ("EXPTIME", float(exptime), "[s] exposure time"),
        ("DATE-OBS", date_obs, "UTC start of exposure"),
        (
            "MJD-OBS",
            round(float(Time(date_obs, format="isot", scale="utc").mjd), 8),
            "[d] MJD at start of exposure",
        ),
        ("GAIN", float(gain), "[e-/ADU] detector gain"),
        ("RDNOISE", float(read_noise), "[e-] read noise"),
        ("SATURATE", float(saturation), "[ADU] saturation level"),
        ("BUNIT", "adu", "pixel unit (sky not subtracted)"),
        ("RA", ra_card, "telescope pointing (approximate)"),
        ("DEC", dec_card, "telescope pointing (approximate)"),
        ("AIRMASS", 1.12, "airmass at mid-exposure"),
    ]
    for key, value, comment in cards:
        header[key] = (value, comment)
    header.update(wcs_header(wcs))
    return header


def science_header(cfg: SkyConfig, wcs: WCS, rng: np.random.Generator, seed: int | None) -> Header:
    """Header of the science image (true WCS, detector and observation cards)."""
    hint = pointing_hint(cfg.ra_center, cfg.dec_center, cfg.pointing_error_arcsec, rng)
    header = observation_header(
        telescope=cfg.telescope,
        instrument=cfg.instrument,
        object_name=cfg.object_name,
        date_obs=cfg.date_obs,
        exptime=cfg.exptime,
        gain=cfg.gain,
        read_noise=cfg.read_noise,
        saturation=cfg.saturation,
        hint=hint,
        radec_format=cfg.header_radec_format,
        wcs=wcs,
    )
    if seed is not None:
        header["SIMSEED"] = (int(seed), "random seed of the simulation")
    for key, value in cfg.extra_header.items():
        header[key] = value
    return header


def header_variant(
    header: Header,
    wcs: WCS,
    kind: str,
    shift_arcsec: float = 20.0,
    rot_deg: float = 0.3,
    pa_deg: float = 30.0,
) -> Header:
    """A copy of ``header`` with a damaged WCS.

    Parameters
    ----------
    kind : {'perturbed_wcs', 'no_wcs', 'no_sip'}
        ``perturbed_wcs``: CRVAL moved by ``shift_arcsec`` towards position angle
        ``pa_deg`` and the CD matrix turned by ``rot_deg`` about CRPIX (SIP kept);
        ``no_wcs``: every celestial WCS card removed (RA/DEC hints stay);
        ``no_sip``: the same WCS without its distortion terms.
    """
    if kind == "perturbed_wcs":
        return replace_wcs(header, perturb_wcs(wcs, shift_arcsec, rot_deg, pa_deg))
    if kind == "no_wcs":
        return strip_wcs(header)
    if kind == "no_sip":
        tan = wcs.deepcopy()
        tan.sip = None
        tan.wcs.ctype = [c.replace("-SIP", "") for c in tan.wcs.ctype]
        tan.wcs.set()
        return replace_wcs(header, tan)
    raise ValueError(f"unknown header variant {kind!r}; choose one of {HEADER_VARIANTS}")
