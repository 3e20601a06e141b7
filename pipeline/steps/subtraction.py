"""The image-subtraction step: template → reprojection → subtraction → candidates.

Reads ``image.fits``, ``mask.fits``, ``image.wcs``, the photometry step's FWHM,
aperture, ``calibration.json`` and ``prefilter.pkl``; gets a template (the uploaded
``custom_template.fits`` or a survey cutout), reprojects it onto the image grid,
subtracts it in overlapping sub-images (ZOGY by default), calibrates the noise maps and
the local flux scale on the image's stars, and finds, measures, vets (shape prefilter,
masked pixels in the aperture, dipole/adjustment test and, optionally, catalogues and
known minor planets: :mod:`pipeline.subtraction.services`) and cuts out the transient
candidates. In target mode it measures forced photometry of the photometry step's
targets in the difference image instead.
"""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS, FITSFixedWarning
from pydantic import Field, field_validator

from pipeline.calibration.result import CalibrationResult
from pipeline.fitsio import FitsInputError, load_image, write_atomic
from pipeline.flags import ObjectFlag
from pipeline.measurement import MeasurementConfig, measure_positions
from pipeline.prefilter import apply_prefilter, load_prefilter
from pipeline.steps.base import (
    IMAGE_FILE,
    MASK_FILE,
    WCS_FILE,
    StepContext,
    StepError,
    StepResult,
)
from pipeline.steps.transients_simple import TransientsSimpleConfig, XMatchCatalog
from pipeline.subtraction import candidates as cand
from pipeline.subtraction.chunks import subtract_in_chunks
from pipeline.subtraction.cutouts import write_candidate_cutouts
from pipeline.subtraction.engines import EngineUnavailable, engine_field, get_engine
from pipeline.subtraction.hotpants import HotpantsConfig, parse_extra_arguments
from pipeline.subtraction.prepare import PreparationError, prepare_inputs
from pipeline.subtraction.psf import PsfError
from pipeline.subtraction.services import service_checks
from pipeline.subtraction.sfft_engine import SfftConfig
from pipeline.templates.errors import TemplateError
from pipeline.templates.sources import TemplateSettings, get_template

# the catalogue and minor-planet settings are the catalogue-based search's, shared
_SHARED = TransientsSimpleConfig.model_fields

CALIBRATION_FILE = "calibration.json"
PREFILTER_FILE = "prefilter.pkl"
TARGETS_FILE = "targets.fits"  # written by the photometry step (pipeline.targets)
# Files this step writes.
TEMPLATE_OUT = "sub_template.fits"
TEMPLATE_MASK_OUT = "sub_template_mask.fits"
CONVOLVED_OUT = "sub_conv.fits"
DIFF_OUT = "sub_diff.fits"
NOISE_OUT = "sub_noise.fits"
SCORR_OUT = "sub_scorr.fits"
CANDIDATES_OUT = "candidates.fits"
TARGETS_OUT = "sub_targets.fits"
CUTOUT_FOLDER = "candidates"
_MEASUREMENT = MeasurementConfig()  # annulus radii default to the photometry step's


class SubtractionConfig(TemplateSettings):
    """Settings of the image-subtraction step."""

    engine: Literal["zogy", "sfft", "hotpants"] = Field(
        "zogy",
        description="Subtraction method: zogy (built in), sfft (needs the sfft package) or "
        "hotpants (needs the hotpants program).",
    )
    # each engine's own parameters, flat for the form: <engine>_<parameter> (see engines.py)
    sfft_kernel_half_width: int | None = engine_field(SfftConfig, "kernel_half_width", "SFFT")
    sfft_kernel_poly_order: int = engine_field(SfftConfig, "kernel_poly_order", "SFFT")
    sfft_bg_poly_order: int = engine_field(SfftConfig, "bg_poly_order", "SFFT")
    sfft_const_phot_ratio: bool = engine_field(SfftConfig, "const_phot_ratio", "SFFT")
    sfft_convolve: Literal["template", "science"] = engine_field(SfftConfig, "convolve", "SFFT")
    sfft_star_threshold: float = engine_field(SfftConfig, "star_threshold", "SFFT")
    sfft_star_radius: float = engine_field(SfftConfig, "star_radius", "SFFT")
    sfft_max_stars: int = engine_field(SfftConfig, "max_stars", "SFFT")
    sfft_threads: int | None = engine_field(SfftConfig, "threads", "SFFT")
    hotpants_kernel_half_width: int | None = engine_field(
        HotpantsConfig, "kernel_half_width", "HOTPANTS"
    )
    hotpants_stamp_half_width: int | None = engine_field(
        HotpantsConfig, "stamp_half_width", "HOTPANTS"
    )
    hotpants_gaussians: str | None = engine_field(HotpantsConfig, "gaussians", "HOTPANTS")
    hotpants_kernel_order: int = engine_field(HotpantsConfig, "kernel_order", "HOTPANTS")
    hotpants_bg_order: int = engine_field(HotpantsConfig, "bg_order", "HOTPANTS")
    hotpants_stamps: int | None = engine_field(HotpantsConfig, "stamps", "HOTPANTS")
    hotpants_fit_threshold: float = engine_field(HotpantsConfig, "fit_threshold", "HOTPANTS")
    hotpants_lower_sigma: float = engine_field(HotpantsConfig, "lower_sigma", "HOTPANTS")
    hotpants_convolve: Literal["t", "i", "b"] = engine_field(HotpantsConfig, "convolve", "HOTPANTS")
    hotpants_normalize: Literal["i", "t", "u"] = engine_field(
        HotpantsConfig, "normalize", "HOTPANTS"
    )
    hotpants_use_stars: bool = engine_field(HotpantsConfig, "use_stars", "HOTPANTS")
    hotpants_timeout: float = engine_field(HotpantsConfig, "timeout", "HOTPANTS")
    hotpants_extra: str = engine_field(HotpantsConfig, "extra", "HOTPANTS")

    @field_validator("hotpants_extra", "hotpants_gaussians")
    @classmethod
    def _hotpants_options(cls, value: str | None, info) -> str | None:
        if value:
            prefix = "-ng " if info.field_name == "hotpants_gaussians" else ""
            parse_extra_arguments(prefix + value)
        return value

    def engine_options(self) -> dict:
        """The chosen engine's parameters, without their ``<engine>_`` prefix."""
        prefix = f"{self.engine}_"
        return {k.removeprefix(prefix): v for k, v in self if k.startswith(prefix)}

    mode: Literal["detection", "target"] = Field(
        "detection",
        description="detection: search the difference for transients; target: forced "
        "photometry of the photometry step's targets in the difference.",
    )
    chunk_size: int = Field(1000, ge=128, le=8192, description="Sub-image side in pixels.")
    chunk_overlap: int = Field(50, ge=0, le=1000, description="Overlap of sub-images, pixels.")
    workers: int | None = Field(
        None, ge=1, le=64, description="Parallel sub-images; empty: one per CPU core."
    )
    background_mesh: int = Field(
        128, ge=16, le=2048, description="Background mesh size for both images, pixels."
    )
    template_fwhm: float | None = Field(
        None, gt=0, le=50, description="Template FWHM override in image pixels; empty: measured."
    )
    detect_thresh: float = Field(
        5.0, gt=0, description="Detection threshold on the significance map (sigma)."
    )
    detect_minarea: int = Field(3, ge=1, description="Minimum pixels above the threshold.")
    detect_negative: bool = Field(
        False, description="Also report objects that faded (negative in the difference)."
    )
    edge: int = Field(10, ge=0, description="Ignore detections this close to the image border.")
    sn_min: float = Field(5.0, ge=0, description="Minimum aperture S/N of a candidate.")
    use_prefilter: bool = Field(
        True, description="Drop candidates the science image's shape prefilter calls outliers."
    )
    reject_masked: bool = Field(
        True,
        description="Drop candidates whose photometric aperture holds unusable (masked) "
        "pixels of the difference image.",
    )
    local_flux_scale: bool = Field(
        True,
        description="Rescale the convolved template by the flux scale the nearest bright "
        "stars need (the zero point varies over the field), so that host galaxies "
        "subtract cleanly under transients.",
    )
    use_dipole_test: bool = Field(
        True, description="Drop candidates explained by a small shift/rescale of the template."
    )
    dipole_max_shift: float = Field(1.0, ge=0, le=5, description="Largest shift tried, pixels.")
    dipole_max_scale: float = Field(
        1.3, ge=1, le=3, description="Largest flux scale tried (and its inverse)."
    )
    dipole_inner: float = Field(
        2.0, gt=0, le=10, description="Radius of the adjustment fit, in FWHM."
    )
    dipole_p_value: float = Field(
        0.01, gt=0, lt=1, description="Reject when the adjusted χ² p-value exceeds this."
    )
    dipole_chi2_drop: float = Field(
        3.0, gt=1, description="Reject when the adjustment divides χ² by more than this."
    )
    dipole_source_sigma: float = Field(
        5.0,
        gt=0,
        description="Keep a candidate the adjustment explains when a new point source on "
        "the template (at the flux scale of the stars around it) fits better by this many σ.",
    )
    filter_catalogs: bool = Field(
        False,
        description="Reject candidates a catalogue object explains (CDS XMatch with Gaia "
        "eDR3, Pan-STARRS DR1, SkyMapper DR4): one within the match radius that is not "
        "fainter than the candidate's flux change by more than mag_diff. Off by default: "
        "it also rejects transients on catalogued galaxies and outbursts of known stars.",
    )
    catalogs: list[XMatchCatalog] | None = _SHARED["catalogs"]  # type: ignore[valid-type]
    xmatch_radius_fwhm: float = _SHARED["xmatch_radius_fwhm"]
    mag_diff: float = _SHARED["mag_diff"]
    xmatch_url: str = _SHARED["xmatch_url"]
    xmatch_timeout: float = _SHARED["xmatch_timeout"]
    skybot: bool = Field(
        False,
        description="Check the candidates against known minor planets (IMCCE SkyBoT); "
        "needs the image time.",
    )
    skybot_reject: bool = _SHARED["skybot_reject"]
    skybot_radius_arcsec: float = _SHARED["skybot_radius_arcsec"]
    skybot_location: str = _SHARED["skybot_location"]
    skybot_url: str = _SHARED["skybot_url"]
    skybot_timeout: float = _SHARED["skybot_timeout"]
    limit_sn: float = Field(5.0, gt=0, description="S/N of the upper limits in target mode.")
    max_cutouts: int = Field(200, ge=0, le=5000, description="Cut-outs written at most.")


CONFIG_MODEL = SubtractionConfig


def _image_and_wcs(ctx: StepContext) -> tuple[np.ndarray, fits.Header, WCS, np.ndarray]:
    if not ctx.path(IMAGE_FILE).exists():
        raise StepError(f"{IMAGE_FILE} is missing from the task folder: upload the image again")
    try:
        image, header = load_image(ctx.path(IMAGE_FILE))
    except FitsInputError as exc:
        raise StepError(str(exc)) from exc
    source = fits.getheader(ctx.path(WCS_FILE)) if ctx.path(WCS_FILE).exists() else header
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        try:
            wcs = WCS(source)
        except Exception:
            wcs = None
    if wcs is None or not wcs.has_celestial:
        raise StepError(
            "the image has no usable WCS (no astrometric solution): run the photometry step "
            "with astrometry enabled first, so the template can be aligned to the image"
        )
    mask = np.zeros(image.shape, np.uint8)
    if ctx.path(MASK_FILE).exists():
        mask = fits.getdata(ctx.path(MASK_FILE)).astype(np.uint8)
        if mask.shape != image.shape:
            raise StepError(f"{MASK_FILE} does not match the image shape: re-run inspection")
    return image.astype(float), header, wcs.celestial, mask


def _photometry_numbers(ctx: StepContext) -> tuple[float, float]:
    summary = ctx.read_result("photometry")
    if not summary or not summary.get("fwhm"):
        raise StepError(
            "the photometry step has not run: image subtraction needs its FWHM, apertures and "
            "calibration; run photometry first"
        )
    fwhm = float(summary["fwhm"])
    return fwhm, float(summary.get("aperture_radius") or fwhm)


def _write(ctx: StepContext, name: str, data, files: list[str], header=None) -> None:
    write_atomic(fits.PrimaryHDU(data=np.asarray(data, np.float32), header=header), ctx.path(name))
    files.append(name)


def _calibrate(table: Table, calibration: CalibrationResult | None) -> None:
    if calibration is None or len(table) == 0:
        table["mag_calib"] = np.full(len(table), np.nan)
        table["mag_calib_err"] = np.full(len(table), np.nan)
        return
    mag, err = calibration.magnitude(table["mag"], table["x"], table["y"], None, table["magerr"])
    table["mag_calib"], table["mag_calib_err"] = np.asarray(mag), np.asarray(err)


def _limits(table: Table, calibration: CalibrationResult | None, sn: float) -> None:
    with np.errstate(divide="ignore", invalid="ignore"):
        inst = -2.5 * np.log10(sn * np.asarray(table["fluxerr"], float))
    if calibration is not None and len(table):
        table["mag_limit"] = np.asarray(calibration.magnitude(inst, table["x"], table["y"])[0])
    else:
        table["mag_limit"] = inst


def _load_calibration(ctx: StepContext, warn: list[str]) -> CalibrationResult | None:
    if not ctx.path(CALIBRATION_FILE).exists():
        warn.append("no photometric calibration: candidate magnitudes are instrumental")
        return None
    return CalibrationResult.load(ctx.path(CALIBRATION_FILE))


def _select(table: Table, config: SubtractionConfig, ctx: StepContext, warn) -> Table:
    keep = np.ones(len(table), bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        sn = np.abs(np.asarray(table["flux"] / table["fluxerr"], float))
    keep &= np.nan_to_num(sn) >= config.sn_min
    flags = np.asarray(table["flags"], np.int32)
    if config.reject_masked:
        keep &= (flags & ObjectFlag.APERTURE_MASKED) == 0
    if config.use_prefilter:
        keep &= (flags & ObjectFlag.SHAPE_OUTLIER) == 0
    if config.use_dipole_test and "dipole_rejected" in table.colnames:
        keep &= ~np.asarray(table["dipole_rejected"], bool)
    return table[keep]


def _apply_prefilter(ctx: StepContext, table: Table, warn: list[str]) -> None:
    if not ctx.path(PREFILTER_FILE).exists() or len(table) == 0:
        if len(table):
            warn.append("no trained prefilter from the photometry step: shapes not checked")
        return
    model = load_prefilter(ctx.path(PREFILTER_FILE))
    outliers = apply_prefilter(model, table)
    table["flags"] = np.asarray(table["flags"], np.int32) | np.where(
        outliers, np.int32(ObjectFlag.SHAPE_OUTLIER), np.int32(0)
    )


def _find_candidates(
    ctx, config, inputs, products, adjustments, wcs, fwhm, aperture, calib, warn, summary
) -> Table:
    significance = products.significance
    if significance is None:
        significance = cand.gaussian_significance(products, fwhm)
    try:
        table = cand.detect_candidates(
            significance,
            products.bad,
            config.detect_thresh,
            config.detect_minarea,
            config.edge,
            config.detect_negative,
        )
    except ValueError as exc:
        raise StepError(str(exc)) from exc
    ctx.log.info("%d detections in the difference image", len(table))
    cand.refine_positions(products.difference, products.bad, table, fwhm)
    cand.shape_columns(products.difference, products.noise, products.bad, table, fwhm)
    table["flags"] = np.zeros(len(table), np.int32)
    table = cand.measure_candidates(
        products,
        table,
        fwhm=fwhm,
        rel_aper=aperture / fwhm,
        rel_bg1=_MEASUREMENT.rel_bg1,
        rel_bg2=_MEASUREMENT.rel_bg2,
        wcs=wcs,
    )
    # sign-aware magnitudes: a faded object is measured on the negated difference
    negative = np.asarray(table["sign"]) < 0
    if negative.any():
        flux = np.abs(np.asarray(table["flux"], float))
        with np.errstate(divide="ignore", invalid="ignore"):
            table["mag"] = np.where(negative, -2.5 * np.log10(flux), table["mag"])
            table["magerr"] = np.where(negative, 1.0857 * table["fluxerr"] / flux, table["magerr"])
    cand.add_scale_error(products, table, adjustments, fwhm=fwhm, radius=aperture)
    _apply_prefilter(ctx, table, warn)
    _calibrate(table, calib)
    with np.errstate(divide="ignore", invalid="ignore"):
        good = np.nan_to_num(np.abs(np.asarray(table["flux"] / table["fluxerr"]))) >= config.sn_min
    table = table[good]
    if config.use_dipole_test and len(table):
        summary.update(
            cand.dipole_tests(
                inputs,
                products,
                table,
                adjustments,
                fwhm=fwhm,
                inner=config.dipole_inner * fwhm,
                max_shift=config.dipole_max_shift,
                max_scale=config.dipole_max_scale,
                p_value=config.dipole_p_value,
                chi2_drop=config.dipole_chi2_drop,
                source_sigma=config.dipole_source_sigma,
            )
        )
    return table


def _targets(ctx, config, products, wcs, fwhm, aperture, calib, warn) -> Table | None:
    path = ctx.path(TARGETS_FILE)
    if not path.exists():
        warn.append("target mode: the photometry step wrote no targets.fits; nothing measured")
        return None
    targets = Table.read(path)
    if "ra" not in targets.colnames or "dec" not in targets.colnames:
        raise StepError(f"{TARGETS_FILE} has no ra/dec columns: re-run the photometry step")
    x, y = wcs.all_world2pix(np.asarray(targets["ra"], float), np.asarray(targets["dec"], float), 0)
    positions = Table({"x": x, "y": y})
    for name in ("name", "index"):
        if name in targets.colnames:
            positions[f"target_{name}"] = targets[name]
    ny, nx = products.difference.shape
    inside = (x >= 0) & (x <= nx - 1) & (y >= 0) & (y <= ny - 1)
    if not inside.all():
        warn.append(f"{int((~inside).sum())} target(s) fall outside the image")
    positions = positions[inside]
    table = measure_positions(
        products.difference,
        positions,
        fwhm=fwhm,
        mask=products.bad,
        noise=products.noise,
        rel_aper=aperture / fwhm,
        rel_bg1=_MEASUREMENT.rel_bg1,
        rel_bg2=_MEASUREMENT.rel_bg2,
        sn_min=0.0,
        wcs=wcs,
    )
    _calibrate(table, calib)
    _limits(table, calib, config.limit_sn)
    with np.errstate(divide="ignore", invalid="ignore"):
        table["detected"] = np.nan_to_num(table["flux"] / table["fluxerr"]) >= config.limit_sn
    return table


def _plain(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def run(ctx: StepContext, config: SubtractionConfig) -> StepResult:
    """Subtract a template from ``image.fits`` and find transient candidates."""
    warn: list[str] = []
    files: list[str] = []
    started = time.monotonic()
    ctx.progress(0.0, "reading the image")
    image, _header, wcs, mask = _image_and_wcs(ctx)
    fwhm, aperture = _photometry_numbers(ctx)
    inspect = ctx.read_result("inspect") or {}
    ctx.progress(0.05, f"getting the {config.template} template")
    try:
        template = get_template(
            config, ctx.task_dir, wcs, image.shape, inspect.get("filter"), ctx.cache("templates")
        )
    except TemplateError as exc:
        raise StepError(str(exc)) from exc
    warn.extend(template.warnings)
    ctx.log.info("template: %s", template.description)
    _write(ctx, TEMPLATE_OUT, template.data, files, wcs.to_header(relax=True))
    write_atomic(fits.PrimaryHDU(template.bad.astype(np.uint8)), ctx.path(TEMPLATE_MASK_OUT))
    files.append(TEMPLATE_MASK_OUT)

    ctx.progress(0.25, "matching backgrounds, PSFs and flux scales")
    try:
        inputs, info = prepare_inputs(
            image,
            mask != 0,
            template.data,
            template.bad,
            image_fwhm=fwhm,
            image_gain=inspect.get("gain"),
            template_gain=template.gain,
            image_saturation=inspect.get("saturation"),
            template_saturation=template.saturation,
            template_fwhm=config.template_fwhm,
            background_mesh=config.background_mesh,
        )
        engine = get_engine(config.engine, **config.engine_options())
        ctx.progress(0.35, f"subtracting ({config.engine})")
        products = subtract_in_chunks(
            inputs,
            engine,
            config.chunk_size,
            config.chunk_overlap,
            config.workers,
            lambda f, m: ctx.progress(0.35 + 0.4 * f, m),
        )
    except (PreparationError, PsfError, EngineUnavailable) as exc:
        raise StepError(f"image subtraction failed: {exc}") from exc
    products.difference[products.bad] = 0.0  # masked pixels carry no information
    noise_factors = cand.calibrate_noise(products)
    ctx.log.info(
        "noise calibration: significance ÷ %.3f, difference noise × %.3f",
        noise_factors["significance_scale"],
        noise_factors["noise_scale"],
    )
    adjustments = cand.star_adjustments(
        inputs,
        products,
        fwhm=fwhm,
        inner=config.dipole_inner * fwhm,
        max_shift=config.dipole_max_shift,
        max_scale=config.dipole_max_scale,
    )
    if config.local_flux_scale:
        adjustments, scale_range = cand.apply_local_scale(products, adjustments)
        noise_factors.update(scale_range)
        ctx.log.info("local flux scale of the template: %.4f to %.4f", *scale_range.values())
    ctx.log.info(
        "flux ratio template/image %.4g from %d stars",
        info["flux_ratio"],
        info["n_flux_ratio_stars"],
    )
    wcs_header = wcs.to_header(relax=True)
    _write(ctx, CONVOLVED_OUT, products.convolved, files, wcs_header)
    _write(ctx, DIFF_OUT, products.difference, files, wcs_header)
    _write(ctx, NOISE_OUT, products.noise, files, wcs_header)
    if products.significance is not None:
        _write(ctx, SCORR_OUT, products.significance, files, wcs_header)

    calib = _load_calibration(ctx, warn)
    summary: dict = {
        "template": template.description,
        "template_source": config.template,
        "template_band": template.band,
        "engine": config.engine,
        "mode": config.mode,
        "n_chunks": products.info["n_chunks"],
        **{k: _plain(v) for k, v in info.items()},
        **{k: round(v, 4) for k, v in noise_factors.items()},
    }
    ctx.progress(0.8, "measuring the difference image")
    if config.mode == "target":
        table = _targets(ctx, config, products, wcs, fwhm, aperture, calib, warn)
        if table is not None:
            table.write(ctx.path(TARGETS_OUT), overwrite=True)
            files.append(TARGETS_OUT)
            summary["n_targets"] = len(table)
    else:
        table = _find_candidates(
            ctx, config, inputs, products, adjustments, wcs, fwhm, aperture, calib, warn, summary
        )
        summary["n_detections"] = len(table)
        flags = np.asarray(table["flags"], np.int32) if len(table) else np.zeros(0, np.int32)
        summary["n_prefilter_rejected"] = int(np.sum(flags & ObjectFlag.SHAPE_OUTLIER != 0))
        if "dipole_rejected" in table.colnames:
            summary["n_dipole_rejected"] = int(np.sum(table["dipole_rejected"]))
        selected = _select(table, config, ctx, warn)
        selected = service_checks(
            ctx, config, selected, wcs, fwhm, calib, inspect, image.shape, summary, warn
        )
        selected.meta.update({"FWHM": fwhm, "APERTUR": aperture})
        selected.write(ctx.path(CANDIDATES_OUT), overwrite=True)
        files.append(CANDIDATES_OUT)
        summary["n_candidates"] = len(selected)
        ctx.progress(0.9, "cutting out candidates")
        names = write_candidate_cutouts(
            ctx.task_dir / CUTOUT_FOLDER,
            selected[: config.max_cutouts],
            image,
            template.data,
            products,
            mask,
            fwhm,
        )
        files.extend(str(Path(CUTOUT_FOLDER) / n) for n in names)
    summary["seconds"] = round(time.monotonic() - started, 2)
    return StepResult(summary=summary, files=files, warnings=warn)
