"""The inspection step: read the header, check it against the pixels, build the mask.

Reads ``image.fits`` from the task folder and writes ``mask.fits`` (bits in
:class:`pipeline.masking.MaskBit`), ``image.wcs`` when the header holds a
usable celestial WCS (sanitised, so later steps need not repair it again) and
``custom_mask.fits`` when the user drew regions (``custom_mask.json``). The
summary carries what later steps need: gain, saturation, filter, time, WCS.
"""

from __future__ import annotations

import os
from typing import Any, Literal

import numpy as np
from astropy.io import fits
from pydantic import Field

from pipeline import masking
from pipeline.filters import FILTER_NAMES
from pipeline.fitsio import FitsInputError, load_image, write_atomic
from pipeline.inspection import Inspection, InspectionError, inspect_image
from pipeline.steps.base import (
    CUSTOM_MASK_FILE,
    CUSTOM_MASK_REGIONS_FILE,
    IMAGE_FILE,
    MASK_FILE,
    WCS_FILE,
    StepConfig,
    StepContext,
    StepError,
    StepResult,
)

MAX_MASKED_FRACTION = 0.95

FilterName = Literal[FILTER_NAMES]  # type: ignore[valid-type]


class InspectConfig(StepConfig):
    """Settings of the inspection step; None means "read from the header"."""

    gain: float | None = Field(
        None,
        gt=0,
        description="Gain in e-/ADU. Empty: from the header (GAIN, EGAIN, ...), checked "
        "against the sky noise.",
    )
    saturation: float | None = Field(
        None,
        description="Saturation level in ADU. Empty: from the header (SATURATE, ...) or "
        "estimated from the pile-up of pixel values.",
    )
    filter: FilterName | None = Field(
        None, description="Filter of the image. Empty: from the FILTER keyword(s)."
    )
    time: str | None = Field(
        None,
        description="Start of the exposure (UTC): ISO date/time, MJD or JD. Empty: from the "
        "header (DATE-OBS, MJD-OBS, JD ...).",
    )
    mask_data_section: bool = Field(
        True, description="Mask pixels outside TRIMSEC/DATASEC and the overscan (BIASSEC)."
    )
    mask_saturated: bool = Field(True, description="Mask pixels at or above the saturation level.")
    saturation_grow: int = Field(
        1, ge=0, le=10, description="Grow the saturated-pixel mask by this many pixels."
    )
    mask_cosmics: bool = Field(
        True,
        description="Detect and mask cosmic-ray hits (L.A.Cosmic). Turn off for undersampled "
        "images (FWHM below ~2 px), where stars look like cosmic rays.",
    )
    cosmics_sigclip: float = Field(
        4.5, gt=0, description="Cosmic-ray detection threshold, in sigma of the noise."
    )
    cosmics_sigfrac: float = Field(
        0.3,
        gt=0,
        le=1,
        description="Threshold for pixels next to a cosmic ray, as a fraction of the above.",
    )
    cosmics_objlim: float = Field(
        5.0,
        gt=0,
        description="Minimum contrast between a cosmic ray and the fine structure of the "
        "image; raise it if star cores get masked.",
    )
    cosmics_niter: int = Field(
        1,
        ge=1,
        le=10,
        description="Number of cosmic-ray detection iterations; more iterations catch the "
        "faint edges of long tracks at extra cost.",
    )
    cosmics_workers: int = Field(
        0,
        ge=0,
        le=64,
        description="Parallel threads for cosmic-ray detection; 0 uses every CPU core.",
    )


CONFIG_MODEL = InspectConfig


def _load(ctx: StepContext) -> tuple[np.ndarray, fits.Header]:
    path = ctx.path(IMAGE_FILE)
    if not path.exists():
        raise StepError(f"{IMAGE_FILE} is missing from the task folder: upload the image again")
    try:
        return load_image(path)
    except FitsInputError as exc:
        raise StepError(str(exc)) from exc


def _custom_mask(ctx: StepContext, shape: tuple[int, int]) -> tuple[np.ndarray | None, bool]:
    """The user's mask, and whether it was drawn (custom_mask.json) rather than uploaded."""
    regions_path = ctx.path(CUSTOM_MASK_REGIONS_FILE)
    try:
        if regions_path.exists():
            regions, invert = masking.load_regions(regions_path)
            mask = masking.mask_from_regions(regions, shape, invert=invert)
            ctx.log.info(
                "custom mask: %d region(s) from %s mask %.2f%% of the image",
                len(regions),
                CUSTOM_MASK_REGIONS_FILE,
                100 * mask.mean(),
            )
            return mask, True
        if ctx.path(CUSTOM_MASK_FILE).exists():
            mask = masking.read_custom_mask(ctx.path(CUSTOM_MASK_FILE), shape)
            ctx.log.info(
                "custom mask from %s: %.2f%% of the image", CUSTOM_MASK_FILE, 100 * mask.mean()
            )
            return mask, False
    except ValueError as exc:
        raise StepError(f"custom mask: {exc}") from exc
    return None, False


def _workers(config: InspectConfig) -> int:
    return config.cosmics_workers or os.cpu_count() or 1


def _build_mask(
    ctx: StepContext,
    config: InspectConfig,
    data: np.ndarray,
    found: Inspection,
    custom: np.ndarray | None,
) -> np.ndarray:
    layers: dict[masking.MaskBit, np.ndarray | None] = {
        masking.MaskBit.NONFINITE: ~np.isfinite(data),
        masking.MaskBit.OUTSIDE_DATA: found.outside if config.mask_data_section else None,
        masking.MaskBit.SATURATED: (
            masking.saturation_mask(data, found.saturation, config.saturation_grow)
            if config.mask_saturated
            else None
        ),
        masking.MaskBit.CUSTOM: custom,
    }
    if config.mask_cosmics:
        bad = np.zeros(data.shape, dtype=bool)
        for layer in layers.values():
            if layer is not None:
                bad |= layer
        workers = _workers(config)
        ctx.progress(0.35, f"detecting cosmic rays ({workers} threads)")
        layers[masking.MaskBit.COSMIC] = masking.cosmic_ray_mask(
            data,
            bad,
            found.background.level,
            found.background.rms,
            found.gain,
            sigclip=config.cosmics_sigclip,
            sigfrac=config.cosmics_sigfrac,
            objlim=config.cosmics_objlim,
            niter=config.cosmics_niter,
            workers=workers,
            progress=lambda done: ctx.progress(0.35 + 0.55 * done, "detecting cosmic rays"),
        )
    else:
        ctx.log.info("cosmic-ray masking is switched off")
    return masking.combine_masks(layers, data.shape)


def _write_wcs(ctx: StepContext, found: Inspection, files: list[str]) -> None:
    if not found.wcs.usable or found.wcs_header is None:
        return
    header = found.wcs_header.copy()
    header["IMAGEW"] = (found.shape[1], "image width, pixels")
    header["IMAGEH"] = (found.shape[0], "image height, pixels")
    write_atomic(fits.PrimaryHDU(header=header), ctx.path(WCS_FILE))
    files.append(WCS_FILE)


def _number(value: Any, digits: int = 6) -> float | None:
    return None if value is None else float(f"{float(value):.{digits}g}")


def _summary(found: Inspection, bits: np.ndarray) -> dict[str, Any]:
    counts = masking.bit_counts(bits)
    masked = int(np.count_nonzero(bits))
    return {
        "shape": list(found.shape),
        "gain": _number(found.gain),
        "gain_source": found.gain_source,
        "read_noise": _number(found.read_noise),
        "saturation": _number(found.saturation, 8),
        "saturation_source": found.saturation_source,
        "filter": found.filter,
        "filter_raw": found.filter_raw,
        "filter_system": found.filter_system,
        "exposure": _number(found.exposure),
        "time": found.time_iso,
        "mjd": None if found.mjd is None else round(float(found.mjd), 8),
        "time_source": found.time_source,
        "telescope": found.telescope,
        "instrument": found.instrument,
        "object": found.object_name,
        "binning": found.binning,
        "ra_hint": _number(found.ra_hint, 10),
        "dec_hint": _number(found.dec_hint, 10),
        "pointing_source": found.pointing_source,
        "has_wcs": bool(found.wcs.usable),
        "wcs_problem": found.wcs.reason or None,
        "wcs_fixes": list(found.wcs_fixes),
        "pixel_scale_arcsec": _number(found.wcs.pixel_scale_arcsec) if found.wcs.usable else None,
        "data_section": found.data_section.as_fits() if found.data_section else None,
        "overscan": found.overscan.as_fits() if found.overscan else None,
        "original_dtype": found.original_dtype,
        "raw_like": bool(found.raw_like),
        "sky_subtracted": bool(found.sky_subtracted),
        "sky_level": _number(found.sky_level),
        "sky_rms": _number(found.sky_rms),
        "data_min": _number(found.data_min),
        "data_max": _number(found.data_max),
        "mask_fraction": round(masked / bits.size, 6),
        "n_masked_pixels": masked,
        "mask_counts": counts,
        "n_cosmic_pixels": counts["cosmic"],
    }


def run(ctx: StepContext, config: InspectConfig) -> StepResult:
    """Inspect ``image.fits`` and write ``mask.fits`` (and ``image.wcs``, ``custom_mask.fits``)."""
    ctx.progress(0.0, "reading the image")
    data, header = _load(ctx)
    ctx.log.info("image %d×%d pixels", data.shape[1], data.shape[0])
    ctx.progress(0.05, "reading the header")
    try:
        found = inspect_image(
            data,
            header,
            gain=config.gain,
            saturation=config.saturation,
            filter_name=config.filter,
            time=config.time,
            log=ctx.log,
        )
    except InspectionError as exc:
        raise StepError(str(exc)) from exc
    ctx.progress(0.3, "building the mask")
    custom, drawn = _custom_mask(ctx, found.shape)
    bits = _build_mask(ctx, config, data, found, custom)
    summary = _summary(found, bits)
    for name, count in summary["mask_counts"].items():
        ctx.log.info("masked as %s: %d pixels", name, count)
    ctx.log.info("masked in total: %.2f%% of the image", 100 * summary["mask_fraction"])
    if summary["mask_fraction"] > MAX_MASKED_FRACTION:
        largest = max(summary["mask_counts"], key=summary["mask_counts"].get)
        raise StepError(
            f"{100 * summary['mask_fraction']:.1f}% of the image is masked (mostly as "
            f"{largest}); at most {100 * MAX_MASKED_FRACTION:.0f}% may be. Check the "
            "saturation level, the data section and your custom mask"
        )
    ctx.progress(0.92, "writing the mask")
    masking.write_mask(ctx.path(MASK_FILE), bits)
    files = [MASK_FILE]
    if drawn:
        # written from the regions on every run, so it is an output (cleared on re-run)
        masking.write_custom_mask(ctx.path(CUSTOM_MASK_FILE), custom)
        files.append(CUSTOM_MASK_FILE)
    _write_wcs(ctx, found, files)
    ctx.progress(1.0, "inspection done")
    return StepResult(summary=summary, files=files, warnings=list(found.warnings))
