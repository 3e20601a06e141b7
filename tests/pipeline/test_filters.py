"""Filter names: the normaliser must map real FILTER header values to our bands."""

from __future__ import annotations

import logging

import pytest

from pipeline.filters import (
    FILTER_NAMES,
    FILTERS,
    GAIA,
    JOHNSON_COUSINS,
    SLOAN,
    SYSTEMS,
    TWOMASS,
    UNFILTERED,
    filter_system,
    filters_in_system,
    normalize_filter,
)

# Values seen in real headers (instrument manuals, archive files) and what they mean.
MESSY = [
    ("R", "R"),
    ("Rc", "R"),
    ("R_C", "R"),
    ("Bessell R", "R"),
    ("Cousins I", "I"),
    ("Ic", "I"),
    ("Johnson V", "V"),
    ("V-Bessell", "V"),
    ("V (Johnson)", "V"),
    ("JC_R", "R"),
    ("B", "B"),
    ("U", "U"),
    ("sdss_r", "r"),
    ("r'", "r"),
    ("rp", "r"),
    ("rprime", "r"),
    ("SDSS-R", "r"),
    ("Sloan r'", "r"),
    ("SDSS u'", "u"),
    ("i'", "i"),
    ("gp", "g"),
    ("ZTF_g", "g"),
    ("PS1-z", "z"),
    ("zs", "z"),
    ("Y", "y"),
    ("i DECam SDSS c0003 7835.0 1470.0", "i"),  # DECam FILTER card (real data)
    ("g", "g"),
    ("G", "G"),
    ("Gaia RP", "RP"),
    ("BP", "BP"),
    ("Gbp", "BP"),
    ("J", "J"),
    ("H", "H"),
    ("Ks", "Ks"),
    ("K_s", "Ks"),
    ("K", "Ks"),
    ("2MASS Ks", "Ks"),
    ("Clear", "clear"),
    ("C", "clear"),
    ("L", "clear"),
    ("Lum", "clear"),
    ("Luminance", "clear"),
    ("None", "clear"),
    ("open", "clear"),
    ("CV", "clear"),
]


@pytest.mark.parametrize(("raw", "expected"), MESSY)
def test_messy_header_values_are_normalised(raw, expected):
    assert normalize_filter(raw) == expected


@pytest.mark.parametrize("raw", ["H-alpha", "Ha", "OIII", "48", "Red", "Filter 3", "W", "xyz"])
def test_unknown_and_narrow_band_filters_give_none_with_a_warning(raw, caplog):
    with caplog.at_level(logging.WARNING, logger="skysift.filters"):
        assert normalize_filter(raw) is None
    assert raw in caplog.text


@pytest.mark.parametrize("raw", [None, "", "   "])
def test_missing_values_give_none(raw):
    assert normalize_filter(raw) is None


def test_numbers_are_accepted_as_values():
    # SAAO writes FILTERS = 48 (a wheel code): a number, not a band
    assert normalize_filter(48) is None


def test_case_distinguishes_cousins_from_sloan():
    assert normalize_filter("R") == "R" and normalize_filter("r") == "r"
    assert normalize_filter("I") == "I" and normalize_filter("i") == "i"
    assert normalize_filter("U") == "U" and normalize_filter("u") == "u"


def test_every_canonical_name_maps_to_itself():
    for name in FILTER_NAMES:
        assert normalize_filter(name) == name


def test_system_table():
    assert set(FILTER_NAMES) == {
        "U", "B", "V", "R", "I", "u", "g", "r", "i", "z", "y",
        "G", "BP", "RP", "J", "H", "Ks", "clear",
    }  # fmt: skip
    assert filter_system("R") == JOHNSON_COUSINS
    assert filter_system("r") == SLOAN
    assert filter_system("BP") == GAIA
    assert filter_system("Ks") == TWOMASS
    assert filter_system("clear") == UNFILTERED
    assert {info.system for info in FILTERS.values()} == set(SYSTEMS)
    with pytest.raises(KeyError):
        filter_system("Halpha")


def test_filters_in_system_are_ordered_blue_to_red():
    for system in SYSTEMS[:-1]:
        bands = filters_in_system(system)
        waves = [FILTERS[b].wavelength_nm for b in bands]
        assert waves == sorted(waves), system
    assert filters_in_system(JOHNSON_COUSINS) == ["U", "B", "V", "R", "I"]


def test_magnitude_systems():
    assert FILTERS["g"].magnitude_system == "AB"
    assert FILTERS["V"].magnitude_system == "Vega"
