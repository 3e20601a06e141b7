"""Which template band and survey to use for an image filter.

The order of bands tried per image filter follows STDWeb's ``filter_mappings``
(reference notes §3.1): the first band the template source offers is used.
"""

from __future__ import annotations

from pipeline.templates.errors import TemplateError

# Image filter → template bands to try, in order (STDWeb constants.filter_mappings).
TEMPLATE_BANDS: dict[str, tuple[str, ...]] = {
    "U": ("u", "g"),
    "B": ("u", "g"),
    "V": ("g",),
    "R": ("r", "i"),
    "I": ("i", "z"),
    "J": ("J", "i", "r"),
    "H": ("H", "i", "r"),
    "Ks": ("K", "i", "r"),
    "u": ("u", "g"),
    "g": ("g",),
    "r": ("r", "i"),
    "i": ("i", "r"),
    "z": ("z", "i", "r"),
    "y": ("y", "z", "i", "r"),
    "G": ("r", "g"),
    "BP": ("g",),
    "RP": ("i", "r"),
    "clear": ("r",),  # unfiltered CCDs peak near r
}

# Template source → bands it offers (HiPS: band → HiPS identifier).
PS1_BANDS = ("g", "r", "i", "z", "y")
LEGACY_BANDS = ("g", "r", "i", "z")
HIPS_SURVEYS: dict[str, dict[str, str]] = {
    "skymapper": {
        "u": "CDS/P/skymapper-U",
        "g": "CDS/P/Skymapper/DR4/g",
        "r": "CDS/P/Skymapper/DR4/r",
        "i": "CDS/P/Skymapper/DR4/i",
        "z": "CDS/P/skymapper-Z",
    },
    "des": {b: f"CDS/P/DES-DR2/{b}" for b in "griz"},
    "decaps": {b: f"CDS/P/DECaPS/DR2/{b}" for b in "griz"},
    "ztf": {b: f"CDS/P/ZTF/DR7/{b}" for b in "gri"},
    "2mass": {b: f"CDS/P/2MASS/{b}" for b in ("J", "H", "K")},
}


def offered_bands(source: str) -> tuple[str, ...]:
    """Bands a template source can deliver."""
    if source == "ps1":
        return PS1_BANDS
    if source == "ls":
        return LEGACY_BANDS
    if source in HIPS_SURVEYS:
        return tuple(HIPS_SURVEYS[source])
    raise TemplateError(f"unknown template source {source!r}")


def choose_band(image_filter: str | None, source: str, requested: str | None = None) -> str:
    """The template band for ``image_filter`` from ``source`` (``requested`` overrides)."""
    bands = offered_bands(source)
    if requested:
        if requested not in bands:
            raise TemplateError(
                f"the {source} template has no {requested!r} band; it offers {', '.join(bands)}"
            )
        return requested
    for band in TEMPLATE_BANDS.get(image_filter or "clear", TEMPLATE_BANDS["clear"]):
        if band in bands:
            return band
    raise TemplateError(
        f"the {source} template offers no band close to the image filter {image_filter!r} "
        f"(it has {', '.join(bands)}); choose another template source or set template_band"
    )
