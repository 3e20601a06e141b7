"""Photometric filters SkySift knows, and the normaliser for FILTER header values.

This module is the single list of filter names used everywhere else (forms, the
API, catalogue and colour choice). Real instruments write the filter in many
ways (``"Rc"``, ``"sdss_r"``, ``"r'"``, ``"Bessell R"``,
``"i DECam SDSS c0003 7835.0 1470.0"``, ``"Lum"`` ...); :func:`normalize_filter`
maps them to one of :data:`FILTER_NAMES`, or returns None for unknown values.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

log = logging.getLogger("skysift.filters")

JOHNSON_COUSINS = "Johnson-Cousins"
SLOAN = "SDSS/Pan-STARRS"
GAIA = "Gaia"
TWOMASS = "2MASS"
UNFILTERED = "unfiltered"

SYSTEMS: tuple[str, ...] = (JOHNSON_COUSINS, SLOAN, GAIA, TWOMASS, UNFILTERED)


@dataclass(frozen=True)
class FilterInfo:
    """One filter SkySift can calibrate in.

    Attributes
    ----------
    name : str
        Canonical name (case matters: ``R`` is Cousins, ``r`` is Sloan).
    system : str
        Photometric system, one of :data:`SYSTEMS`.
    magnitude_system : str
        ``"Vega"`` or ``"AB"``: the zero-point convention reference
        catalogues are transformed to for this band.
    wavelength_nm : float or None
        Approximate effective wavelength, for ordering bands and picking colours.
    """

    name: str
    system: str
    magnitude_system: str
    wavelength_nm: float | None


# Effective wavelengths are rounded values from Bessell (2005, ARA&A 43, 293) for
# UBVRI/JHKs, Tonry et al. (2012, ApJ 750, 99) for Pan-STARRS grizy, Fukugita et al.
# (1996, AJ 111, 1748) for SDSS u, and Gaia Collaboration (2018, A&A 616, A4) for G/BP/RP.
FILTERS: dict[str, FilterInfo] = {
    info.name: info
    for info in (
        FilterInfo("U", JOHNSON_COUSINS, "Vega", 366.0),
        FilterInfo("B", JOHNSON_COUSINS, "Vega", 438.0),
        FilterInfo("V", JOHNSON_COUSINS, "Vega", 545.0),
        FilterInfo("R", JOHNSON_COUSINS, "Vega", 641.0),
        FilterInfo("I", JOHNSON_COUSINS, "Vega", 798.0),
        FilterInfo("u", SLOAN, "AB", 356.0),
        FilterInfo("g", SLOAN, "AB", 481.0),
        FilterInfo("r", SLOAN, "AB", 617.0),
        FilterInfo("i", SLOAN, "AB", 752.0),
        FilterInfo("z", SLOAN, "AB", 866.0),
        FilterInfo("y", SLOAN, "AB", 962.0),
        FilterInfo("G", GAIA, "Vega", 622.0),
        FilterInfo("BP", GAIA, "Vega", 511.0),
        FilterInfo("RP", GAIA, "Vega", 777.0),
        FilterInfo("J", TWOMASS, "Vega", 1235.0),
        FilterInfo("H", TWOMASS, "Vega", 1662.0),
        FilterInfo("Ks", TWOMASS, "Vega", 2159.0),
        FilterInfo("clear", UNFILTERED, "Vega", None),
    )
}
FILTER_NAMES: tuple[str, ...] = tuple(FILTERS)

# Words meaning "no filter in the beam" (compared in lower case, separators removed).
_CLEAR_WORDS = frozenset(
    {
        "clear",
        "clr",
        "cl",
        "c",
        "l",
        "lum",
        "luminance",
        "none",
        "open",
        "empty",
        "free",
        "nofilter",
        "unfiltered",
        "air",
        "cv",
        "cr",
    }
)

# Exact (case-sensitive) spellings of a bare band, after separators are removed.
_BARE: dict[str, str] = {
    **{band: band for band in ("U", "B", "V", "R", "I")},
    **{band: band for band in ("u", "g", "r", "i", "z", "y")},
    **{band: band for band in ("G", "BP", "RP", "J", "H", "Ks")},
    # Cousins R and I with their usual suffixes
    "Rc": "R",
    "RC": "R",
    "Ic": "I",
    "IC": "I",
    "Ij": "I",
    "Rj": "R",
    "I'": "I",
    # Sloan primed bands: u' g' r' i' z', and the "p" spelling some cameras use
    **{f"{band}'": band for band in "ugriz"},
    **{f"{band}p": band for band in "ugriz"},
    **{f"{band}prime": band for band in "ugriz"},
    # Pan-STARRS z_s / y_s, and upper-case z/y (no Johnson band of that name)
    "zs": "z",
    "ys": "y",
    "Z": "z",
    "Y": "y",
    # Gaia spellings
    "Gbp": "BP",
    "GBP": "BP",
    "Grp": "RP",
    "GRP": "RP",
    "bp": "BP",
    "Bp": "BP",
    "rp": "r",  # r' written without the prime; Gaia RP is written in upper case
    # 2MASS K short
    "K": "Ks",
    "KS": "Ks",
    "ks": "Ks",
    "Kshort": "Ks",
    "Kp": "Ks",
}

# Words naming a system; they fix the case of a bare band letter next to them.
_SYSTEM_WORDS: dict[str, str] = {
    **dict.fromkeys(("sdss", "sloan", "ps1", "panstarrs", "ps", "ztf", "decam"), SLOAN),
    **dict.fromkeys(("lsst", "hsc", "megacam", "megaprime", "skymapper", "atlas"), SLOAN),
    **dict.fromkeys(("bessell", "bessel", "johnson", "cousins", "jc", "kron"), JOHNSON_COUSINS),
    **dict.fromkeys(("gaia",), GAIA),
    **dict.fromkeys(("2mass", "mko", "wfcam", "vista", "ukirt"), TWOMASS),
}

# Narrow-band filters are not calibratable against broad-band catalogues; catching
# them first keeps "H-alpha" from being read as 2MASS H.
_NARROWBAND = re.compile(r"alpha|beta|oiii|sii|nii|heii|narrow|^(ha|hb|o3|s2|n2)$", re.IGNORECASE)

_SEPARATORS = re.compile(r"[\s_\-./,:;()\[\]{}+]+")


def _band_in_system(token: str, system: str) -> str | None:
    """The canonical band for a bare token when a system word says which system."""
    stripped = token.rstrip("'")
    lower = stripped.lower()
    if lower.endswith("prime"):
        lower = lower[: -len("prime")]
    if system == SLOAN:
        if lower in {"u", "g", "r", "i", "z", "y", "zs", "ys", "up", "gp", "rp", "ip", "zp"}:
            return lower[0]
    elif system == JOHNSON_COUSINS:
        if lower in {"u", "b", "v", "r", "i", "rc", "ic"}:
            return lower[0].upper()
    elif system == GAIA:
        if lower in {"g", "bp", "rp", "gbp", "grp"}:
            return {"g": "G", "bp": "BP", "rp": "RP", "gbp": "BP", "grp": "RP"}[lower]
    elif system == TWOMASS and lower in {"j", "h", "k", "ks"}:
        return {"j": "J", "h": "H", "k": "Ks", "ks": "Ks"}[lower]
    return None


def _split_system(word: str) -> tuple[str, str] | None:
    """Split a glued word like ``sdssr`` or ``vbessell`` into (system, band part)."""
    lower = word.lower()
    for name, system in _SYSTEM_WORDS.items():
        if lower.startswith(name) and len(lower) > len(name):
            return system, word[len(name) :]
        if lower.endswith(name) and len(lower) > len(name):
            return system, word[: -len(name)]
    return None


def normalize_filter(value: object) -> str | None:
    """Map a FILTER header value to one of :data:`FILTER_NAMES`.

    Parameters
    ----------
    value : object
        The raw header value (usually a string; numbers and None are accepted).

    Returns
    -------
    str or None
        The canonical filter name, ``"clear"`` for unfiltered/luminance, or None
        when the value is not recognised (a warning is logged).

    Examples
    --------
    >>> normalize_filter("Bessell R"), normalize_filter("sdss_r"), normalize_filter("Lum")
    ('R', 'r', 'clear')
    """
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    band = _normalize_text(text)
    if band is None:
        log.warning("unknown filter %r: not one of %s", text, ", ".join(FILTER_NAMES))
    return band


def _normalize_text(text: str) -> str | None:
    compact = _SEPARATORS.sub("", text)
    if compact.lower() in _CLEAR_WORDS:
        return "clear"
    if _NARROWBAND.search(compact):
        return None
    if compact in _BARE:
        return _BARE[compact]
    glued = _split_system(compact)
    if glued is not None:
        band = _band_in_system(glued[1], glued[0])
        if band is not None:
            return band
    # Several words: e.g. "Johnson V", "R_C", "K_s", "i DECam SDSS c0003 7835.0 1470.0".
    tokens = [t for t in _SEPARATORS.split(text) if t]
    systems = [_SYSTEM_WORDS[t.lower()] for t in tokens if t.lower() in _SYSTEM_WORDS]
    candidates = [t for t in tokens if t.lower() not in _SYSTEM_WORDS]
    if len(tokens) >= 2 and tokens[0] + tokens[1] in _BARE:
        # a band split from its suffix: "R_C", "K_s", "z_s", "G_BP"
        return _BARE[tokens[0] + tokens[1]]
    for token in candidates:
        for system in systems:
            band = _band_in_system(token, system)
            if band is not None:
                return band
        if token in _BARE:
            return _BARE[token]
        if token.lower() in _CLEAR_WORDS and len(token) > 1:
            return "clear"
    return None


def filter_system(name: str) -> str:
    """Photometric system of a canonical filter name (one of :data:`SYSTEMS`).

    Raises
    ------
    KeyError
        If ``name`` is not one of :data:`FILTER_NAMES`.
    """
    return FILTERS[name].system


def filters_in_system(system: str) -> list[str]:
    """Canonical filter names of one photometric system, blue to red."""
    members = [info for info in FILTERS.values() if info.system == system]
    members.sort(key=lambda info: info.wavelength_nm or 0.0)
    return [info.name for info in members]
