"""Local catalogue files: the simulator's catalog.fits (PS1 layout), real VizieR extracts."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table

from pipeline.catalogs import (
    CatalogError,
    detect_catalog,
    get_catalog,
    get_definition,
    read_catalog_file,
)
from tests.conftest import REAL_DATA
from tests.pipeline.catalogs.conftest import SKY_DEC, SKY_RA

REFCAT2 = REAL_DATA / "catalogs" / "all_refcat2_ey_uma.ecsv"


@pytest.fixture
def catalog_fits(tmp_path, ps1_table):
    path = tmp_path / "catalog.fits"
    ps1_table.write(path, format="fits")
    return path


def test_simulator_catalogue_file_equals_the_vizier_answer(catalog_fits, ps1_table, vizier_server):
    vizier_server.catalogs["II/349/ps1"] = ps1_table
    from_file = get_catalog("ps1", SKY_RA, SKY_DEC, 0.1, 19.5, local_file=catalog_fits)
    from_vizier = get_catalog("ps1", SKY_RA, SKY_DEC, 0.1, 19.5, server_url=vizier_server.url)
    assert from_file.meta["source"] == f"file:{catalog_fits}"
    assert len(from_file) == len(from_vizier) > 50
    a = from_file[np.argsort(from_file["ra"])]
    b = from_vizier[np.argsort(from_vizier["ra"])]
    for name in ("ra", "dec", "rmag", "e_rmag", "gmag", "Bmag", "Vmag"):
        assert np.allclose(a[name], b[name], atol=1e-6, equal_nan=True), name
    assert np.all(np.asarray(from_file["rmag"]) < 19.5)


def test_layout_is_detected():
    assert detect_catalog(REFCAT2, "V") == "atlas"  # also carries Gaia G/BP/RP columns
    assert detect_catalog(REFCAT2, "G") == "gaiaedr3"  # only Gaia serves G


def test_detects_simulator_layout(catalog_fits):
    assert detect_catalog(catalog_fits, "r") == "ps1"


def test_real_refcat2_extract_is_read_with_its_icrs_positions():
    table = read_catalog_file(REFCAT2, get_definition("atlas"))
    raw = Table.read(REFCAT2)
    assert len(table) == len(raw) == 187
    assert np.allclose(table["ra"], raw["RA_ICRS"]) and np.allclose(table["dec"], raw["DE_ICRS"])
    assert np.allclose(
        table["Ksmag"], np.ma.filled(raw["Kmag"].astype(float), np.nan), equal_nan=True
    )


def test_missing_or_wrong_files_are_clear_errors(tmp_path):
    with pytest.raises(CatalogError, match="does not exist"):
        get_catalog("ps1", 0.0, 0.0, 0.1, local_file=tmp_path / "nope.fits")
    junk = tmp_path / "junk.fits"
    junk.write_bytes(b"this is not a table")
    with pytest.raises(CatalogError, match=r"cannot read catalogue file junk\.fits"):
        get_catalog("ps1", 0.0, 0.0, 0.1, local_file=junk)
    other = tmp_path / "other.ecsv"
    Table({"ra": [1.0], "dec": [2.0], "flux": [3.0]}).write(other)
    with pytest.raises(CatalogError, match="none of the Pan-STARRS DR1 magnitude columns"):
        get_catalog("ps1", 1.0, 2.0, 0.1, local_file=other)
    with pytest.raises(CatalogError, match="follows none of the known layouts"):
        detect_catalog(other)


def test_file_cone_without_stars_is_an_error(catalog_fits):
    with pytest.raises(CatalogError, match="has no stars"):
        get_catalog("ps1", SKY_RA + 5.0, SKY_DEC, 0.1, local_file=catalog_fits)
