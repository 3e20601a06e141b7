"""Light curve of one sky position from the task folders that cover it.

For each task: forced photometry at the position in the direct image (with the
photometry step's aperture, background and calibration) and, when the subtraction
step ran, in the difference image. A point below the S/N threshold is an upper limit.
"""

from __future__ import annotations

import io
import json
import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS, FITSFixedWarning
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pipeline.calibration import CalibrationResult
from pipeline.cutouts import CircleMark, make_cutout, plot_cutout
from pipeline.steps.base import IMAGE_FILE, MASK_FILE, RESULT_SUFFIX, WCS_FILE
from pipeline.targets import forced_photometry

DIFFERENCE_FILE, DIFFERENCE_NOISE_FILE = "sub_diff.fits", "sub_noise.fits"
BACKGROUND_FILE, RMS_FILE = "image_bg.fits", "image_rms.fits"
CALIBRATION_FILE = "calibration.json"
SN_THRESHOLD = 5.0


@dataclass
class LightPoint:
    mjd: float | None
    time: str | None
    filter: str | None
    kind: str  # "direct" or "difference"
    mag: float | None
    mag_err: float | None
    mag_limit: float | None
    detected: bool
    sn: float | None


def _summary(folder: Path, step: str) -> dict:
    path = folder / f"{step}{RESULT_SUFFIX}"
    return json.loads(path.read_text())["summary"] if path.exists() else {}


def task_wcs(folder: Path) -> tuple[WCS, tuple[int, int]] | None:
    """The refined WCS and image shape of a task, or None (headers only: cheap)."""
    if not (folder / WCS_FILE).exists() or not (folder / IMAGE_FILE).exists():
        return None
    header = fits.getheader(folder / IMAGE_FILE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(fits.getheader(folder / WCS_FILE))
    return wcs, (int(header["NAXIS2"]), int(header["NAXIS1"]))


def covers(folder: Path, ra: float, dec: float) -> tuple[float, float] | None:
    """Pixel position of (ra, dec) when the task's image covers it, else None."""
    found = task_wcs(folder)
    if found is None:
        return None
    wcs, (ny, nx) = found
    centre = wcs.pixel_to_world((nx - 1) / 2, (ny - 1) / 2)
    corner = wcs.pixel_to_world(0, 0)
    # far from the field the distortion inverse does not converge: skip those at once
    if centre.separation(SkyCoord(ra, dec, unit="deg")) > 1.5 * centre.separation(corner):
        return None
    x, y = (float(v) for v in wcs.all_world2pix(ra, dec, 0, quiet=True))
    if not (math.isfinite(x) and math.isfinite(y)) or not (0 <= x < nx and 0 <= y < ny):
        return None
    return x, y


def _plain(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _point(row, kind: str, inspect: dict) -> LightPoint:
    detected = bool(row["detected"])
    return LightPoint(
        mjd=inspect.get("mjd"),
        time=inspect.get("time"),
        filter=inspect.get("filter"),
        kind=kind,
        mag=_plain(row["mag_calib"]) if detected else None,
        mag_err=_plain(row["mag_calib_err"]) if detected else None,
        mag_limit=_plain(row["mag_limit"]),
        detected=detected,
        sn=_plain(row["sn"]),
    )


def measure_task(folder: Path, ra: float, dec: float) -> list[LightPoint]:
    """Direct and (if any) difference-image points of one task at (ra, dec)."""
    position = covers(folder, ra, dec)
    photometry = _summary(folder, "photometry")
    if position is None or not photometry.get("fwhm"):
        return []
    inspect = _summary(folder, "inspect")
    x, y = position
    fwhm = float(photometry["fwhm"])
    inner, outer = photometry.get("annulus_radii") or [5 * fwhm, 7 * fwhm]
    common = {
        "fwhm": fwhm,
        "rel_aper": float(photometry["aperture_radius"]) / fwhm,
        "rel_bg1": float(inner) / fwhm,
        "rel_bg2": float(outer) / fwhm,
        "sn_threshold": SN_THRESHOLD,
        "calibration": CalibrationResult.load(folder / CALIBRATION_FILE)
        if (folder / CALIBRATION_FILE).exists()
        else None,
    }
    mask = fits.getdata(folder / MASK_FILE) if (folder / MASK_FILE).exists() else None
    points = []
    direct = forced_photometry(
        fits.getdata(folder / IMAGE_FILE).astype(np.float32),
        [x],
        [y],
        mask=mask,
        background=fits.getdata(folder / BACKGROUND_FILE),
        noise=fits.getdata(folder / RMS_FILE),
        gain=inspect.get("gain"),
        **common,
    )
    points.append(_point(direct[0], "direct", inspect))
    if (folder / DIFFERENCE_FILE).exists() and (folder / DIFFERENCE_NOISE_FILE).exists():
        difference = forced_photometry(
            fits.getdata(folder / DIFFERENCE_FILE).astype(np.float32),
            [x],
            [y],
            mask=mask,
            background=0.0,
            noise=fits.getdata(folder / DIFFERENCE_NOISE_FILE),
            gain=None,
            **common,
        )
        points.append(_point(difference[0], "difference", inspect))
    return points


def points_table(rows: list[tuple[int, LightPoint]]) -> Table:
    """(task id, point) pairs as a table for CSV/VOTable download."""
    columns = ["task_id", *LightPoint.__dataclass_fields__]
    data = [[task_id, *asdict(point).values()] for task_id, point in rows]
    table = Table(rows=data or None, names=columns if data else None)
    if not data:
        table = Table(
            names=columns, dtype=[int, float, str, str, str, float, float, float, bool, float]
        )
    return table


def plot_lightcurve(rows: list[tuple[int, LightPoint]], path, title: str, link=None) -> None:
    """Magnitude against MJD as SVG; limits as downward triangles; one colour per filter and kind.

    ``link(task_id, point)`` gives the URL each marker opens (its cutout), kept in the SVG.
    """
    figure = Figure(figsize=(8, 4.5))
    axes = figure.add_subplot()
    groups: dict[tuple[str, str], list[tuple[int, LightPoint]]] = {}
    for task_id, point in rows:
        groups.setdefault((point.filter or "?", point.kind), []).append((task_id, point))
    colours = iter(colormaps["tab10"].colors)
    for (band, kind), members in sorted(groups.items()):
        colour = next(colours, "k")
        found = [(t, p) for t, p in members if p.detected and p.mjd is not None and p.mag]
        limits = [
            (t, p) for t, p in members if not p.detected and p.mjd is not None and p.mag_limit
        ]
        axes.errorbar(
            [p.mjd for _, p in found],
            [p.mag for _, p in found],
            yerr=[p.mag_err or 0 for _, p in found],
            fmt="none",
            ecolor=colour,
        )
        for chosen, marker, label, alpha in (
            (found, "o" if kind == "direct" else "s", f"{band} {kind}", 1.0),
            (limits, "v", f"{band} {kind} upper limit", 0.6),
        ):
            if not chosen:
                continue
            values = [p.mag if p.detected else p.mag_limit for _, p in chosen]
            markers = axes.scatter(
                [p.mjd for _, p in chosen],
                values,
                marker=marker,
                color=colour,
                alpha=alpha,
                label=label,
            )
            if link is not None:
                markers.set_urls([link(t, p) for t, p in chosen])
    axes.invert_yaxis()
    axes.ticklabel_format(axis="x", useOffset=False, style="plain")  # MJDs in full, not +6e4
    axes.set_xlabel("MJD")
    axes.set_ylabel("calibrated magnitude")
    axes.set_title(title, fontsize=10)
    if groups:
        axes.legend(fontsize=8)
    FigureCanvasAgg(figure)
    figure.savefig(path, format="svg", bbox_inches="tight")


def position_cutout(folder: Path, ra: float, dec: float, size: int = 0) -> bytes | None:
    """PNG stamps of the direct image, the difference (if any) and the mask at (ra, dec).

    ``size`` 0 picks 10 FWHM (at least 31 px). None when the task does not cover it.
    """
    position = covers(folder, ra, dec)
    if position is None:
        return None
    x, y = position
    photometry = _summary(folder, "photometry")
    fwhm = float(photometry.get("fwhm") or 3.0)
    size = size or max(31, int(10 * fwhm) | 1)
    panels = [("image", fits.getdata(folder / IMAGE_FILE), "image", "image", np.nan)]
    if (folder / DIFFERENCE_FILE).exists():
        panels.append(
            ("diff", fits.getdata(folder / DIFFERENCE_FILE), "difference", "image", np.nan)
        )
    if (folder / MASK_FILE).exists():
        panels.append(("mask", fits.getdata(folder / MASK_FILE), "mask", "mask", 1))
    cutout = make_cutout(x, y, size, panels)
    radius = float(photometry.get("aperture_radius") or fwhm)
    cx, cy = cutout.center
    buffer = io.BytesIO()
    plot_cutout(cutout, buffer, f"RA {ra:.5f} Dec {dec:+.5f}", [CircleMark(cx, cy, radius)])
    return buffer.getvalue()
