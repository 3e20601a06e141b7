"""Reference catalogues: query, normalise, transform between systems, de-blend.

Typical use from the photometry step::

    from pipeline.catalogs import CatalogConfig, reference_catalog

    ref = reference_catalog(config, ra, dec, radius_deg, "V", fwhm_arcsec=2.1,
                            cache_dir=cache, logger=ctx.log)
    ref.table[ref.mag_column], ref.table[ref.err_column], ref.colour_columns

or step by step: :func:`choose_catalog` → :func:`get_catalog` → :func:`remove_blends`.

Modules: ``definitions`` (catalogues, column mapping, our column names), ``cone``
(validation, snapping), ``vizier`` (astroquery client), ``local`` (files),
``normalize``, ``cache``, ``query`` (:func:`get_catalog`), ``relations`` (published
coefficients as data), ``transform`` (deriving bands), ``choice`` (automatic choice),
``blends``, ``reference`` (config and one-call helper for the step).
"""

from pipeline.catalogs.blends import BLEND_COLUMN, blend_separation_arcsec, remove_blends
from pipeline.catalogs.choice import (
    CHOICE_RULES,
    calibration_band,
    calibration_colour,
    choose_catalog,
    suggest_catalog,
)
from pipeline.catalogs.definitions import (
    CATALOG_NAMES,
    CATALOGS,
    DEC_COLUMN,
    RA_COLUMN,
    CatalogDefinition,
    err_column,
    get_definition,
    mag_column,
)
from pipeline.catalogs.errors import CatalogError, ServiceUnavailable
from pipeline.catalogs.local import detect_catalog, read_catalog_file
from pipeline.catalogs.query import get_catalog
from pipeline.catalogs.reference import CatalogConfig, ReferenceCatalog, reference_catalog
from pipeline.catalogs.relations import RELATIONS, Relation
from pipeline.catalogs.transform import CALIBRATION_BANDS, derivable_bands, derive_bands
from pipeline.catalogs.vizier import DEFAULT_TIMEOUT_S, DEFAULT_VIZIER_URL

__all__ = [
    "BLEND_COLUMN",
    "CALIBRATION_BANDS",
    "CATALOGS",
    "CATALOG_NAMES",
    "CHOICE_RULES",
    "DEC_COLUMN",
    "DEFAULT_TIMEOUT_S",
    "DEFAULT_VIZIER_URL",
    "RA_COLUMN",
    "RELATIONS",
    "CatalogConfig",
    "CatalogDefinition",
    "CatalogError",
    "ReferenceCatalog",
    "Relation",
    "ServiceUnavailable",
    "blend_separation_arcsec",
    "calibration_band",
    "calibration_colour",
    "choose_catalog",
    "derivable_bands",
    "derive_bands",
    "detect_catalog",
    "err_column",
    "get_catalog",
    "get_definition",
    "mag_column",
    "read_catalog_file",
    "reference_catalog",
    "remove_blends",
    "suggest_catalog",
]
