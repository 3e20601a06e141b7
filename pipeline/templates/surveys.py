"""Clients of the template surveys: Pan-STARRS image cutouts, Legacy Survey cutouts, hips2fits.

Each returns ``(data, header, mask)`` (mask: boolean, True = bad, or None) of one
cutout centred on ``(ra, dec)`` and at least ``size_arcsec`` wide.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from pipeline.templates.errors import TemplateError
from pipeline.templates.http import fetch, open_fits

PS1_PIXEL_SCALE = 0.25  # arcsec, PS1 stack skycells
LEGACY_PIXEL_SCALE = 0.262  # arcsec, Legacy Survey coadds
ASINH_A = 2.5 / math.log(10)  # PS1 stacks store a·asinh((f − BOFFSET)/(2·BSOFTEN))
# Legacy Survey DR9/DR10 MASKBITS (legacysurvey.org/dr10/bitmasks): bits that make a pixel bad.
LEGACY_NPRIMARY, LEGACY_BAILOUT = 1 << 0, 1 << 10
LEGACY_SATUR = {"g": 1 << 2, "r": 1 << 3, "z": 1 << 4, "i": 1 << 14}
LEGACY_ALLMASK = {"g": 1 << 5, "r": 1 << 6, "z": 1 << 7, "i": 1 << 15}


def ps1_linear(data: np.ndarray, header) -> np.ndarray:
    """PS1 asinh-scaled stack pixels → linear flux (BOFFSET/BSOFTEN keywords)."""
    if "BSOFTEN" not in header or "BOFFSET" not in header:
        return data  # already linear
    return header["BOFFSET"] + header["BSOFTEN"] * 2.0 * np.sinh(data / ASINH_A)


def _ps1_files(base: str, ra: float, dec: float, band: str, timeout: float, cache) -> dict:
    body = fetch(
        f"{base}/cgi-bin/ps1filenames.py",
        {"ra": f"{ra:.6f}", "dec": f"{dec:.6f}", "filters": band, "type": "stack,stack.mask"},
        timeout,
        cache,
        "Pan-STARRS",
    )
    lines = [ln.split() for ln in body.decode("utf-8", "replace").splitlines() if ln.strip()]
    if not lines or "filename" not in lines[0]:
        raise TemplateError("the Pan-STARRS file list has an unexpected format")
    head = lines[0]
    rows = [dict(zip(head, ln, strict=False)) for ln in lines[1:]]
    files = {row["type"]: row["filename"] for row in rows if row.get("filter") == band}
    if "stack" not in files:
        raise TemplateError(
            f"Pan-STARRS has no {band} stack at RA {ra:.4f}, Dec {dec:.4f} (south of −30°?)"
        )
    return files


def fetch_ps1(
    base: str,
    ra: float,
    dec: float,
    size_arcsec: float,
    band: str,
    timeout: float,
    cache: Path | None = None,
) -> tuple[np.ndarray, object, np.ndarray | None]:
    """A Pan-STARRS stack cutout (linear flux) and its mask."""
    files = _ps1_files(base, ra, dec, band, timeout, cache)
    size = math.ceil(size_arcsec / PS1_PIXEL_SCALE)
    params = {"ra": f"{ra:.6f}", "dec": f"{dec:.6f}", "size": size, "format": "fits"}
    data, header = open_fits(
        fetch(
            f"{base}/cgi-bin/fitscut.cgi",
            {**params, "red": files["stack"]},
            timeout,
            cache,
            "Pan-STARRS",
        ),
        "Pan-STARRS",
    )
    data = ps1_linear(data, header)
    mask = None
    if "stack.mask" in files:
        mdata, _ = open_fits(
            fetch(
                f"{base}/cgi-bin/fitscut.cgi",
                {**params, "red": files["stack.mask"]},
                timeout,
                cache,
                "Pan-STARRS",
            ),
            "Pan-STARRS",
            mask=True,
        )
        mask = np.nan_to_num(mdata).astype(np.int64) != 0
    return data, header, mask


def fetch_legacy(
    base: str,
    layer: str,
    ra: float,
    dec: float,
    size_arcsec: float,
    band: str,
    timeout: float,
    max_size: int,
    cache: Path | None = None,
) -> tuple[np.ndarray, object, np.ndarray | None]:
    """A Legacy Survey cutout in ``band`` and the bad pixels from its maskbits layer."""
    pixscale = max(LEGACY_PIXEL_SCALE, size_arcsec / max_size)
    size = math.ceil(size_arcsec / pixscale)
    params = {"ra": f"{ra:.6f}", "dec": f"{dec:.6f}", "pixscale": f"{pixscale:.4f}", "size": size}
    data, header = open_fits(
        fetch(
            f"{base}/fits-cutout",
            {**params, "layer": layer, "bands": band},
            timeout,
            cache,
            "Legacy Survey",
        ),
        "Legacy Survey",
    )
    bits, _ = open_fits(
        fetch(
            f"{base}/fits-cutout",
            {**params, "layer": f"{layer}-maskbits"},
            timeout,
            cache,
            "Legacy Survey",
        ),
        "Legacy Survey",
        mask=True,
    )
    bits = np.nan_to_num(bits).astype(np.int64)
    bad_bits = LEGACY_NPRIMARY | LEGACY_BAILOUT | LEGACY_SATUR.get(band, 0)
    bad_bits |= LEGACY_ALLMASK.get(band, 0)
    return data, header, (bits & bad_bits) != 0


def fetch_hips(
    base: str,
    hips: str,
    ra: float,
    dec: float,
    size_arcsec: float,
    pixel_scale: float,
    timeout: float,
    max_size: int,
    cache: Path | None = None,
) -> tuple[np.ndarray, object, None]:
    """A hips2fits TAN cutout of survey ``hips``; the mask is the NaN pixels."""
    width = int(min(max_size, math.ceil(size_arcsec / pixel_scale)))
    params = {
        "hips": hips,
        "width": width,
        "height": width,
        "projection": "TAN",
        "ra": f"{ra:.6f}",
        "dec": f"{dec:.6f}",
        "fov": f"{size_arcsec / 3600:.6f}",
        "format": "fits",
        "rotation_angle": 0,
    }
    data, header = open_fits(fetch(base, params, timeout, cache, "hips2fits"), "hips2fits")
    return data, header, None
