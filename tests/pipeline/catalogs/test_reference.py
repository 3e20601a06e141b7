"""The one-call helper the photometry step uses, and its config model."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from pipeline.catalogs import (
    BLEND_COLUMN,
    CatalogConfig,
    CatalogError,
    get_definition,
    reference_catalog,
)
from tests.conftest import REAL_DATA
from tests.pipeline.catalogs.conftest import SKY_DEC, SKY_RA
from tests.pipeline.catalogs.helpers import layout_table


def test_config_defaults_and_validation():
    config = CatalogConfig()
    assert config.catalog == "auto"
    assert config.catalog_limit == 20.0
    assert config.catalog_blend_mode == "merge"
    assert CatalogConfig(catalog="gaiadr3syn").catalog == "gaiadr3syn"
    with pytest.raises(ValidationError):
        CatalogConfig(catalog="usno")
    with pytest.raises(ValidationError):
        CatalogConfig(catalog_blend_mode="keep")
    schema = CatalogConfig.model_json_schema()
    assert all(field.get("description") for field in schema["properties"].values())


def test_r_band_image_gets_ps1_with_blends_merged(vizier_server, ps1_table, tmp_path):
    vizier_server.catalogs["II/349/ps1"] = ps1_table
    config = CatalogConfig(catalog_server=vizier_server.url, catalog_timeout=10)
    ref = reference_catalog(
        config, SKY_RA, SKY_DEC, 0.1, "sdss_r", fwhm_arcsec=3.0, cache_dir=tmp_path
    )
    assert (ref.catalog, ref.band, ref.colour) == ("ps1", "r", ("g", "r"))
    assert ref.mag_column == "rmag" and ref.err_column == "e_rmag"
    assert ref.colour_columns == ("gmag", "rmag")
    assert BLEND_COLUMN in ref.table.colnames
    assert ref.table.meta["blends"]["separation_arcsec"] == pytest.approx(6.0)
    assert ref.warnings == []


def test_v_band_with_ps1_override_uses_transformed_magnitudes(vizier_server, ps1_table):
    vizier_server.catalogs["II/349/ps1"] = ps1_table
    config = CatalogConfig(catalog="ps1", catalog_server=vizier_server.url)
    ref = reference_catalog(config, SKY_RA, SKY_DEC, 0.1, "V")
    assert ref.band == "V" and ref.colour_columns == ("Bmag", "Vmag")
    assert np.isfinite(ref.table["Vmag"]).mean() > 0.9
    assert ref.table.meta["derived"]["V"] == "tonry2012:V"
    assert any("FWHM is unknown" in w for w in ref.warnings)


def test_unfiltered_image_is_calibrated_in_gaia_g(vizier_server, ps1_table):
    gaia = get_definition("gaiaedr3")
    vizier_server.catalogs[gaia.vizier_id] = layout_table(gaia, ps1_table)
    config = CatalogConfig(catalog_server=vizier_server.url)
    ref = reference_catalog(config, SKY_RA, SKY_DEC, 0.1, "Clear", fwhm_arcsec=2.0)
    assert (ref.catalog, ref.band, ref.colour) == ("gaiaedr3", "G", ("BP", "RP"))
    assert vizier_server.params()["Gmag"] == "<20"


def test_local_file_layout_is_detected_for_auto():
    config = CatalogConfig(catalog_file=str(REAL_DATA / "catalogs" / "all_refcat2_ey_uma.ecsv"))
    ref = reference_catalog(config, 135.5509, 49.8429, 0.166, "B", fwhm_arcsec=2.5)
    assert ref.catalog == "atlas"
    assert np.isfinite(ref.table["Bmag"]).sum() > 100


def test_band_the_catalogue_cannot_serve_is_refused(vizier_server):
    config = CatalogConfig(catalog="ps1", catalog_server=vizier_server.url)
    with pytest.raises(CatalogError, match="cannot give u magnitudes"):
        reference_catalog(config, SKY_RA, SKY_DEC, 0.1, "u")
    assert vizier_server.request_count == 0
