"""Atlas images of a target's field from CDS hips2fits, for the cutout figure.

Survey choice (as STDWeb's, paper Figure 6): 2MASS for J, H, Ks; otherwise Pan-STARRS
DR1 north of Dec −30° and SkyMapper DR4 south of it, in the survey band nearest in
wavelength to the image filter (u → g, z and y → i for SkyMapper, which offers g, r, i
here; unknown or clear filters → r).

The atlas is asked for on the image's own pixel grid: :func:`atlas_wcs` makes a TAN
WCS with the image's local scale and orientation at the target (no distortion: over a
cutout it is far below a pixel), so that the atlas panel lines up with the image panel.
The request goes through astroquery's hips2fits client
(``GET <url>/hips-image-services/hips2fits?hips=...&wcs=<header JSON>&format=fits``).
Every failure becomes :class:`~pipeline.targets.errors.AtlasUnavailable` with a short
reason for the figure; the atlas never fails the step.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from io import BytesIO

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from pipeline.filters import FILTERS, normalize_filter
from pipeline.targets.errors import AtlasUnavailable

HIPS2FITS_PATH = "/hips-image-services/hips2fits"
SOUTH_LIMIT_DEC = -30.0  # Pan-STARRS 3π covers the sky north of Dec −30°
DEFAULT_BAND = "r"  # for clear/unknown filters
MAX_REASON = 160


@dataclass(frozen=True)
class Survey:
    """A HiPS survey family: id pattern, bands offered, title."""

    pattern: str
    bands: tuple[str, ...]
    title: str


PANSTARRS = Survey("CDS/P/PanSTARRS/DR1/{band}", ("g", "r", "i", "z", "y"), "Pan-STARRS DR1")
SKYMAPPER = Survey("CDS/P/Skymapper/DR4/{band}", ("g", "r", "i"), "SkyMapper DR4")
TWOMASS = Survey("CDS/P/2MASS/{band}", ("J", "H", "K"), "2MASS")
TWOMASS_BANDS = {"J": "J", "H": "H", "Ks": "K"}


@dataclass(frozen=True)
class AtlasChoice:
    """The HiPS to ask for: id (``CDS/P/PanSTARRS/DR1/r``) and a label (``Pan-STARRS DR1 r``)."""

    hips: str
    label: str


def nearest_band(filter_name: str | None, bands: tuple[str, ...]) -> str:
    """The band of ``bands`` nearest in effective wavelength to the filter."""
    info = FILTERS.get(filter_name or "")
    reference = FILTERS[DEFAULT_BAND] if info is None or info.wavelength_nm is None else info
    return min(bands, key=lambda band: abs(FILTERS[band].wavelength_nm - reference.wavelength_nm))


def atlas_survey(filter_name: str | None, dec: float) -> AtlasChoice:
    """The atlas HiPS for an image filter (any spelling) at declination ``dec``."""
    name = filter_name if filter_name in FILTERS else normalize_filter(filter_name)
    if name in TWOMASS_BANDS:
        band = TWOMASS_BANDS[name]
        return AtlasChoice(TWOMASS.pattern.format(band=band), f"{TWOMASS.title} {band}")
    survey = PANSTARRS if dec > SOUTH_LIMIT_DEC else SKYMAPPER
    band = nearest_band(name, survey.bands)
    return AtlasChoice(survey.pattern.format(band=band), f"{survey.title} {band}")


def atlas_wcs(wcs: WCS, x: float, y: float, x0: int, y0: int, size: int) -> WCS:
    """TAN WCS of a ``size``² cutout whose pixel (0, 0) is image pixel (x0, y0).

    The tangent point is the target (image pixel x, y); the CD matrix is the image
    WCS's derivative there (central differences, SIP included).
    """
    celestial = wcs.celestial
    px = np.array([x, x - 0.5, x + 0.5, x, x])
    py = np.array([y, y, y, y - 0.5, y + 0.5])
    ra, dec = celestial.all_pix2world(px, py, 0)
    cos_dec = np.cos(np.radians(dec[0]))

    def offset(i: int, j: int) -> tuple[float, float]:
        d_ra = (ra[j] - ra[i] + 180.0) % 360.0 - 180.0
        return d_ra * cos_dec, dec[j] - dec[i]

    dxi_dx, deta_dx = offset(1, 2)
    dxi_dy, deta_dy = offset(3, 4)
    local = WCS(naxis=2)
    local.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    local.wcs.crval = [float(ra[0]), float(dec[0])]
    local.wcs.crpix = [x - x0 + 1.0, y - y0 + 1.0]  # FITS pixels are 1-based
    local.wcs.cd = [[dxi_dx, dxi_dy], [deta_dx, deta_dy]]
    local.wcs.radesys = "ICRS"
    local.pixel_shape = (size, size)
    return local


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"


def _error_reason(response) -> str:
    """hips2fits' own error text (JSON title/description) or the HTTP status."""
    try:
        content = response.json()
        reason = str(content.get("title", ""))
        if content.get("description"):
            reason += f": {content['description']}"
    except Exception:  # not JSON: an HTML error page
        reason = ""
    return f"hips2fits answered HTTP {response.status_code}" + (f" ({reason})" if reason else "")


def fetch_atlas(hips: str, wcs: WCS, *, url: str, timeout: float) -> np.ndarray:
    """The atlas image on the pixel grid of ``wcs`` (which must carry ``pixel_shape``).

    Raises
    ------
    AtlasUnavailable
        With a short reason: unreachable, too slow, an error answer, not a FITS image,
        or no data (the survey does not cover the field).
    """
    import requests
    from astroquery.hips2fits import hips2fitsClass

    client = hips2fitsClass()
    client.server = url.rstrip("/") + HIPS2FITS_PATH
    client.timeout = timeout
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # astroquery's notes on unused display options
            response = client.query_with_wcs_async(
                hips=hips,
                wcs=wcs,
                format="fits",
                min_cut=0.5,
                max_cut=99.5,
                stretch="linear",
                cmap="Greys_r",
            )
    except requests.exceptions.Timeout:
        raise AtlasUnavailable(f"hips2fits did not answer within {timeout:g} s") from None
    except requests.exceptions.ConnectionError as exc:
        text = str(exc)
        reason = "connection refused" if "refused" in text.lower() else _short(text)
        raise AtlasUnavailable(f"cannot connect to hips2fits ({reason})") from None
    except requests.exceptions.RequestException as exc:
        raise AtlasUnavailable(_short(f"the hips2fits request failed: {exc}")) from None
    if response.status_code != 200:
        raise AtlasUnavailable(_short(_error_reason(response)))
    return _image_from_fits(response.content, wcs)


def _image_from_fits(content: bytes, wcs: WCS) -> np.ndarray:
    try:
        with fits.open(BytesIO(content)) as hdul:
            data = next((h.data for h in hdul if h.data is not None and h.data.ndim >= 2), None)
            image = None if data is None else np.array(data, dtype=np.float32)
    except Exception as exc:  # astropy raises several kinds for a broken file
        raise AtlasUnavailable(_short(f"hips2fits sent no readable FITS image ({exc})")) from None
    if image is None:
        raise AtlasUnavailable("hips2fits sent a FITS file without an image")
    while image.ndim > 2:  # colour HiPS: keep the first plane
        image = image[0]
    expected = (wcs.pixel_shape[1], wcs.pixel_shape[0])
    if image.shape != expected:
        raise AtlasUnavailable(
            f"hips2fits sent a {image.shape[1]}×{image.shape[0]} image, not {expected[1]}×"
            f"{expected[0]}"
        )
    if not np.isfinite(image).any():
        raise AtlasUnavailable("the survey has no data at this position")
    return image
