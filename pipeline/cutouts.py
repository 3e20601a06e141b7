"""Cutouts around a position: same-sized stamps of several images, a FITS file and a figure.

A :class:`Cutout` is a list of panels, so the same code serves every use: forced
photometry of targets (image, atlas, mask: paper Figure 6) and, later, transient
candidates (image, template, difference, error, footprint, mask ...). A panel that
could not be made (an atlas service down) keeps its place with a note saying why.

Files:

* :func:`write_cutout` — multi-extension FITS: the primary HDU carries the metadata
  (``CUTX``/``CUTY`` centre, ``CUTX0``/``CUTY0`` origin in the parent image, ``CUTSIZE``,
  plus the caller's cards), then one image HDU per panel named by the panel (``IMAGE``,
  ``ATLAS``, ``MASK`` ...) with the stamp WCS; a missing panel is an empty HDU whose
  ``NOTE`` card holds the reason. :func:`read_cutout` reads it back.
* :func:`plot_cutout` — PNG: the panels side by side on one pixel grid, circles marked
  on every panel (aperture, annulus), a title.
* :func:`write_blink_strip` — PNG for blinking on the vetting pages: chosen panels side
  by side at one screen pixel per image pixel (a few kB), the image and the template
  sharing one stretch so that only what changed appears to change; the frame names go
  in the PNG's ``Frames`` text chunk (:func:`blink_frames` reads them back).

Pixel convention: 0-based, as in every SkySift table; stamp pixel (0, 0) is parent pixel
(``x0``, ``y0``).
"""

from __future__ import annotations

import math
import os
import textwrap
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from astropy.io import fits
from astropy.visualization import ZScaleInterval
from astropy.wcs import WCS, FITSFixedWarning, Sip
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.image import imsave
from matplotlib.patches import Circle
from numpy.typing import NDArray

from pipeline.calibration.model import ascii_text
from pipeline.fitsio import write_atomic

PanelKind = Literal["image", "mask"]
PANEL_INCHES = 3.0
DPI = 100
NO_DATA_COLOUR = "#35557f"  # pixels outside the parent image or without data
MASK_COLOURS = ListedColormap(["#000000", "#ff9f1c"])  # good, masked
# Primary-header cards of the geometry (the rest is the caller's metadata).
GEOMETRY_KEYS = ("CUTX", "CUTY", "CUTX0", "CUTY0", "CUTSIZE")


@dataclass
class CutoutPanel:
    """One stamp of a cutout.

    Attributes
    ----------
    name : str
        Short key, also the FITS extension name (upper-cased): ``image``, ``atlas``, ``mask``.
    data : numpy.ndarray or None
        The ``size``² stamp; None when it could not be made.
    title : str
        Shown above the panel (``"Pan-STARRS DR1 r"``).
    kind : {"image", "mask"}
        ``"image"``: greyscale with a zscale stretch; ``"mask"``: nonzero pixels marked.
    note : str or None
        Why the stamp is missing, shown in its place (``"atlas unavailable: ..."``).
    """

    name: str
    data: NDArray | None
    title: str
    kind: PanelKind = "image"
    note: str | None = None


@dataclass(frozen=True)
class CircleMark:
    """A circle drawn on every panel, in stamp pixels."""

    x: float
    y: float
    radius: float
    color: str = "red"
    linestyle: str = "-"


@dataclass
class Cutout:
    """Stamps of several images around one position.

    Attributes
    ----------
    x, y : float
        The position in the parent image (0-based pixels).
    x0, y0 : int
        Parent pixel of stamp pixel (0, 0).
    size : int
        Side of the stamps.
    panels : list of CutoutPanel
    wcs : astropy.wcs.WCS or None
        WCS of the stamps' pixel grid.
    meta : dict
        Metadata for the FITS primary header (short keys; plain numbers and text).
    """

    x: float
    y: float
    x0: int
    y0: int
    size: int
    panels: list[CutoutPanel] = field(default_factory=list)
    wcs: WCS | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def center(self) -> tuple[float, float]:
        """The position in stamp pixels."""
        return self.x - self.x0, self.y - self.y0

    def panel(self, name: str) -> CutoutPanel:
        for panel in self.panels:
            if panel.name == name:
                return panel
        raise KeyError(f"the cutout has no {name!r} panel")


def stamp_origin(x: float, y: float, size: int) -> tuple[int, int]:
    """Parent pixel of stamp pixel (0, 0) for a stamp centred on the pixel holding (x, y)."""
    return math.floor(x + 0.5) - size // 2, math.floor(y + 0.5) - size // 2


def stamp(array: NDArray, x0: int, y0: int, size: int, fill: float = np.nan) -> NDArray:
    """``array[y0:y0+size, x0:x0+size]``, padded with ``fill`` beyond the array's edges."""
    array = np.asarray(array)
    padding_is_nan = isinstance(fill, float) and math.isnan(fill)
    dtype = np.result_type(array.dtype, np.float32) if padding_is_nan else array.dtype
    out = np.full((size, size), fill, dtype=dtype)
    ny, nx = array.shape
    ys, ye = max(y0, 0), min(y0 + size, ny)
    xs, xe = max(x0, 0), min(x0 + size, nx)
    if ys < ye and xs < xe:
        out[ys - y0 : ye - y0, xs - x0 : xe - x0] = array[ys:ye, xs:xe]
    return out


def stamp_wcs(wcs: WCS | None, x0: int, y0: int, size: int) -> WCS | None:
    """The parent WCS moved to the stamp grid (pixel (0, 0) = parent pixel (x0, y0))."""
    if wcs is None:
        return None
    moved = wcs.deepcopy()
    shift = np.array([x0, y0], float)
    moved.wcs.crpix = moved.wcs.crpix - shift[: moved.wcs.naxis]
    if moved.sip is not None:  # SIP keeps its own copy of the reference pixel
        sip = moved.sip
        moved.sip = Sip(sip.a, sip.b, sip.ap, sip.bp, sip.crpix - shift)
    moved.pixel_shape = (size, size)
    return moved


def make_cutout(
    x: float,
    y: float,
    size: int,
    panels: Sequence[CutoutPanel | tuple],
    wcs: WCS | None = None,
    meta: dict[str, Any] | None = None,
) -> Cutout:
    """Cut stamps of full-size arrays around (x, y).

    Parameters
    ----------
    x, y : float
        Centre (0-based parent pixels).
    size : int
        Side of the stamps, pixels.
    panels : sequence
        Either ready :class:`CutoutPanel` objects (their data already stamp-sized, e.g.
        an atlas image fetched on the stamp grid) or tuples ``(name, array, title,
        kind, fill)`` of full-size parent arrays to cut (``fill``: value beyond the
        edges, NaN for images, a mask bit for masks).
    wcs : astropy.wcs.WCS, optional
        Parent WCS; the cutout gets its stamp version.
    meta : dict, optional
        Primary-header metadata.
    """
    if size < 1:
        raise ValueError(f"a cutout needs a positive size, not {size}")
    x0, y0 = stamp_origin(x, y, size)
    made = []
    for item in panels:
        if isinstance(item, CutoutPanel):
            if item.data is not None and np.shape(item.data) != (size, size):
                raise ValueError(
                    f"panel {item.name!r} is {np.shape(item.data)}, not the {size}×{size} stamp"
                )
            made.append(item)
            continue
        name, array, title, kind, fill = item
        made.append(CutoutPanel(name, stamp(array, x0, y0, size, fill), title, kind))
    return Cutout(x, y, x0, y0, size, made, stamp_wcs(wcs, x0, y0, size), dict(meta or {}))


# --- FITS -----------------------------------------------------------------------------------


def _card_value(value: Any) -> Any:
    """A FITS-safe header value, or None to leave the card out."""
    if value is None:
        return None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return ascii_text(str(value))


def _set_card(header: fits.Header, key: str, value: Any) -> None:
    value = _card_value(value)
    if value is None:
        return
    name = key.upper()
    header[name if len(name) <= 8 and name.isascii() else f"HIERARCH {name}"] = value


def write_cutout(cutout: Cutout, path: str | os.PathLike) -> None:
    """Write the cutout as a multi-extension FITS file (atomically; see the module docstring)."""
    primary = fits.PrimaryHDU()
    geometry = (cutout.x, cutout.y, cutout.x0, cutout.y0, cutout.size)
    for key, value in zip(GEOMETRY_KEYS, geometry, strict=True):
        primary.header[key] = value
    for key, value in cutout.meta.items():
        _set_card(primary.header, key, value)
    hdus: list[fits.hdu.base.ExtensionHDU] = []
    wcs_header = cutout.wcs.to_header(relax=True) if cutout.wcs is not None else None
    for panel in cutout.panels:
        hdu = fits.ImageHDU(data=panel.data, name=panel.name.upper())
        hdu.header["PANTITLE"] = ascii_text(panel.title)
        hdu.header["PANKIND"] = panel.kind
        if panel.note:
            _set_card(hdu.header, "NOTE", panel.note)
        if panel.data is not None and wcs_header is not None:
            hdu.header.extend(wcs_header, update=True)
        hdus.append(hdu)
    write_atomic(fits.HDUList([primary, *hdus]), Path(path))


def read_cutout(path: str | os.PathLike) -> Cutout:
    """Read a file written by :func:`write_cutout`."""
    with fits.open(path) as hdul:
        header = hdul[0].header
        missing = [key for key in GEOMETRY_KEYS if key not in header]
        if missing:
            raise ValueError(f"{path} is not a SkySift cutout (no {', '.join(missing)} cards)")
        meta = {
            key: header[key]
            for key in header
            if key not in GEOMETRY_KEYS and key not in ("SIMPLE", "BITPIX", "NAXIS", "EXTEND")
        }
        panels, wcs = [], None
        for hdu in hdul[1:]:
            data = None if hdu.data is None else np.array(hdu.data)
            if data is not None and wcs is None and "CTYPE1" in hdu.header:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FITSFixedWarning)
                    wcs = WCS(hdu.header)
            panels.append(
                CutoutPanel(
                    hdu.name.lower(),
                    data,
                    str(hdu.header.get("PANTITLE", hdu.name.lower())),
                    "mask" if hdu.header.get("PANKIND") == "mask" else "image",
                    hdu.header.get("NOTE"),
                )
            )
        return Cutout(
            float(header["CUTX"]),
            float(header["CUTY"]),
            int(header["CUTX0"]),
            int(header["CUTY0"]),
            int(header["CUTSIZE"]),
            panels,
            wcs,
            meta,
        )


# --- figure ---------------------------------------------------------------------------------


def display_limits(data: NDArray) -> tuple[float, float]:
    """zscale limits of the finite pixels (percentiles when zscale cannot tell)."""
    values = np.asarray(data, float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    try:
        low, high = ZScaleInterval().get_limits(values)
    except Exception:  # too few pixels for zscale's fit
        low, high = np.percentile(values, [0.5, 99.5])
    if not high > low:
        low, high = float(values.min()), float(values.max())
    if not high > low:
        high = low + 1.0
    return float(low), float(high)


def _draw_panel(axes, panel: CutoutPanel, marks: Sequence[CircleMark]) -> None:
    axes.set_title(panel.title, fontsize=9)
    axes.set_xticks([])
    axes.set_yticks([])
    if panel.data is None:
        text = textwrap.fill(panel.note or "not available", 28)
        axes.text(0.5, 0.5, text, ha="center", va="center", fontsize=8, transform=axes.transAxes)
        axes.set_facecolor("#eeeeee")
        return
    if panel.kind == "mask":
        shown = np.asarray(panel.data) != 0
        axes.imshow(
            shown, origin="lower", cmap=MASK_COLOURS, vmin=0, vmax=1, interpolation="nearest"
        )
    else:
        low, high = display_limits(panel.data)
        cmap = colormaps["gray"].with_extremes(bad=NO_DATA_COLOUR)
        axes.imshow(
            np.asarray(panel.data, float),
            origin="lower",
            cmap=cmap,
            vmin=low,
            vmax=high,
            interpolation="nearest",
        )
    for mark in marks:
        axes.add_patch(
            Circle(
                (mark.x, mark.y),
                mark.radius,
                fill=False,
                edgecolor=mark.color,
                linestyle=mark.linestyle,
                linewidth=1.2,
            )
        )


def plot_cutout(
    cutout: Cutout,
    path: str | os.PathLike,
    title: str = "",
    marks: Sequence[CircleMark] = (),
) -> None:
    """Draw the panels side by side with the circles and a title; write a PNG."""
    n = max(len(cutout.panels), 1)
    lines = title.count("\n") + 1 if title else 0
    figure = Figure(figsize=(PANEL_INCHES * n, PANEL_INCHES + 0.25 + 0.2 * lines))
    grid = figure.subplots(1, n, squeeze=False)[0]
    for axes, panel in zip(grid, cutout.panels, strict=False):
        _draw_panel(axes, panel, marks)
        axes.set_xlim(-0.5, cutout.size - 0.5)
        axes.set_ylim(-0.5, cutout.size - 0.5)
    if title:
        figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=DPI)


# --- blinking -------------------------------------------------------------------------------

BLINK_SUFFIX = ".blink.png"
DIFFERENCE_SIGMAS = 5.0  # difference frames span ±5 robust σ around zero


def _robust_sigma(data: NDArray) -> float:
    values = np.asarray(data, float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 1.0
    sigma = 1.4826 * float(np.median(np.abs(values - np.median(values))))
    return sigma if sigma > 0 else float(np.std(values)) or 1.0


def _grey(data: NDArray, low: float, high: float) -> NDArray:
    """RGB floats of ``data`` stretched to [low, high]; no-data pixels in NO_DATA_COLOUR."""
    data = np.asarray(data, float)
    level = np.clip((data - low) / (high - low), 0.0, 1.0)
    rgb = np.repeat(level[..., None], 3, axis=2)
    missing = ~np.isfinite(data)
    rgb[missing] = [int(NO_DATA_COLOUR[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    return rgb


def write_blink_strip(
    cutout: Cutout,
    frames: Sequence[tuple[str, str]],
    path: str | os.PathLike,
    difference: str | None = None,
) -> list[str]:
    """Write the chosen panels side by side as one PNG; return the frame labels written.

    Parameters
    ----------
    cutout : Cutout
    frames : sequence of (panel name, label)
        In blinking order; panels with no data are left out.
    path : path-like
    difference : str, optional
        The panel shown symmetric around zero with its own scale; every other frame
        uses the zscale limits of the first one, so a source that appeared stands out.
    """
    chosen = [(cutout.panel(n), label) for n, label in frames if cutout.panel(n).data is not None]
    if not chosen:
        raise ValueError("no panel of the cutout has data to blink")
    low, high = display_limits(chosen[0][0].data)
    strips = []
    for panel, _label in chosen:
        if panel.name == difference:
            span = DIFFERENCE_SIGMAS * _robust_sigma(panel.data)
            strips.append(_grey(panel.data, -span, span))
        else:
            strips.append(_grey(panel.data, low, high))
    labels = [label for _panel, label in chosen]
    # rows go top-down in a PNG; our stamps are bottom-up like the figures
    image = np.concatenate(strips, axis=1)[::-1]
    imsave(path, image, format="png", metadata={"Frames": ",".join(labels)})
    return labels


def blink_frames(path: str | os.PathLike) -> list[str]:
    """The frame labels of a blink strip (empty when it has none)."""
    from PIL import Image

    with Image.open(path) as png:
        return [f for f in str(png.info.get("Frames", "")).split(",") if f]
