"""The reference catalogue of one image, as the photometry step needs it.

:class:`CatalogConfig` holds the settings (a mixin for the step's config model, like
``DetectionConfig``); :func:`reference_catalog` chooses the catalogue for the image's
filter and declination, fetches it (VizieR or a local file), adds the transformed
bands and merges blended stars, and says which columns to calibrate with.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from astropy.table import Table
from pydantic import Field

from pipeline.catalogs.blends import BLEND_MODES, remove_blends
from pipeline.catalogs.choice import calibration_band, calibration_colour, choose_catalog
from pipeline.catalogs.definitions import CATALOG_NAMES, err_column, mag_column
from pipeline.catalogs.errors import CatalogError
from pipeline.catalogs.local import detect_catalog
from pipeline.catalogs.query import get_catalog
from pipeline.catalogs.vizier import DEFAULT_TIMEOUT_S, DEFAULT_VIZIER_URL
from pipeline.steps.base import StepConfig

CatalogChoice = Literal[("auto", *CATALOG_NAMES)]  # type: ignore[valid-type]
BlendMode = Literal[BLEND_MODES]  # type: ignore[valid-type]


class CatalogConfig(StepConfig):
    """Reference-catalogue settings (part of the photometry step config)."""

    catalog: CatalogChoice = Field(
        "auto",
        description="Reference catalogue; 'auto' picks by filter and declination "
        "(Gaia DR3 synthetic for UBVRI, Gaia eDR3 for G/BP/RP and unfiltered, 2MASS for "
        "JHKs, Pan-STARRS for grizy, SkyMapper south of Dec -30).",
    )
    catalog_file: str | None = Field(
        None,
        description="Path of a local catalogue file (FITS, ECSV, VOTable, CSV) in the layout "
        "of the chosen catalogue, used instead of VizieR.",
    )
    catalog_limit: float | None = Field(
        20.0,
        description="Faint magnitude limit applied on the server to the catalogue's limit "
        "column (r for PS1, G for Gaia ...); empty for none.",
    )
    catalog_server: str = Field(
        DEFAULT_VIZIER_URL, description="Base URL of the VizieR server (or a mirror)."
    )
    catalog_timeout: float = Field(
        DEFAULT_TIMEOUT_S, gt=0, le=600, description="Seconds to wait for VizieR to answer."
    )
    catalog_filter_blends: bool = Field(
        True,
        description="Treat catalogue stars closer than catalog_blend_factor × FWHM as blends.",
    )
    catalog_blend_mode: BlendMode = Field(
        "merge",
        description="merge: replace a blend by one flux-weighted entry; drop: remove its stars.",
    )
    catalog_blend_factor: float = Field(
        2.0, gt=0, le=10, description="Blend separation in units of the image FWHM."
    )


@dataclass
class ReferenceCatalog:
    """A reference catalogue ready for calibration.

    Attributes
    ----------
    table : astropy.table.Table
        Normalised catalogue (``ra``, ``dec``, ``<band>mag``, ``e_<band>mag`` ...).
    catalog : str
        Catalogue key used.
    band : str
        Calibration band (``"G"`` for unfiltered images).
    colour : (str, str)
        Bands of the colour for the colour term.
    warnings : list of str
        Things the user should know (truncated answer, partial footprint, no blend check).
    """

    table: Table
    catalog: str
    band: str
    colour: tuple[str, str]
    warnings: list[str] = field(default_factory=list)

    @property
    def mag_column(self) -> str:
        return mag_column(self.band)

    @property
    def err_column(self) -> str:
        return err_column(self.band)

    @property
    def colour_columns(self) -> tuple[str, str]:
        return (mag_column(self.colour[0]), mag_column(self.colour[1]))


def reference_catalog(
    config: CatalogConfig,
    ra: float,
    dec: float,
    radius_deg: float,
    filter_name: str,
    *,
    fwhm_arcsec: float | None = None,
    cache_dir: str | Path | None = None,
    logger: logging.Logger | None = None,
) -> ReferenceCatalog:
    """Choose, fetch, transform and de-blend the reference catalogue of an image.

    Parameters
    ----------
    config : CatalogConfig
        The settings.
    ra, dec, radius_deg : float
        Field centre and radius covering the image, degrees.
    filter_name : str
        Image filter (canonical or raw header value).
    fwhm_arcsec : float, optional
        Image FWHM; needed for the blend check (skipped with a warning without it).
    cache_dir : path, optional
        Shared folder for the VizieR answer cache.
    logger : logging.Logger, optional
        The step's logger.

    Raises
    ------
    CatalogError
        Unusable choice or input, or no star with a magnitude in the calibration band.
    ServiceUnavailable
        VizieR did not answer; the step may be retried later.
    """
    band = calibration_band(filter_name)
    choice = config.catalog
    if config.catalog_file and choice == "auto":
        choice = detect_catalog(config.catalog_file, band)
    catalog = choose_catalog(filter_name, dec, choice)
    table = get_catalog(
        catalog,
        ra,
        dec,
        radius_deg,
        mag_limit=config.catalog_limit,
        timeout=config.catalog_timeout,
        cache_dir=cache_dir,
        server_url=config.catalog_server,
        local_file=config.catalog_file,
        logger=logger,
    )
    warnings = list(table.meta.get("warnings", []))
    name = mag_column(band)
    if name not in table.colnames or not np.isfinite(np.asarray(table[name], float)).any():
        raise CatalogError(
            f"no {table.meta.get('title', catalog)} star in the field has a {band} magnitude "
            "(colours outside the transformations' range?): choose another catalogue"
        )
    if config.catalog_filter_blends:
        if fwhm_arcsec is not None and np.isfinite(fwhm_arcsec) and fwhm_arcsec > 0:
            table = remove_blends(
                table,
                fwhm_arcsec,
                factor=config.catalog_blend_factor,
                mode=config.catalog_blend_mode,
            )
        else:
            warnings.append("the image FWHM is unknown: blended catalogue stars were kept")
    return ReferenceCatalog(table, catalog, band, calibration_colour(filter_name), warnings)
