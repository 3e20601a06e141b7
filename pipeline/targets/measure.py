"""Forced photometry of the configured targets: the one call the photometry step makes.

:func:`measure_targets` parses the target lines, resolves names (Sesame, TNS or Fink),
places every target on the image, measures it like the detected objects
(:mod:`pipeline.targets.photometry`), and writes

* ``targets.fits`` — one row per measured target (:data:`TARGET_COLUMNS`), the
  calibration and aperture in the header;
* ``targets/target_NNNN.fits`` and ``targets/target_NNNN.png`` — per target (NNNN is its
  line number, 0001 = primary) a multi-extension cutout (planes IMAGE, ATLAS, MASK) and
  the figure of paper Figure 6: image, atlas image of the same field (hips2fits) and
  mask, the aperture and annulus marked, a title with the name, the magnitude or the
  upper limit, the filter and the time.

The primary target (first line) must be resolvable and inside the image, otherwise a
:class:`~pipeline.targets.errors.TargetError` (or ``ResolverUnavailable``) stops the
step; any other target that cannot be placed is skipped with a warning. The atlas
never fails anything: the figure says "atlas unavailable: <reason>" and a warning is
recorded.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from numpy.typing import NDArray

from pipeline.calibration.result import CalibrationResult
from pipeline.cutouts import (
    CircleMark,
    CutoutPanel,
    make_cutout,
    plot_cutout,
    stamp_origin,
    write_cutout,
)
from pipeline.fitsio import write_atomic
from pipeline.masking import MaskBit
from pipeline.measurement import MeasurementConfig, sky_coordinates
from pipeline.targets.config import TargetsConfig
from pipeline.targets.errors import AtlasUnavailable, ResolverUnavailable, TargetError
from pipeline.targets.hips import atlas_survey, atlas_wcs, fetch_atlas
from pipeline.targets.parse import TargetSpec, parse_targets
from pipeline.targets.photometry import PHOTOMETRY_COLUMNS, forced_photometry
from pipeline.targets.resolve import Resolution, TargetResolver

log = logging.getLogger("skysift.targets")

TARGETS_FILE = "targets.fits"
CUTOUT_FOLDER = "targets"
# Columns of targets.fits, in order: identification, photometry, what the magnitudes are.
IDENTITY_COLUMNS = ("index", "name", "input", "source", "otype", "primary")
META_COLUMNS = ("filter", "mag_band", "mag_color_name", "mag_color_term", "cutout")
TARGET_COLUMNS = (*IDENTITY_COLUMNS, *PHOTOMETRY_COLUMNS, *META_COLUMNS)
# Atlas failures after which asking again for the next target is pointless.
_ATLAS_SERVICE_DOWN = ("cannot connect", "did not answer", "HTTP 5")


@dataclass
class TargetsResult:
    """What :func:`measure_targets` returns.

    Attributes
    ----------
    table : astropy.table.Table
        The measured targets (:data:`TARGET_COLUMNS`), also written to ``targets.fits``.
    files : list of str
        Files written, relative to ``out_dir``.
    warnings : list of str
        Skipped targets, services that failed, ...
    summary : dict
        Plain JSON numbers for the step summary (see :func:`summarise`).
    """

    table: Table
    files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Placed:
    spec: TargetSpec
    name: str
    source: str
    otype: str
    ra: float
    dec: float
    x: float
    y: float


def _outside(x: float, y: float, shape: tuple[int, int]) -> bool:
    ny, nx = shape
    return not (-0.5 <= x < nx - 0.5 and -0.5 <= y < ny - 0.5)


def _place(
    spec: TargetSpec, resolver: TargetResolver, wcs: WCS | None, shape: tuple[int, int]
) -> _Placed:
    """Sky and pixel position of one target; TargetError when it cannot be on the image."""
    ny, nx = shape
    if spec.kind == "pixel":
        x, y = float(spec.x), float(spec.y)
        ra, dec = (float(v[0]) for v in sky_coordinates(wcs, np.array([x]), np.array([y])))
        where = f"x={x:g} y={y:g}"
        placed = _Placed(spec, where, "pixel", "", ra, dec, x, y)
    else:
        found: Resolution = resolver.resolve(spec)
        if wcs is None or not wcs.has_celestial:
            raise TargetError(
                f"{spec.describe()} is a sky position, but the image has no astrometric "
                "solution: solve the astrometry first, or give a pixel position (x=… y=…)"
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                px, py = wcs.celestial.all_world2pix([found.ra], [found.dec], 0, quiet=True)
            x, y = float(px[0]), float(py[0])
        except Exception:  # far outside, where the distortion model does not converge
            x = y = math.nan
        where = f"{spec.text!r} at RA {found.ra:.5f} Dec {found.dec:+.5f}, x={x:.1f} y={y:.1f}"
        placed = _Placed(
            spec, found.name, found.source, found.otype or "", found.ra, found.dec, x, y
        )
    if not (math.isfinite(x) and math.isfinite(y)) or _outside(x, y, shape):
        raise TargetError(f"target {spec.index} ({where}) is outside the {nx}×{ny} image")
    return placed


def _place_all(
    specs: list[TargetSpec],
    config: TargetsConfig,
    wcs: WCS | None,
    shape: tuple[int, int],
    cache_dir: str | os.PathLike | None,
    logger: logging.Logger,
    warn: list[str],
) -> list[_Placed]:
    placed = []
    with TargetResolver(config, cache_dir=cache_dir, logger=logger) as resolver:
        for spec in specs:
            try:
                target = _place(spec, resolver, wcs, shape)
            except (TargetError, ResolverUnavailable) as exc:
                text = str(exc)
                if not text.startswith(f"target {spec.index} "):
                    text = f"{spec.describe()}: {text}"
                if spec.primary:
                    raise type(exc)(f"{text} (the first line is the primary target)") from exc
                logger.warning("%s; skipped", text)
                warn.append(f"{text}; this target is skipped")
                continue
            logger.info(
                "%s: %s (%s) at RA %.5f Dec %+.5f → x=%.2f y=%.2f",
                spec.describe(),
                target.name,
                target.source,
                target.ra,
                target.dec,
                target.x,
                target.y,
            )
            placed.append(target)
        warn.extend(resolver.warnings)
    return placed


def result_text(row, calibration: CalibrationResult | None, sn_threshold: float) -> str:
    """``r = 18.52 ± 0.05 (S/N 21.3)`` or ``r > 20.31 (S/N 0.8 < 5)``."""
    band = (calibration.model.band or "m") if calibration is not None else "m_inst"
    if row["detected"] and np.isfinite(row["mag_calib"]):
        return f"{band} = {row['mag_calib']:.2f} ± {row['mag_calib_err']:.2f} (S/N {row['sn']:.1f})"
    return f"{band} > {row['mag_limit']:.2f} (S/N {row['sn']:.1f} < {sn_threshold:g})"


def _title(
    row,
    calibration: CalibrationResult | None,
    sn: float,
    filter_name: str | None,
    time_iso: str | None,
) -> str:
    first = str(row["name"])
    if row["input"] != row["name"]:
        first += f"  [{row['input']}]"
    details = [f"filter {filter_name or 'unknown'}"]
    if time_iso:
        details.append(str(time_iso))
    if calibration is None:
        details.append("not calibrated: instrumental magnitudes")
    else:
        details.append(calibration.model.system_description())
    return f"{first}: {result_text(row, calibration, sn)}\n" + ", ".join(details)


class _Atlas:
    """Atlas panels for the cutouts; stops asking once the service is found down."""

    def __init__(self, config: TargetsConfig, wcs: WCS | None, filter_name: str | None):
        self.config, self.wcs, self.filter_name = config, wcs, filter_name
        self.down: str | None = None
        self.warnings: list[str] = []

    def panel(self, row, x0: int, y0: int, size: int) -> tuple[CutoutPanel, str]:
        """The atlas panel (or its note) and the HiPS asked for."""
        if self.wcs is None or not self.wcs.has_celestial:
            note = "atlas unavailable: the image has no astrometric solution"
            return CutoutPanel("atlas", None, "atlas", note=note), ""
        choice = atlas_survey(self.filter_name, float(row["dec"]))
        if self.down:
            note = f"atlas unavailable: {self.down}"
            return CutoutPanel("atlas", None, choice.label, note=note), choice.hips
        grid = atlas_wcs(self.wcs, float(row["x"]), float(row["y"]), x0, y0, size)
        try:
            data = fetch_atlas(
                choice.hips,
                grid,
                url=self.config.hips2fits_url,
                timeout=self.config.resolver_timeout,
            )
        except AtlasUnavailable as exc:
            reason = str(exc)
            self.warnings.append(
                f"atlas image ({choice.label}) unavailable for {row['name']}: {reason}"
            )
            if any(word in reason for word in _ATLAS_SERVICE_DOWN):
                self.down = reason
            note = f"atlas unavailable: {reason}"
            return CutoutPanel("atlas", None, choice.label, note=note), choice.hips
        return CutoutPanel("atlas", data, choice.label), choice.hips


def _cutout_files(
    row,
    image: NDArray,
    mask: NDArray | None,
    wcs: WCS | None,
    atlas: _Atlas | None,
    radii: tuple[float, float, float],
    size: int,
    meta: dict[str, Any],
    title: str,
    out_dir: Path,
) -> list[str]:
    """Write the cutout FITS and PNG of one target; return their relative paths."""
    x, y = float(row["x"]), float(row["y"])
    panels: list[Any] = [("image", image, "image", "image", np.nan)]
    hips = ""
    if atlas is not None:
        atlas_panel, hips = atlas.panel(row, *stamp_origin(x, y, size), size)
        panels.append(atlas_panel)
    mask_array = np.zeros(image.shape, np.uint8) if mask is None else mask
    panels.append(("mask", mask_array, "mask", "mask", int(MaskBit.OUTSIDE_DATA)))
    cutout = make_cutout(x, y, size, panels, wcs, {**meta, "ATLAS": hips})
    stem = f"{CUTOUT_FOLDER}/target_{int(row['index']):04d}"
    write_cutout(cutout, out_dir / f"{stem}.fits")
    cx, cy = cutout.center
    aperture, inner, outer = radii
    marks = [
        CircleMark(cx, cy, aperture, "red", "-"),
        CircleMark(cx, cy, inner, "#ffd166", "--"),
        CircleMark(cx, cy, outer, "#ffd166", "--"),
    ]
    plot_cutout(cutout, out_dir / f"{stem}.png", title, marks)
    return [f"{stem}.fits", f"{stem}.png"]


def _table(placed: list[_Placed], phot: Table, calibration, filter_name) -> Table:
    table = Table()
    table["index"] = np.array([p.spec.index for p in placed], np.int32)
    table["name"] = [p.name for p in placed]
    table["input"] = [p.spec.text for p in placed]
    table["source"] = [p.source for p in placed]
    table["otype"] = [p.otype for p in placed]
    table["primary"] = np.array([p.spec.primary for p in placed], bool)
    for name in PHOTOMETRY_COLUMNS:
        table[name] = phot[name]
    # pixel targets: keep the sky position measure_positions gave; sky targets: the
    # resolved position itself (not a round trip through the WCS)
    for i, p in enumerate(placed):
        if p.spec.kind != "pixel" and not phot["centroided"][i]:
            table["ra"][i], table["dec"][i] = p.ra, p.dec
        if p.spec.kind != "pixel":
            table["ra_orig"][i], table["dec_orig"][i] = p.ra, p.dec
    n = len(table)
    model = calibration.model if calibration is not None else None
    table["filter"] = [filter_name or ""] * n
    table["mag_band"] = [(model.band if model else "") or ""] * n
    table["mag_color_name"] = [(model.color_name if model else "") or ""] * n
    table["mag_color_term"] = np.full(n, model.color_term if model else 0.0)
    table["cutout"] = [""] * n  # filled once the figures are written
    return table[list(TARGET_COLUMNS)]


def _write_table(table: Table, meta: dict[str, Any], path: Path) -> None:
    hdu = fits.table_to_hdu(table)
    for key, value in meta.items():
        if value is not None and not (isinstance(value, float) and not math.isfinite(value)):
            hdu.header[key] = value
    write_atomic(fits.HDUList([fits.PrimaryHDU(), hdu]), path)


def _plain(value: Any) -> Any:
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer | int):
        return int(value)
    if isinstance(value, np.floating | float):
        return round(float(value), 5) if math.isfinite(value) else None
    return str(value)


SUMMARY_ROW_KEYS = (
    "index",
    "name",
    "input",
    "source",
    "ra",
    "dec",
    "x",
    "y",
    "sn",
    "mag_calib",
    "mag_calib_err",
    "mag_limit",
    "detected",
    "flags",
    "cutout",
)


def summarise(table: Table, n_given: int, sn: float, calibration) -> dict[str, Any]:
    """Plain-number summary: counts, the primary target and one short dict per target."""
    rows = [{key: _plain(row[key]) for key in SUMMARY_ROW_KEYS} for row in table]
    primary = next((r for r in rows if r["index"] == 1), None)
    return {
        "n_targets": n_given,
        "n_measured": len(rows),
        "n_skipped": n_given - len(rows),
        "n_detected": int(np.count_nonzero(table["detected"])) if len(table) else 0,
        "sn_threshold": float(sn),
        "calibrated": calibration is not None,
        "mag_band": calibration.model.band if calibration is not None else None,
        "primary": primary,
        "targets": rows,
    }


def measure_targets(
    config: TargetsConfig,
    image: NDArray,
    *,
    fwhm: float,
    out_dir: str | os.PathLike,
    measurement: MeasurementConfig | None = None,
    mask: NDArray | None = None,
    background: NDArray | float | None = None,
    noise: NDArray | float | None = None,
    gain: float | None = None,
    segmentation: NDArray | None = None,
    wcs: WCS | None = None,
    calibration: CalibrationResult | None = None,
    time_iso: str | None = None,
    filter_name: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    logger: logging.Logger | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> TargetsResult:
    """Forced photometry of ``config.targets`` on one image, with tables and cutouts.

    Parameters
    ----------
    config : TargetsConfig
        Targets and services (the photometry step's config, which includes it).
    image : numpy.ndarray
        The image, ADU, background not subtracted.
    fwhm : float
        Image FWHM, pixels (the one the objects were measured with).
    out_dir : path
        Folder to write into (the task folder); files are returned relative to it.
    measurement : MeasurementConfig, optional
        Aperture and annulus radii, S/N threshold and annulus fraction (the photometry
        step's config, which includes them); defaults if omitted.
    mask, background, noise, gain, segmentation
        As the objects were measured with (mask nonzero = bad; background and noise
        maps; e-/ADU; the detection segmentation map).
    wcs : astropy.wcs.WCS, optional
        The (refined) astrometric solution; needed for sky targets and atlas images.
    calibration : CalibrationResult, optional
        Photometric calibration; without it magnitudes and limits are instrumental.
    time_iso, filter_name : str, optional
        For the table and the figure titles; ``filter_name`` also picks the atlas band.
    cache_dir : path, optional
        Folder of the on-disk cache of resolved names.
    logger : logging.Logger, optional
    progress : callable, optional
        ``progress(fraction, message)``, fraction in [0, 1] of this part of the work.

    Returns
    -------
    TargetsResult

    Raises
    ------
    TargetError
        An unreadable target line; the primary target unknown, not placeable (a sky
        position without WCS) or outside the image.
    ResolverUnavailable
        The service needed for the primary target's name is unreachable.
    """
    logger = logger or log
    report = progress or (lambda fraction, message="": None)
    aperture = measurement or MeasurementConfig()
    out_dir = Path(out_dir)
    warn: list[str] = []
    specs = parse_targets(config.targets)
    if not specs:
        return TargetsResult(Table(), [], [], summarise(Table(), 0, aperture.sn, calibration))
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"the image must be 2-D, not of shape {image.shape}")

    report(0.0, f"resolving {len(specs)} target(s)")
    placed = _place_all(specs, config, wcs, image.shape, cache_dir, logger, warn)
    report(0.3, "forced photometry of the targets")
    phot = forced_photometry(
        image,
        [p.x for p in placed],
        [p.y for p in placed],
        fwhm=fwhm,
        mask=mask,
        background=background,
        noise=noise,
        gain=gain,
        rel_aper=aperture.rel_aper,
        rel_bg1=aperture.rel_bg1,
        rel_bg2=aperture.rel_bg2,
        min_annulus_fraction=aperture.min_annulus_fraction,
        segmentation=segmentation,
        wcs=wcs,
        calibration=calibration,
        sn_threshold=aperture.sn,
        centroid=config.centroid_targets,
    )
    table = _table(placed, phot, calibration, filter_name)
    if calibration is None:
        warn.append("no photometric calibration: target magnitudes and limits are instrumental")
    for row in table:
        logger.info(
            "%s target %s: %s",
            "Primary" if row["primary"] else "Secondary",
            row["name"],
            result_text(row, calibration, aperture.sn),
        )

    files: list[str] = []
    figures = [""] * len(table)
    radii = (aperture.rel_aper * fwhm, aperture.rel_bg1 * fwhm, aperture.rel_bg2 * fwhm)
    atlas = _Atlas(config, wcs, filter_name) if config.atlas_cutouts else None
    for i, row in enumerate(table):
        report(0.4 + 0.55 * i / len(table), f"cutout of {row['name']}")
        meta = {
            "NAME": row["name"],
            "INPUT": row["input"],
            "RA": row["ra"],
            "DEC": row["dec"],
            "MAGCALIB": row["mag_calib"],
            "MAGERR": row["mag_calib_err"],
            "MAGLIMIT": row["mag_limit"],
            "DETECTED": bool(row["detected"]),
            "SN": row["sn"],
            "FLAGS": int(row["flags"]),
            "FILTER": filter_name or "",
            "TIME": time_iso or "",
        }
        title = _title(row, calibration, aperture.sn, filter_name, time_iso)
        try:
            written = _cutout_files(
                row, image, mask, wcs, atlas, radii, config.target_cutout_size, meta, title, out_dir
            )
        except Exception as exc:  # a figure must never lose the photometry
            logger.warning("cutout of %s failed: %s", row["name"], exc)
            warn.append(f"the cutout of {row['name']} could not be made: {exc}")
            continue
        files.extend(written)
        figures[i] = written[-1]
    table["cutout"] = figures
    if atlas is not None:
        warn.extend(atlas.warnings)

    header = {
        "FILTER": filter_name or "",
        "DATE-OBS": time_iso or "",
        "FWHM": (round(float(fwhm), 4), "image FWHM, pixels"),
        "APERTUR": (round(radii[0], 4), "aperture radius, pixels"),
        "ANNULIN": (round(radii[1], 4), "background annulus inner radius, pixels"),
        "ANNULOUT": (round(radii[2], 4), "background annulus outer radius, pixels"),
        "SNLIMIT": (float(aperture.sn), "S/N below which mag_limit is the result"),
        "CALIBRAT": (calibration is not None, "magnitudes calibrated (else instrumental)"),
        **(calibration.model.metadata() if calibration is not None else {}),
    }
    _write_table(table, header, out_dir / TARGETS_FILE)
    files.insert(0, TARGETS_FILE)
    report(1.0, "targets done")
    summary = summarise(table, len(specs), aperture.sn, calibration)
    return TargetsResult(table, files, warn, summary)
