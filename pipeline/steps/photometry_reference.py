"""Second half of the photometry step: reference catalogue → astrometry → calibration →
detection limit.

Called by :mod:`pipeline.steps.photometry` once objects are measured. Every failure
that the user can fix (no position for the field, a field outside the catalogue, no
astrometric match) becomes a :class:`StepError` with the message of the module that
found it; a service outage becomes :class:`ServiceUnavailable` so the job may retry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from pydantic import Field

from pipeline import calibration_plots
from pipeline.astrometry import (
    AstrometryConfig,
    AstrometryError,
    plot_residual_map,
    solve_astrometry,
    write_wcs_file,
)
from pipeline.astrometry.errors import SolverCancelled, SolverTimeout
from pipeline.calibration import (
    CalibrationColumns,
    CalibrationConfig,
    CalibrationError,
    calibrate_photometry,
)
from pipeline.catalogs import CatalogConfig, CatalogError, reference_catalog
from pipeline.filters import normalize_filter
from pipeline.limits import add_local_limits, catalog_magnitudes_in_image, detection_limits
from pipeline.steps.base import (
    WCS_FILE,
    ServiceUnavailable,
    StepCancelled,
    StepContext,
    StepError,
)

CALIBRATION_FILE = "calibration.json"
ASTROMETRY_PLOT = "astrometry.png"
CALIBRATION_PLOT = "calibration.png"
ZP_MAP_PLOT = "zeropoint.png"
COLOR_PLOT = "color_terms.png"
LIMIT_PLOT = "limit.png"
HISTOGRAM_PLOT = "magnitudes.png"
FIELD_MARGIN = 1.1  # catalogue cone beyond the image corners, to survive a pointing error


class ReferenceConfig(CatalogConfig, AstrometryConfig, CalibrationConfig):
    """Reference catalogue, astrometry and calibration settings of the photometry step."""

    calibrate: bool = Field(
        True,
        description="Fetch the reference catalogue, refine the astrometry and calibrate the "
        "magnitudes. Off: instrumental magnitudes only.",
    )


@dataclass
class ReferenceOutcome:
    summary: dict[str, Any] = field(default_factory=dict)
    wcs: WCS | None = None
    calibration: Any = None


def _header_with_task_wcs(ctx: StepContext, header: fits.Header) -> fits.Header:
    """The image header with the task's own WCS file (sanitised at inspection) on top."""
    merged = header.copy()
    if ctx.path(WCS_FILE).exists():
        merged.update(fits.getheader(ctx.path(WCS_FILE)))
    return merged


def field_position(
    wcs: WCS | None, shape: tuple[int, int], inspect: dict[str, Any], config: ReferenceConfig
) -> tuple[float, float, float]:
    """Centre (deg) and radius (deg) of a cone covering the image."""
    ny, nx = shape
    if wcs is not None:
        corners = np.array([[0, 0], [nx - 1, 0], [0, ny - 1], [nx - 1, ny - 1]], float)
        centre = wcs.pixel_to_world((nx - 1) / 2, (ny - 1) / 2)
        edge = wcs.pixel_to_world(corners[:, 0], corners[:, 1])
        radius = float(np.max(centre.separation(edge).deg))
        return float(centre.ra.deg), float(centre.dec.deg), radius * FIELD_MARGIN
    ra = config.blind_ra if config.blind_ra is not None else inspect.get("ra_hint")
    dec = config.blind_dec if config.blind_dec is not None else inspect.get("dec_hint")
    scale = config.pixel_scale_hint or inspect.get("pixel_scale_arcsec")
    if ra is None or dec is None:
        raise StepError(
            "the image has no usable WCS and no RA/DEC in its header: give the field centre "
            "in blind_ra and blind_dec (degrees), and pixel_scale_hint if you know it"
        )
    if config.blind_radius_deg:
        radius = config.blind_radius_deg
    elif scale:
        radius = 0.5 * math.hypot(nx, ny) * float(scale) / 3600 * 1.5
    else:
        raise StepError(
            "the image has no usable WCS and its pixel scale is unknown: set pixel_scale_hint "
            "(arcsec per pixel) or blind_radius_deg"
        )
    return float(ra), float(dec), float(radius)


def _catalog(ctx, config, ra, dec, radius, filter_name, fwhm_arcsec, warn):
    if config.catalog_file and not Path(config.catalog_file).is_absolute():
        # a file uploaded into the task folder is named relative to it
        config = config.model_copy(update={"catalog_file": str(ctx.path(config.catalog_file))})
    try:
        reference = reference_catalog(
            config,
            ra,
            dec,
            radius,
            filter_name,
            fwhm_arcsec=fwhm_arcsec,
            cache_dir=ctx.cache("catalogs"),
            logger=ctx.log,
        )
    except CatalogError as exc:
        raise StepError(f"reference catalogue: {exc}") from exc
    warn.extend(reference.warnings)
    ctx.log.info(
        "reference catalogue %s: %d stars within %.3f° of %.5f %+.5f; calibrating in %s",
        reference.catalog,
        len(reference.table),
        radius,
        ra,
        dec,
        reference.band,
    )
    return reference


def _astrometry(ctx, config, table, reference, header, shape, files, warn):
    if config.index_cache_dir is None and ctx.cache_dir is not None:
        config = config.model_copy(update={"index_cache_dir": str(ctx.cache("astrometry"))})
    try:
        solution = solve_astrometry(
            table,
            reference.table,
            header,
            shape,
            config,
            work_dir=ctx.task_dir,
            cancelled=ctx.is_cancelled,
        )
    except SolverCancelled as exc:
        raise StepCancelled(str(exc)) from exc
    except SolverTimeout as exc:
        raise ServiceUnavailable(f"astrometry: {exc}") from exc
    except AstrometryError as exc:
        raise StepError(f"astrometry: {exc}") from exc
    warn.extend(solution.warnings)
    write_wcs_file(solution.wcs, ctx.path(WCS_FILE), extra=solution.fits_cards())
    files.append(WCS_FILE)
    _draw(ctx, ASTROMETRY_PLOT, lambda p: plot_residual_map(solution, shape, p), files, warn)
    ctx.log.info(
        "astrometry (%s): %d matches, RMS %.3f″ (%.3f px)",
        solution.method,
        solution.n_matches,
        solution.rms_arcsec,
        solution.rms_px,
    )
    return solution


def _draw(ctx: StepContext, name: str, draw, files: list[str], warn: list[str]) -> None:
    try:
        draw(ctx.path(name))
        files.append(name)
    except Exception as exc:  # a failed plot must not lose the measurements
        ctx.log.warning("plot %s failed: %s", name, exc)
        warn.append(f"the plot {name} could not be drawn: {exc}")


def _set_sky_positions(table: Table, wcs: WCS) -> None:
    ra, dec = wcs.all_pix2world(np.asarray(table["x"], float), np.asarray(table["y"], float), 0)
    table["ra"], table["dec"] = ra, dec


def _calibrate(ctx, config, table, reference, wcs, shape, fwhm, sn, files, warn, plots):
    try:
        columns = CalibrationColumns.for_band(reference.band)
    except ValueError:
        columns = CalibrationColumns(mag=reference.mag_column, err=reference.err_column)
    try:
        result = calibrate_photometry(
            table,
            reference.table,
            columns,
            shape=shape,
            fwhm=fwhm,
            wcs=wcs,
            config=config,
            catalog_title=reference.catalog,
            logger=ctx.log,
        )
    except CalibrationError as exc:
        raise StepError(f"calibration: {exc}") from exc
    warn.extend(result.warnings)
    result.apply(table, color=result.object_colors)
    result.save(ctx.path(CALIBRATION_FILE))
    files.append(CALIBRATION_FILE)
    limits = detection_limits(table, result, sn=sn)
    add_local_limits(table, result, sn)
    ctx.log.info("calibration: %s", result.description)
    if plots:
        _draw(
            ctx,
            CALIBRATION_PLOT,
            lambda p: calibration_plots.plot_calibration_residuals(result, p),
            files,
            warn,
        )
        _draw(
            ctx,
            ZP_MAP_PLOT,
            lambda p: calibration_plots.plot_calibration_maps(result, p),
            files,
            warn,
        )
        if result.diagnostics:
            _draw(
                ctx,
                COLOR_PLOT,
                lambda p: calibration_plots.plot_color_diagnostics(result.diagnostics, p),
                files,
                warn,
            )
        _draw(
            ctx,
            LIMIT_PLOT,
            lambda p: calibration_plots.plot_detection_limit(table, result, limits, p),
            files,
            warn,
        )
        catalog_mags = catalog_magnitudes_in_image(
            reference.table, reference.mag_column, wcs, shape
        )
        _draw(
            ctx,
            HISTOGRAM_PLOT,
            lambda p: calibration_plots.plot_limit_histogram(
                table["mag_calib"], table["flags"], catalog_mags, limits, p
            ),
            files,
            warn,
        )
    return result, limits


def run_reference_stage(
    ctx: StepContext,
    config: ReferenceConfig,
    table: Table,
    header: fits.Header,
    shape: tuple[int, int],
    fwhm: float,
    wcs: WCS | None,
    files: list[str],
    warn: list[str],
    plots: bool,
) -> ReferenceOutcome:
    """Catalogue, astrometry and calibration for the measured ``table`` (changed in place)."""
    if not config.calibrate:
        warn.append("calibration is switched off: magnitudes are instrumental")
        return ReferenceOutcome(wcs=wcs)
    inspect = ctx.read_result("inspect") or {}
    filter_name = inspect.get("filter") or normalize_filter(header.get("FILTER"))
    if not filter_name:
        filter_name = "clear"
        warn.append(
            "the filter is unknown: calibrating as an unfiltered image against Gaia G; set the "
            "filter in the inspection settings if that is wrong"
        )
    ra, dec, radius = field_position(wcs, shape, inspect, config)
    scale = inspect.get("pixel_scale_arcsec") or config.pixel_scale_hint
    fwhm_arcsec = fwhm * scale if scale else None
    ctx.progress(0.55, "fetching the reference catalogue")
    reference = _catalog(ctx, config, ra, dec, radius, filter_name, fwhm_arcsec, warn)
    summary: dict[str, Any] = {
        "catalog": reference.catalog,
        "n_catalog": len(reference.table),
        "filter": filter_name,
        "calibration_band": reference.band,
    }
    if config.astrometry_method != "none":
        ctx.progress(0.62, "astrometry")
        solution = _astrometry(
            ctx, config, table, reference, _header_with_task_wcs(ctx, header), shape, files, warn
        )
        wcs = solution.wcs
        astro = solution.summary()
        summary.update(
            {
                "wcs_rms_arcsec": astro["rms_arcsec"],
                "wcs_matches": astro["n_matches"],
                "astrometry": astro,
            }
        )
    elif wcs is None:
        raise StepError("astrometry_method is 'none' but the image has no usable WCS")
    _set_sky_positions(table, wcs)
    ctx.progress(0.7, "photometric calibration")
    result, limits = _calibrate(
        ctx, config, table, reference, wcs, shape, fwhm, config.sn, files, warn, plots
    )
    calib = result.summary()
    limit_values = limits.to_dict()
    summary.update(
        {
            "zp": calib["zp_center"],
            "zp_err": calib["zp_center_err"],
            "zp_median": calib["zp_median"],
            "color_term": calib["color_term"],
            "color_term_err": calib["color_term_err"],
            "color": calib["color_name"],
            "intrinsic_scatter": calib["intrinsic_scatter"],
            "n_calibration_stars": calib["n_used"],
            "zp_order": calib["order"],
            "magnitude_system": calib["description"],
            "suggested_band": calib["suggested_band"],
            "limit_sn5": _limit_at(limit_values, 5),
            "limits": limit_values,
            "calibration": calib,
        }
    )
    return ReferenceOutcome(summary=summary, wcs=wcs, calibration=result)


def _limit_at(limits: dict[str, Any], sn: float) -> float | None:
    values = limits.get("limits", limits)
    for key, value in values.items():
        try:
            if float(key) == sn:
                return value
        except ValueError:
            continue
    return None
