"""Photometric calibration: m_cat = m_inst + ZP(x, y) + C·colour against a reference catalogue.

Typical use in the photometry step::

    from pipeline.calibration import CalibrationConfig, calibrate_photometry

    result = calibrate_photometry(objects, ref.table, ref.band, shape=image.shape,
                                  fwhm=fwhm, wcs=wcs, config=config,
                                  catalog_title="Pan-STARRS DR1", logger=ctx.log)
    result.apply(objects, color=result.object_colors)  # mag_calib, mag_calib_err
    result.save(task_dir / "calibration.json")           # JSON, reloadable
    result.warnings                                      # fallbacks and suspicions

    later = CalibrationResult.load(task_dir / "calibration.json")
    mag, err = later.magnitude(target_mag, x, y, mag_err=target_magerr)

Modules: ``config`` (settings), ``columns`` (catalogue columns, colour by band, system
names), ``match`` (object–catalogue pairs), ``stars`` (which pairs calibrate),
``model`` (the serialisable model), ``fit`` (robust fit with intrinsic scatter),
``fallback`` (lower order / no colour term when stars are few), ``diagnostics``
(correlation test, colour-term diagnostics), ``result`` (the result and its storage),
``calibrate`` (the one-call entry), ``errors``.
"""

from pipeline.calibration.calibrate import calibrate_photometry
from pipeline.calibration.columns import (
    CalibrationColumns,
    band_label,
    describe_calibration,
    supported_bands,
)
from pipeline.calibration.config import CalibrationConfig
from pipeline.calibration.diagnostics import (
    BandTrial,
    ColorDiagnostics,
    CorrelationTest,
    diagnose_color_terms,
    magnitude_correlation_test,
)
from pipeline.calibration.errors import CalibrationError
from pipeline.calibration.fit import FitOutput, fit_zero_point
from pipeline.calibration.match import (
    CatalogMatch,
    MatchError,
    catalog_positions,
    crowded_catalog_stars,
    match_catalog,
    project_catalog,
)
from pipeline.calibration.model import (
    MAG_CALIB_COLOR_COLUMN,
    MAG_CALIB_COLUMN,
    MAG_CALIB_ERR_COLUMN,
    PhotometricModel,
    PixelFrame,
    polynomial_terms,
)
from pipeline.calibration.result import CalibrationResult
from pipeline.calibration.stars import EXCLUSION_REASONS

__all__ = [
    "EXCLUSION_REASONS",
    "MAG_CALIB_COLOR_COLUMN",
    "MAG_CALIB_COLUMN",
    "MAG_CALIB_ERR_COLUMN",
    "BandTrial",
    "CalibrationColumns",
    "CalibrationConfig",
    "CalibrationError",
    "CalibrationResult",
    "CatalogMatch",
    "ColorDiagnostics",
    "CorrelationTest",
    "FitOutput",
    "MatchError",
    "PhotometricModel",
    "PixelFrame",
    "band_label",
    "calibrate_photometry",
    "catalog_positions",
    "crowded_catalog_stars",
    "describe_calibration",
    "diagnose_color_terms",
    "fit_zero_point",
    "magnitude_correlation_test",
    "match_catalog",
    "polynomial_terms",
    "project_catalog",
    "supported_bands",
]
