"""Automatic choice of the reference catalogue, and the user's override."""

from __future__ import annotations

import pytest

from pipeline.catalogs import (
    CatalogError,
    calibration_band,
    calibration_colour,
    choose_catalog,
    suggest_catalog,
)

# (filter, Dec, expected) — STDWeb's rule (§1.6.1 "Suggested catalogue") and our
# documented differences for u, unfiltered and JHKs.
AUTO_CHOICE = [
    ("U", 40.0, "gaiadr3syn"),
    ("B", -60.0, "gaiadr3syn"),
    ("V", 10.0, "gaiadr3syn"),
    ("R", 0.0, "gaiadr3syn"),
    ("I", 85.0, "gaiadr3syn"),
    ("G", 20.0, "gaiaedr3"),
    ("BP", -20.0, "gaiaedr3"),
    ("RP", 60.0, "gaiaedr3"),
    ("J", 20.0, "2mass"),
    ("H", -50.0, "2mass"),
    ("Ks", 5.0, "2mass"),
    ("g", 20.0, "ps1"),
    ("r", -29.9, "ps1"),
    ("r", -30.0, "ps1"),
    ("r", -30.1, "skymapper"),
    ("i", -75.0, "skymapper"),
    ("z", 45.0, "ps1"),
    ("y", -45.0, "skymapper"),
    ("u", 30.0, "gaiadr3syn"),
    ("clear", 30.0, "gaiaedr3"),
    # raw header values go through pipeline.filters.normalize_filter
    ("Johnson V", 30.0, "gaiadr3syn"),
    ("sdss_r", -50.0, "skymapper"),
    ("Lum", 0.0, "gaiaedr3"),
]


@pytest.mark.parametrize(("filter_name", "dec", "expected"), AUTO_CHOICE)
def test_automatic_choice(filter_name, dec, expected):
    assert suggest_catalog(filter_name, dec) == expected
    assert choose_catalog(filter_name, dec) == expected
    assert choose_catalog(filter_name, dec, "auto") == expected


@pytest.mark.parametrize(
    ("filter_name", "band", "colour"),
    [
        ("V", "V", ("B", "V")),
        ("I", "I", ("B", "V")),
        ("g", "g", ("g", "r")),
        ("u", "u", ("g", "r")),
        ("z", "z", ("r", "i")),
        ("y", "y", ("r", "i")),
        ("clear", "G", ("BP", "RP")),
        ("RP", "RP", ("BP", "RP")),
        ("Ks", "Ks", ("J", "Ks")),
    ],
)
def test_calibration_band_and_colour(filter_name, band, colour):
    assert calibration_band(filter_name) == band
    assert calibration_colour(filter_name) == colour


def test_override_is_used_when_it_can_serve_the_band():
    assert choose_catalog("V", 20.0, "ps1") == "ps1"  # V from PS1 through Tonry 2012
    assert choose_catalog("r", 20.0, "atlas") == "atlas"
    assert choose_catalog("r", -50.0, "SkyMapper") == "skymapper"


def test_override_that_cannot_serve_the_band_is_refused():
    with pytest.raises(CatalogError, match="2MASS PSC cannot give V magnitudes"):
        choose_catalog("V", 20.0, "2mass")
    with pytest.raises(CatalogError, match="cannot give u"):
        choose_catalog("u", 20.0, "ps1")


def test_override_outside_its_footprint_is_refused():
    with pytest.raises(CatalogError, match="covers only Dec > -30°: try skymapper"):
        choose_catalog("r", -60.0, "ps1")


def test_unknown_names_are_clear_errors():
    with pytest.raises(CatalogError, match="unknown reference catalogue 'usno'"):
        choose_catalog("r", 0.0, "usno")
    with pytest.raises(CatalogError, match="unknown filter 'H-alpha'"):
        suggest_catalog("H-alpha", 0.0)
