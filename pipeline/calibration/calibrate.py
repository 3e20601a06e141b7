"""Calibrate the objects of one image against a reference catalogue: the one-call entry.

:func:`calibrate_photometry` pairs objects with catalogue stars, chooses the
calibration stars, checks that their magnitudes correlate, fits the model with
fallbacks (lower polynomial order, no colour term) and, when the colour term or the
scatter is suspiciously large, refits with every band of the catalogue to suggest
the filter the image was probably taken in. Every fallback and suspicion becomes a
warning in the result; a calibration that cannot be made raises
:class:`CalibrationError` saying what to change.
"""

from __future__ import annotations

import logging

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS
from numpy.typing import NDArray

from pipeline.calibration.columns import CalibrationColumns, supported_bands
from pipeline.calibration.config import CalibrationConfig
from pipeline.calibration.diagnostics import (
    BandTrial,
    ColorDiagnostics,
    diagnose_color_terms,
    magnitude_correlation_test,
)
from pipeline.calibration.errors import CalibrationError
from pipeline.calibration.fallback import ZP_GRID_NODES, fit_with_fallbacks
from pipeline.calibration.fit import FitOutput
from pipeline.calibration.match import CatalogMatch, MatchError, match_catalog
from pipeline.calibration.model import PhotometricModel, PixelFrame
from pipeline.calibration.result import CalibrationResult
from pipeline.calibration.stars import (
    EXCLUSION_REASONS,
    CalibrationPairs,
    matches_table,
    object_colors,
    prepare_pairs,
)

log = logging.getLogger("skysift.calibration")


def _band_trial(
    band: str,
    objects: Table,
    catalog: Table,
    match: CatalogMatch,
    frame: PixelFrame,
    config: CalibrationConfig,
    isolation_radius: float,
) -> BandTrial:
    """Refit with ``band`` as the primary magnitude and a free colour term."""
    columns = CalibrationColumns.for_band(band)
    trial = BandTrial(band, columns.color_name)
    settings = config.model_copy(update={"calib_color_term": True, "calib_fixed_color_term": None})
    try:
        pairs = prepare_pairs(objects, catalog, match, columns, settings, isolation_radius)
        fit, _, _ = fit_with_fallbacks(frame, pairs, columns, settings, [])
    except (CalibrationError, ValueError) as exc:
        trial.error = str(exc)
        return trial
    if not fit.color_fitted:
        trial.error = "too few stars with a colour"
        return trial
    trial.color_term = fit.color_term
    trial.color_term_err = float(np.sqrt(max(fit.covariance[-1, -1], 0.0)))
    trial.scatter = fit.scatter_uncapped
    trial.n_used = fit.n_used
    return trial


def _zero_point_stats(model: PhotometricModel, fit: FitOutput) -> dict:
    frame = model.frame
    grid_x, grid_y = frame.grid(max(frame.nx, frame.ny) / ZP_GRID_NODES)
    zp_map = model.zero_point(grid_x, grid_y)
    used = fit.used
    weight = 1.0 / fit.total_error[used] ** 2
    return {
        "zp_center": float(fit.parameters[0]),
        "zp_center_err": float(np.sqrt(max(fit.covariance[0, 0], 0.0))),
        "zp_median": float(np.median(zp_map)),
        "zp_min": float(zp_map.min()),
        "zp_max": float(zp_map.max()),
        "zp_rms": float(np.std(zp_map)),
        "rms": float(np.sqrt(np.sum(weight * fit.residual[used] ** 2) / weight.sum())),
    }


def _check_inputs(
    objects: Table,
    catalog: Table,
    columns: CalibrationColumns,
    shape: tuple[int, int],
    fwhm: float,
) -> PixelFrame:
    """Reject unusable input with a message saying what is wrong; return the frame."""
    missing = [name for name in ("x", "y", "mag", "magerr") if name not in objects.colnames]
    if missing:
        raise CalibrationError(
            f"the objects table lacks {', '.join(missing)}: run detection and measurement first"
        )
    if len(objects) == 0:
        raise CalibrationError("there are no measured objects to calibrate")
    if len(catalog) == 0:
        raise CalibrationError("the reference catalogue is empty: nothing to calibrate against")
    if columns.mag not in catalog.colnames:
        available = ", ".join(name for name in catalog.colnames if "mag" in name.lower())
        raise CalibrationError(
            f"the catalogue has no {columns.mag!r} column for band {columns.band}; its "
            f"magnitude columns are: {available or 'none'}; choose another band or catalogue"
        )
    try:
        ny, nx = (int(v) for v in shape)
    except (TypeError, ValueError) as exc:
        raise CalibrationError(f"shape must be (ny, nx) of the image, not {shape!r}") from exc
    if nx < 1 or ny < 1:
        raise CalibrationError(f"shape must be positive (ny, nx), not {shape!r}")
    try:
        usable_fwhm = bool(np.isfinite(float(fwhm)) and float(fwhm) > 0)
    except (TypeError, ValueError):
        usable_fwhm = False
    if not usable_fwhm:
        raise CalibrationError(f"the FWHM must be a positive number of pixels, not {fwhm!r}")
    return PixelFrame(nx, ny)


def _usable_columns(
    catalog: Table, columns: CalibrationColumns, config: CalibrationConfig, warn: list[str]
) -> CalibrationColumns:
    """Drop the colour when the catalogue cannot give it (with a warning if it was wanted).

    A colour that is present but not fitted is kept: the residuals are still shown
    against it.
    """
    if columns.color is not None:
        absent = [name for name in columns.color if name not in catalog.colnames]
        if absent:
            if config.calib_color_term or config.calib_fixed_color_term is not None:
                warn.append(
                    f"the catalogue lacks {', '.join(absent)}, needed for the "
                    f"{columns.color_name} colour: calibrated without a colour term (C = 0), "
                    f"i.e. in the instrumental passband tied to {columns.band} at zero colour"
                )
            columns = columns.without_color()
    if columns.err is None or columns.err not in catalog.colnames:
        warn.append(
            f"the catalogue gives no errors for {columns.mag}: only measurement errors are "
            "used (the fitted intrinsic scatter absorbs the catalogue's)"
        )
    return columns


def _default_color(
    pairs: CalibrationPairs,
    fit: FitOutput,
    candidates: NDArray,
    columns: CalibrationColumns,
    config: CalibrationConfig,
) -> tuple[float, str]:
    if pairs.color is None:
        return 0.0, "no colour term"
    colors = pairs.color[candidates][fit.used]
    colors = colors[np.isfinite(colors)]
    if config.calib_unknown_color == "zero" or colors.size == 0:
        return 0.0, "zero, as configured"
    return (
        float(np.median(colors)),
        f"median {columns.color_name} of the {colors.size} calibration stars",
    )


def _suspicions(fit: FitOutput, config: CalibrationConfig) -> list[str]:
    """Reasons to think the filter (or catalogue band) is wrong."""
    reasons = []
    if fit.color_fitted and abs(fit.color_term) > config.calib_color_term_limit:
        reasons.append(
            f"colour term {fit.color_term:.2f} exceeds ±{config.calib_color_term_limit:g}"
        )
    if fit.scatter_uncapped > config.calib_scatter_limit:
        reasons.append(
            f"scatter beyond the errors {fit.scatter_uncapped:.3f} mag exceeds "
            f"{config.calib_scatter_limit:g}"
        )
    return reasons


def _run_diagnostics(
    objects: Table,
    catalog: Table,
    match: CatalogMatch,
    frame: PixelFrame,
    config: CalibrationConfig,
    isolation: float,
    columns: CalibrationColumns,
    suspicion: list[str],
    warn: list[str],
    logger: logging.Logger,
) -> ColorDiagnostics | None:
    """Refit with every band the catalogue supports; warn with the best one if suspect."""
    bands = supported_bands(catalog)
    if not bands:
        if suspicion:
            warn.append(
                f"the calibration is suspect ({'; '.join(suspicion)}), and the catalogue has "
                "no other band to compare with: check the image filter"
            )
        return None
    reason = "; ".join(suspicion) if suspicion else "requested"
    diagnostics = diagnose_color_terms(
        bands,
        lambda band: _band_trial(band, objects, catalog, match, frame, config, isolation),
        reason,
    )
    for line in diagnostics.summary_lines():
        logger.info("colour-term diagnostics: %s", line)
    best = diagnostics.suggested_band
    if suspicion:
        if best is not None and best != columns.band:
            warn.append(
                f"the filter is probably not {columns.band} ({'; '.join(suspicion)}): the "
                f"smallest colour term is found with {best}; re-run with filter {best}"
            )
        else:
            warn.append(
                f"the calibration in {columns.band} is suspect ({'; '.join(suspicion)}), "
                "though no other band of the catalogue fits better: check the catalogue and "
                "the image filter"
            )
    return diagnostics


def calibrate_photometry(
    objects: Table,
    catalog: Table,
    columns: CalibrationColumns | str,
    *,
    shape: tuple[int, int],
    fwhm: float,
    wcs: WCS | None = None,
    pixel_scale_arcsec: float | None = None,
    config: CalibrationConfig | None = None,
    catalog_title: str | None = None,
    logger: logging.Logger | None = None,
) -> CalibrationResult:
    """Fit m_cat = m_inst + ZP(x, y) + C·colour for the objects of one image.

    Parameters
    ----------
    objects : astropy.table.Table
        Measured objects: ``x``, ``y`` (0-based), ``mag``, ``magerr``, ``flags`` and,
        for a match without WCS, ``ra``, ``dec``.
    catalog : astropy.table.Table
        Reference catalogue: RA/Dec and magnitude columns.
    columns : CalibrationColumns or str
        The catalogue columns, or a calibration band (``"r"``, ``"V"`` ...) whose
        columns and colour follow from :meth:`CalibrationColumns.for_band`.
    shape : (int, int)
        Image shape (ny, nx); it fixes the coordinate normalisation.
    fwhm : float
        Image FWHM, pixels (match and isolation radii are in its units).
    wcs : astropy.wcs.WCS, optional
        Image WCS: the match is made in pixels. Without it, on the objects' ra/dec.
    pixel_scale_arcsec : float, optional
        Needed only without ``wcs``.
    config : CalibrationConfig, optional
        Settings (defaults if None).
    catalog_title : str, optional
        Catalogue name for the description (``"Pan-STARRS DR1"``).
    logger : logging.Logger, optional
        Where to log progress lines.

    Returns
    -------
    CalibrationResult

    Raises
    ------
    CalibrationError
        When columns are missing, nothing matches, or too few stars remain.
    """
    config = config or CalibrationConfig()
    logger = logger or log
    if isinstance(columns, str):
        try:
            columns = CalibrationColumns.for_band(columns)
        except ValueError as exc:
            raise CalibrationError(str(exc)) from exc
    frame = _check_inputs(objects, catalog, columns, shape, fwhm)
    warn: list[str] = []
    columns = _usable_columns(catalog, columns, config, warn)
    try:
        match = match_catalog(
            objects,
            catalog,
            config.calib_match_radius * fwhm,
            wcs=wcs,
            pixel_scale_arcsec=pixel_scale_arcsec,
        )
    except MatchError as exc:
        raise CalibrationError(str(exc)) from exc
    if len(match) == 0:
        raise CalibrationError(
            f"no object lies within {config.calib_match_radius:g}·FWHM of a catalogue star: "
            "check that the astrometric solution is right and the catalogue covers the image"
        )
    isolation = config.calib_isolation_radius * fwhm
    if match.unit == "arcsec":
        isolation *= pixel_scale_arcsec
    pairs = prepare_pairs(objects, catalog, match, columns, config, isolation)
    logger.info(
        "%d object-catalogue pairs within %.2f %s; excluded: %s",
        len(match),
        match.radius,
        match.unit,
        ", ".join(f"{(pairs.reason == r).sum()} {r}" for r in EXCLUSION_REASONS),
    )

    usable = pairs.candidates(need_color=False)
    correlation = magnitude_correlation_test(
        pairs.mag_inst[usable], pairs.mag_cat[usable], config.calib_permutations
    )
    if correlation.p_value is None:
        warn.append(
            f"only {correlation.n_pairs} matched stars: too few to check that instrumental "
            "and catalogue magnitudes correlate (a test of the astrometric solution)"
        )
    elif correlation.p_value > config.calib_sanity_p_value:
        warn.append(
            f"instrumental and catalogue magnitudes of the {correlation.n_pairs} matched stars "
            f"do not correlate (rank correlation {correlation.correlation:.2f}, p = "
            f"{correlation.p_value:.2f}): the astrometric solution is probably wrong; check "
            "or redo the astrometry before trusting this calibration"
        )

    fit, candidates, used_color = fit_with_fallbacks(frame, pairs, columns, config, warn)
    has_color = used_color and (fit.color_fitted or fit.color_term != 0.0)
    default_color, rule = _default_color(pairs, fit, candidates, columns, config)
    model = PhotometricModel(
        frame=frame,
        order=fit.order,
        coefficients=fit.parameters[: len(fit.parameters) - int(fit.color_fitted)],
        covariance=fit.covariance,
        color_term=fit.color_term if has_color else 0.0,
        color_fitted=fit.color_fitted,
        color_name=columns.color_name if has_color else None,
        color_columns=columns.color if has_color else None,
        default_color=default_color if has_color else 0.0,
        default_color_rule=rule if has_color else "no colour term",
        intrinsic_scatter=fit.intrinsic_scatter,
        error_scale=fit.error_scale,
        band=columns.band,
        catalog_title=catalog_title,
        mag_column=columns.mag,
        err_column=columns.err,
    )
    if fit.intrinsic_scatter >= config.calib_max_scatter > 0 and fit.error_scale > 1.0:
        warn.append(
            f"the stars scatter more than their errors and the {config.calib_max_scatter:g} "
            f"mag intrinsic scatter allow: errors were scaled up by {fit.error_scale:.2f}"
        )
    suspicion = _suspicions(fit, config)
    diagnostics = None
    if suspicion or config.calib_diagnose_color:
        diagnostics = _run_diagnostics(
            objects, catalog, match, frame, config, isolation, columns, suspicion, warn, logger
        )

    stats = _zero_point_stats(model, fit)
    stats.update(
        color_term=model.color_term,
        color_term_err=model.color_term_err,
        intrinsic_scatter=fit.intrinsic_scatter,
        scatter_uncapped=fit.scatter_uncapped,
        error_scale=fit.error_scale,
        chi2_dof=fit.chi2_dof,
        n_matched=len(match),
        n_candidates=int(candidates.sum()),
        n_used=fit.n_used,
        n_rejected=int(candidates.sum()) - fit.n_used,
        order_requested=config.calib_order,
        order=fit.order,
        excluded={r: int((pairs.reason == r).sum()) for r in EXCLUSION_REASONS},
        match_radius=match.radius,
        match_unit=match.unit,
    )
    for text in warn:
        logger.warning("calibration: %s", text)
    logger.info(
        "calibration: %s; ZP %.3f ± %.3f at the centre (median %.3f), scatter %.4f, "
        "%d of %d stars used",
        model.description(),
        stats["zp_center"],
        stats["zp_center_err"],
        stats["zp_median"],
        fit.intrinsic_scatter,
        fit.n_used,
        int(candidates.sum()),
    )
    return CalibrationResult(
        model=model,
        stats=stats,
        correlation=correlation,
        diagnostics=diagnostics,
        warnings=warn,
        matches=matches_table(pairs, fit, candidates),
        object_colors=object_colors(pairs, len(objects)) if has_color else None,
    )
