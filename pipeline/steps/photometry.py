"""The photometry step: detection → FWHM → aperture photometry → shape prefilter →
reference catalogue → astrometry → calibration → detection limit.

Reads ``image.fits`` and, when inspection ran, ``mask.fits`` and its summary
(gain, saturation, filter, pointing); writes the objects table, the background,
noise, filtered and segmentation images, the trained prefilter, the refined WCS
(``image.wcs``), the calibration model and diagnostic plots. The second half lives in
:mod:`pipeline.steps.photometry_reference`.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS, FITSFixedWarning
from pydantic import Field

from pipeline import header as header_keys
from pipeline import plots
from pipeline.detection import DetectionConfig, DetectionResult, detect_objects, windowed_positions
from pipeline.fitsio import FitsInputError, load_image, write_atomic
from pipeline.flags import ObjectFlag
from pipeline.fwhm import FwhmConfig, FwhmResult, core_fwhm, fixed_fwhm, measure_fwhm
from pipeline.masking import MaskBit
from pipeline.measurement import MeasurementConfig, measure_positions
from pipeline.prefilter import (
    PrefilterConfig,
    flag_outliers,
    save_prefilter,
    train_prefilter,
)
from pipeline.steps.base import (
    IMAGE_FILE,
    MASK_FILE,
    OBJECTS_FILE,
    WCS_FILE,
    StepContext,
    StepError,
    StepResult,
)
from pipeline.steps.photometry_reference import ReferenceConfig, run_reference_stage
from pipeline.targets import TargetsConfig, measure_targets

# Files this step writes into the task folder.
SEGMENTATION_FILE = "segmentation.fits"
BACKGROUND_FILE = "image_bg.fits"
RMS_FILE = "image_rms.fits"
FILTERED_FILE = "image_filtered.fits"
PREFILTER_FILE = "prefilter.pkl"
FWHM_MAP_PLOT = "fwhm.png"
FWHM_MAG_PLOT = "fwhm_mag.png"
PREFILTER_PLOT = "prefilter.png"
OBJECTS_PLOT = "objects.png"

FLAGGED_WARNING_FRACTION = 0.5


class PhotometryConfig(
    DetectionConfig, FwhmConfig, MeasurementConfig, PrefilterConfig, ReferenceConfig, TargetsConfig
):
    """Settings of the photometry step (detection, FWHM, apertures, prefilter, catalogue,
    astrometry, calibration)."""

    make_plots: bool = Field(True, description="Draw the diagnostic plots (PNG).")


CONFIG_MODEL = PhotometryConfig


def _load_image(ctx: StepContext) -> tuple[np.ndarray, fits.Header]:
    path = ctx.path(IMAGE_FILE)
    if not path.exists():
        raise StepError(f"{IMAGE_FILE} is missing from the task folder: upload the image again")
    try:
        image, header = load_image(path)
    except FitsInputError as exc:
        raise StepError(str(exc)) from exc
    finite = np.isfinite(image)
    if not finite.any():
        raise StepError(
            "the image has no finite pixels (all NaN or infinite): nothing can be measured; "
            "check the uploaded file"
        )
    values = image[finite]
    if values.min() == values.max():
        raise StepError(
            f"the image is constant (every valid pixel is {values.min():g}): there is no sky "
            "noise and no object to measure; check the uploaded file"
        )
    return np.ascontiguousarray(image, dtype=np.float32), header


def _load_mask(ctx: StepContext, image: np.ndarray, warn: list[str]) -> np.ndarray:
    path = ctx.path(MASK_FILE)
    nonfinite = (~np.isfinite(image)).astype(np.uint8) * np.uint8(MaskBit.NONFINITE)
    if not path.exists():
        warn.append(
            "the inspection step has not run: only non-finite pixels are masked (no "
            "saturation, cosmic-ray or custom mask); run inspection first for a full mask"
        )
        return nonfinite
    with fits.open(path) as hdul:
        mask = np.asarray(hdul[0].data)
    if mask.shape != image.shape:
        raise StepError(
            f"{MASK_FILE} has shape {mask.shape} but the image {image.shape}: re-run inspection"
        )
    return mask.astype(np.uint8) | nonfinite


def _gain_saturation(
    ctx: StepContext, header: fits.Header, warn: list[str]
) -> tuple[float | None, float | None]:
    summary = ctx.read_result("inspect")
    if summary is not None:
        return summary.get("gain"), summary.get("saturation")
    gain, _ = header_keys.read_gain(header)
    saturation, _ = header_keys.read_saturation(header)
    if gain is None:
        warn.append("no gain known (inspection has not run): source Poisson noise is left out")
    return gain, saturation


def _load_wcs(ctx: StepContext, header: fits.Header) -> WCS | None:
    """The task WCS (``image.wcs`` if written, else the image header), or None."""
    source = fits.getheader(ctx.path(WCS_FILE)) if ctx.path(WCS_FILE).exists() else header
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(source)
    except Exception:  # an unparsable WCS only costs us ra/dec
        return None
    return wcs if wcs.has_celestial else None


def _detect(image, mask, config, saturation, gain) -> DetectionResult:
    try:
        detection = detect_objects(image, mask, config, saturation=saturation, gain=gain)
    except ValueError as exc:
        raise StepError(f"detection failed: {exc}") from exc
    if len(detection.objects) == 0:
        raise StepError(
            "no objects were detected: the image may hold no stars, or the threshold "
            f"({config.detect_thresh:g}σ, {config.minarea} pixels) is too high; lower "
            "detect_thresh or minarea"
        )
    return detection


def _fwhm(
    data: np.ndarray,
    objects: Table,
    bad: np.ndarray,
    noise: float,
    config: PhotometryConfig,
    warn: list[str],
) -> FwhmResult:
    flags = np.asarray(objects["flags"])
    radius = np.asarray(objects["flux_radius"], float)
    clean = (flags == 0) & np.isfinite(radius)
    guess = 2.0 * float(np.median(radius[clean])) if clean.any() else 3.0
    if config.fwhm_override:
        guess = config.fwhm_override
    x, y = windowed_positions(data, objects["x"].data, objects["y"].data, guess, bad)
    objects["x"], objects["y"] = x, y
    with np.errstate(divide="ignore", invalid="ignore"):
        sn = np.asarray(objects["flux_auto"] / objects["fluxerr_auto"], float)
    try:
        result = measure_fwhm(data, x, y, sn, flags, guess, config, bad=bad, noise=noise)
    except ValueError as exc:
        if not config.fwhm_override:
            raise StepError(f"FWHM: {exc}") from exc
        warn.append(f"FWHM could not be measured ({exc}); using fwhm_override only")
        result = fixed_fwhm(config.fwhm_override, data.shape, len(objects))
        result.per_object = core_fwhm(data, x, y, guess, bad, noise)
        return result
    if config.fwhm_override:
        result.fwhm = float(config.fwhm_override)
    return result


def _write_image(ctx: StepContext, name: str, data: np.ndarray, files: list[str]) -> None:
    write_atomic(fits.PrimaryHDU(data=data), ctx.path(name))
    files.append(name)


def _write_objects(ctx: StepContext, table: Table, meta: dict[str, Any]) -> None:
    hdu = fits.table_to_hdu(table)
    for key, value in meta.items():
        hdu.header[key] = value
    write_atomic(fits.HDUList([fits.PrimaryHDU(), hdu]), ctx.path(OBJECTS_FILE))


def _plots(ctx, image, objects, table, fwhm, model, radius, files, warn) -> None:
    jobs = [
        (FWHM_MAP_PLOT, lambda p: plots.plot_fwhm_map(fwhm, objects["x"], objects["y"], p)),
        (FWHM_MAG_PLOT, lambda p: plots.plot_fwhm_mag(table, fwhm, p)),
        (OBJECTS_PLOT, lambda p: plots.plot_objects(image, table, radius, p)),
    ]
    if model is not None:
        jobs.append((PREFILTER_PLOT, lambda p: plots.plot_prefilter(table, model, p)))
    for name, draw in jobs:
        try:
            draw(ctx.path(name))
            files.append(name)
        except Exception as exc:  # a failed plot must not lose the measurements
            ctx.log.warning("plot %s failed: %s", name, exc)
            warn.append(f"the plot {name} could not be drawn: {exc}")


def _number(value: float | None, digits: int = 5) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(f"{float(value):.{digits}g}")


def run(ctx: StepContext, config: PhotometryConfig) -> StepResult:
    """Detect, measure and prefilter the objects of ``image.fits``."""
    warn: list[str] = []
    files: list[str] = []
    timing: dict[str, float] = {}
    clock = time.monotonic()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.monotonic()
        timing[stage] = round(now - clock, 3)
        clock = now

    ctx.progress(0.0, "reading the image")
    image, header = _load_image(ctx)
    mask = _load_mask(ctx, image, warn)
    gain, saturation = _gain_saturation(ctx, header, warn)
    wcs = _load_wcs(ctx, header)
    lap("read")

    ctx.progress(0.05, f"detecting objects ({config.detection_engine})")
    detection = _detect(image, mask, config, saturation, gain)
    objects = detection.objects
    background = detection.background
    ctx.log.info(
        "%d objects detected; background %.5g, noise %.4g (mesh %d px)",
        len(objects),
        background.global_level,
        background.global_rms,
        background.mesh,
    )
    lap("detection")

    ctx.progress(0.35, "measuring the FWHM")
    bad = mask != 0
    data = np.where(bad, np.float32(0), image - background.level)
    fwhm = _fwhm(data, objects, bad, background.global_rms, config, warn)
    objects["fwhm"] = fwhm.per_object
    objects["fwhm_used"] = fwhm.used
    ctx.log.info(
        "FWHM %.3f px (%.3f–%.3f over the field) from %d stars",
        fwhm.fwhm,
        fwhm.fwhm_min,
        fwhm.fwhm_max,
        int(fwhm.used.sum()),
    )
    lap("fwhm")

    ctx.progress(0.5, "aperture photometry")
    radius = config.rel_aper * fwhm.fwhm
    table = measure_positions(
        image,
        objects,
        fwhm=fwhm.fwhm,
        mask=mask,
        background=background.level,
        noise=background.rms,
        gain=gain,
        rel_aper=config.rel_aper,
        rel_bg1=config.rel_bg1,
        rel_bg2=config.rel_bg2,
        sn_min=config.sn,
        segmentation=detection.segmentation,
        min_annulus_fraction=config.min_annulus_fraction,
        wcs=wcs,
    )
    if len(table) == 0:
        raise StepError(
            f"none of the {len(objects)} detected objects reaches S/N {config.sn:g} in the "
            f"{radius:.2f}-pixel aperture; lower the sn setting or check the image"
        )
    ctx.log.info("%d objects with S/N ≥ %g measured", len(table), config.sn)
    lap("measurement")

    ctx.progress(0.7, "shape prefilter")
    model = None
    n_outliers = 0
    if config.prefilter_detections:
        try:
            model = train_prefilter(table, fwhm.fwhm_map, config.prefilter_contamination)
        except ValueError as exc:
            warn.append(f"shape prefilter skipped: {exc}")
        else:
            n_outliers = flag_outliers(table, model)
            save_prefilter(model, ctx.path(PREFILTER_FILE))
            files.append(PREFILTER_FILE)
            ctx.log.info("prefilter: %d shape outliers flagged 0x800", n_outliers)
    lap("prefilter")

    reference = run_reference_stage(
        ctx, config, table, header, image.shape, fwhm.fwhm, wcs, files, warn, config.make_plots
    )
    wcs = reference.wcs
    lap("calibration")

    target_summary: dict[str, Any] = {}
    if config.targets:
        ctx.progress(0.75, "forced photometry of the targets")
        inspect = ctx.read_result("inspect") or {}
        targets = measure_targets(
            config,
            image,
            fwhm=fwhm.fwhm,
            out_dir=ctx.task_dir,
            measurement=config,
            mask=mask,
            background=background.level,
            noise=background.rms,
            gain=gain,
            segmentation=detection.segmentation,
            wcs=wcs,
            calibration=reference.calibration,
            time_iso=inspect.get("time"),
            filter_name=inspect.get("filter"),
            cache_dir=ctx.cache("names"),
            logger=ctx.log,
        )
        files.extend(targets.files)
        warn.extend(targets.warnings)
        target_summary = {"targets": targets.summary}
        lap("targets")

    ctx.progress(0.8, "writing outputs")
    flags = np.asarray(table["flags"])
    n_flagged = int(np.count_nonzero(flags))
    if n_flagged > FLAGGED_WARNING_FRACTION * len(table):
        warn.append(
            f"{n_flagged} of {len(table)} objects are flagged; check the mask, saturation "
            "level and detection settings"
        )
    meta = {
        "FWHM": (round(fwhm.fwhm, 4), "image FWHM, pixels"),
        "APERTUR": (round(radius, 4), "aperture radius, pixels"),
        "ANNULIN": (round(config.rel_bg1 * fwhm.fwhm, 4), "background annulus inner radius"),
        "ANNULOUT": (round(config.rel_bg2 * fwhm.fwhm, 4), "background annulus outer radius"),
        "ENGINE": (detection.engine, "detection engine"),
    }
    _write_objects(ctx, table, meta)
    files.append(OBJECTS_FILE)
    _write_image(ctx, SEGMENTATION_FILE, detection.segmentation, files)
    _write_image(ctx, BACKGROUND_FILE, background.level, files)
    _write_image(ctx, RMS_FILE, background.rms, files)
    _write_image(ctx, FILTERED_FILE, detection.filtered, files)
    lap("write")
    if config.make_plots:
        ctx.progress(0.9, "drawing plots")
        _plots(ctx, image, objects, table, fwhm, model, radius, files, warn)
    lap("plots")
    ctx.progress(1.0, "photometry done")
    summary = {
        "fwhm": _number(fwhm.fwhm),
        "fwhm_min": _number(fwhm.fwhm_min),
        "fwhm_max": _number(fwhm.fwhm_max),
        "fwhm_beta": _number(fwhm.beta, 3),
        "n_fwhm_stars": int(fwhm.used.sum()),
        "n_detected": len(objects),
        "n_objects": len(table),
        "n_flagged": n_flagged,
        "n_unflagged": len(table) - n_flagged,
        "n_saturated": int(np.count_nonzero(flags & ObjectFlag.SATURATED)),
        "n_prefilter_outliers": n_outliers,
        "aperture_radius": _number(radius),
        "annulus_radii": [_number(config.rel_bg1 * fwhm.fwhm), _number(config.rel_bg2 * fwhm.fwhm)],
        "bg_median": _number(float(np.median(background.level))),
        "bg_rms": _number(float(np.median(background.rms))),
        "detection_engine": detection.engine,
        "gain": _number(gain) if gain else None,
        "saturation": _number(saturation, 8) if saturation else None,
        "has_wcs": wcs is not None,
        **reference.summary,
        **target_summary,
        "seconds": timing,
    }
    return StepResult(summary=summary, files=files, warnings=warn)
