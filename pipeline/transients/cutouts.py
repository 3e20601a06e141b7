"""Cutout images of a transient candidate, as in the reference paper's Figure 7.

Four panels centred on the candidate: the image, an atlas image of the same patch of
sky from CDS hips2fits (Pan-STARRS north of Dec −30°, SkyMapper south of it, in the
closest band), the detection footprint (the candidate's segment of the segmentation
map) and the mask. A red circle of the aperture radius marks the candidate; the title
gives its name, calibrated magnitude, band, local detection limit, time and
annotations.

A minimal module for this step until a shared ``pipeline.cutouts`` exists.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.wcs import WCS

DEFAULT_HIPS2FITS_URL = "https://alasky.cds.unistra.fr/hips-image-services/hips2fits"
DEFAULT_HIPS2FITS_TIMEOUT_S = 30.0
PS1_SOUTH_LIMIT_DEG = -30.0  # Pan-STARRS 3pi does not reach further south
# Survey band used for each of our bands (PS1 has grizy; SkyMapper uvgriz).
_PS1_BAND = {"u": "g", "U": "g", "B": "g", "g": "g", "V": "g", "BP": "g", "r": "r", "R": "r"}
_PS1_BAND |= {"G": "r", "clear": "r", "i": "i", "I": "i", "RP": "i", "z": "z", "y": "y"}
_PS1_BAND |= {"J": "y", "H": "y", "Ks": "y"}
_SKYMAPPER_BAND = {**_PS1_BAND, "u": "u", "U": "u", "y": "z", "J": "z", "H": "z", "Ks": "z"}
PANEL_PIXELS = 3.0  # inches per panel


class AtlasError(Exception):
    """hips2fits could not give the atlas image; the message says why."""


def atlas_survey(band: str, dec: float) -> str:
    """HiPS identifier of the atlas image for a band at a declination."""
    if dec > PS1_SOUTH_LIMIT_DEG:
        return f"PanSTARRS/DR1/{_PS1_BAND.get(band, 'r')}"
    return f"CDS/P/skymapper-{_SKYMAPPER_BAND.get(band, 'r').upper()}"


@dataclass
class CutoutPanels:
    """Square stamps around a candidate (NaN outside the image) and the stamp WCS."""

    image: np.ndarray
    footprint: np.ndarray | None
    mask: np.ndarray | None
    wcs: WCS | None
    centre: tuple[float, float]  # candidate position inside the stamp, 0-based (x, y)
    atlas: np.ndarray | None = None


def _stamp(array: np.ndarray, x0: int, y0: int, size: int, fill) -> np.ndarray:
    ny, nx = array.shape
    out = np.full((size, size), fill, dtype=np.result_type(array.dtype, type(fill)))
    xs, ys = max(x0, 0), max(y0, 0)
    xe, ye = min(x0 + size, nx), min(y0 + size, ny)
    if xs < xe and ys < ye:
        out[ys - y0 : ye - y0, xs - x0 : xe - x0] = array[ys:ye, xs:xe]
    return out


def cut_panels(
    image: np.ndarray,
    x: float,
    y: float,
    radius: int,
    *,
    segmentation: np.ndarray | None = None,
    label: int | None = None,
    mask: np.ndarray | None = None,
    wcs: WCS | None = None,
) -> CutoutPanels:
    """Stamps of ``2·radius + 1`` pixels centred on the pixel nearest (x, y)."""
    size = 2 * int(radius) + 1
    x0, y0 = round(float(x)) - radius, round(float(y)) - radius
    stamp = _stamp(np.asarray(image, float), x0, y0, size, np.nan)
    footprint = None
    if segmentation is not None and label is not None:
        footprint = (_stamp(np.asarray(segmentation), x0, y0, size, 0) == label).astype(float)
    mask_stamp = None if mask is None else _stamp(np.asarray(mask), x0, y0, size, 0).astype(float)
    stamp_wcs = None
    if wcs is not None:  # the same projection with the reference pixel moved (SIP follows)
        header = wcs.to_header(relax=True)
        header["CRPIX1"] = float(header["CRPIX1"]) - x0
        header["CRPIX2"] = float(header["CRPIX2"]) - y0
        stamp_wcs = WCS(header)
        stamp_wcs.pixel_shape = (size, size)
    return CutoutPanels(stamp, footprint, mask_stamp, stamp_wcs, (x - x0, y - y0))


@functools.cache
def _hips_client(url: str, timeout: float):
    from astroquery.hips2fits import hips2fitsClass

    client = hips2fitsClass()
    client.server, client.timeout = url, timeout
    return client


def fetch_atlas(
    wcs: WCS,
    survey: str,
    url: str = DEFAULT_HIPS2FITS_URL,
    timeout: float = DEFAULT_HIPS2FITS_TIMEOUT_S,
) -> np.ndarray:
    """The atlas image on the pixel grid of ``wcs`` (hips2fits, FITS output).

    Raises
    ------
    AtlasError
        The service failed or sent something that is not an image.
    """
    try:
        hdul = _hips_client(url, timeout).query_with_wcs(hips=survey, wcs=wcs, format="fits")
        data = np.asarray(hdul[0].data, float)
    except Exception as exc:  # network, HTTP and FITS errors all mean "no atlas"
        raise AtlasError(f"hips2fits ({survey}) failed: {str(exc)[:160]}") from exc
    if data.ndim != 2:
        raise AtlasError(f"hips2fits ({survey}) sent a {data.ndim}-D array, not an image")
    return data


def _limits(data: np.ndarray) -> tuple[float, float]:
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(finite, [0.5, 99.5])
    return float(low), float(high if high > low else low + 1)


def plot_candidate(
    panels: CutoutPanels, title: str, path: str | Path, aperture_radius: float, atlas_name: str = ""
) -> None:
    """Draw the four panels with the reticle and write a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.patches import Circle

    named = [
        ("image", panels.image),
        (f"atlas {atlas_name}".strip(), panels.atlas),
        ("footprint", panels.footprint),
        ("mask", panels.mask),
    ]
    figure = Figure(figsize=(PANEL_PIXELS * len(named), PANEL_PIXELS + 0.9))
    axes = figure.subplots(1, len(named))
    for ax, (name, data) in zip(axes, named, strict=True):
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(name, fontsize=9)
        if data is None:
            ax.text(0.5, 0.5, "not available", ha="center", va="center", transform=ax.transAxes)
            continue
        low, high = _limits(data)
        ax.imshow(
            data, origin="lower", cmap="Blues_r", vmin=low, vmax=high, interpolation="nearest"
        )
        ax.add_patch(Circle(panels.centre, aperture_radius, fill=False, color="red", lw=1.2))
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
