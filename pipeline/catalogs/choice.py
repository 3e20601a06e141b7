"""Which reference catalogue (and which of its bands and colours) calibrates an image.

The automatic choice follows the reference system (STDWeb, inspection step: "Suggested
catalogue"): Gaia DR3 synthetic photometry for UBVRI, Gaia eDR3 for G/BP/RP, 2MASS for
JHKs, otherwise Pan-STARRS, or SkyMapper south of Dec −30°. Where STDWeb's rule picks a
catalogue that cannot serve the band we differ, and say so in :data:`CHOICE_RULES`:

* ``u``: STDWeb falls through to PS1, which has no u; we use Gaia DR3 synthetic
  photometry (SDSS u over the whole sky, G < 17.65).
* unfiltered (``clear``): calibrated in Gaia G with a BP−RP colour term (Gaia eDR3).
* JHKs: STDWeb uses VHS south of the equator; VHS is not offered here, so 2MASS always.

The choice is overridable: :func:`choose_catalog` with ``override`` validates a user's
pick against the band (the catalogue must be able to serve it) and the footprint.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.catalogs.definitions import get_definition
from pipeline.catalogs.errors import CatalogError
from pipeline.catalogs.transform import derivable_bands
from pipeline.filters import FILTER_NAMES, normalize_filter

PS1_SOUTH_LIMIT_DEG = -30.0  # south of this PS1 has no data; SkyMapper takes over


@dataclass(frozen=True)
class ChoiceRule:
    """Catalogue for a set of bands; ``south`` replaces it below ``south_of`` Dec."""

    bands: tuple[str, ...]
    catalog: str
    south: str | None = None
    south_of: float | None = None
    why: str = ""


CHOICE_RULES: tuple[ChoiceRule, ...] = (
    ChoiceRule(("U", "B", "V", "R", "I"), "gaiadr3syn", why="STDWeb: gaiadr3syn for UBVRI"),
    ChoiceRule(("G", "BP", "RP"), "gaiaedr3", why="STDWeb: gaiaedr3 for Gaia bands"),
    ChoiceRule(("J", "H", "Ks"), "2mass", why="STDWeb: 2mass (VHS south is not offered)"),
    ChoiceRule(("u",), "gaiadr3syn", why="ours: the only all-sky SDSS u; PS1 has no u"),
    ChoiceRule(("clear",), "gaiaedr3", why="ours: unfiltered images calibrate in Gaia G"),
    ChoiceRule(
        ("g", "r", "i", "z", "y"),
        "ps1",
        south="skymapper",
        south_of=PS1_SOUTH_LIMIT_DEG,
        why="STDWeb: ps1, or skymapper if Dec < -30",
    ),
)

# Colour used for the colour term, by calibration band (STDWeb's table).
CALIBRATION_COLOURS: dict[str, tuple[str, str]] = {
    **dict.fromkeys(("U", "B", "V", "R", "I"), ("B", "V")),
    **dict.fromkeys(("u", "g", "r", "i"), ("g", "r")),
    **dict.fromkeys(("z", "y"), ("r", "i")),
    **dict.fromkeys(("G", "BP", "RP"), ("BP", "RP")),
    **dict.fromkeys(("J", "H", "Ks"), ("J", "Ks")),
}


def canonical_filter(filter_name: str) -> str:
    """The canonical filter name of :mod:`pipeline.filters` for a raw or canonical name.

    Raises
    ------
    CatalogError
        If the name is not recognised.
    """
    name = filter_name if filter_name in FILTER_NAMES else normalize_filter(filter_name)
    if name is None:
        raise CatalogError(
            f"unknown filter {filter_name!r}: choose one of {', '.join(FILTER_NAMES)}"
        )
    return name


def calibration_band(filter_name: str) -> str:
    """The catalogue band an image in this filter is calibrated in (``clear`` → ``G``)."""
    name = canonical_filter(filter_name)
    return "G" if name == "clear" else name


def calibration_colour(filter_name: str) -> tuple[str, str]:
    """(blue, red) bands of the colour used for the colour term of this filter."""
    return CALIBRATION_COLOURS[calibration_band(filter_name)]


def suggest_catalog(filter_name: str, dec: float) -> str:
    """The catalogue the automatic rule picks for a filter at a declination."""
    name = canonical_filter(filter_name)
    for rule in CHOICE_RULES:
        if name in rule.bands:
            if rule.south is not None and dec < rule.south_of:
                return rule.south
            return rule.catalog
    raise CatalogError(f"no reference catalogue rule for filter {name!r}")  # pragma: no cover


def choose_catalog(filter_name: str, dec: float, override: str | None = None) -> str:
    """The catalogue to use: ``override`` if given (and usable), else :func:`suggest_catalog`.

    Raises
    ------
    CatalogError
        If the override is unknown, cannot serve the filter's calibration band, or does
        not cover the declination.
    """
    if override is None or str(override).strip().lower() in ("", "auto"):
        return suggest_catalog(filter_name, dec)
    definition = get_definition(override)
    band = calibration_band(filter_name)
    served = derivable_bands(definition.key)
    if band not in served:
        raise CatalogError(
            f"{definition.title} cannot give {band} magnitudes (it serves "
            f"{', '.join(served)}): choose {suggest_catalog(filter_name, dec)} or 'auto'"
        )
    if not definition.covers(dec):
        raise CatalogError(
            f"the field (Dec {dec:+.2f}°) is outside {definition.title}: "
            f"{definition.footprint_message()}"
        )
    return definition.key
