"""Object flag bits shared by every table SkySift writes (see DESIGN.md).

This module is the one definition of the bitmask; every other module imports
the names from here.
"""

from enum import IntFlag


class ObjectFlag(IntFlag):
    """Bitmask describing problems with a measured object."""

    NEIGHBOURS = 0x001  # aperture flux affected by neighbours or bad pixels
    DEBLENDED = 0x002
    SATURATED = 0x004
    EDGE_TRUNCATED = 0x008  # footprint truncated by the image edge
    APERTURE_INCOMPLETE = 0x010
    ISOPHOTAL_INCOMPLETE = 0x020
    FOOTPRINT_MASKED = 0x100  # footprint contains masked pixels
    APERTURE_MASKED = 0x200  # photometric aperture contains masked pixels
    ANNULUS_BAD = 0x400  # local background annulus lacks good pixels
    SHAPE_OUTLIER = 0x800  # outlier by the shape prefilter


FLAG_DESCRIPTIONS: dict[int, str] = {
    ObjectFlag.NEIGHBOURS: "aperture flux affected by neighbours or bad pixels",
    ObjectFlag.DEBLENDED: "deblended",
    ObjectFlag.SATURATED: "saturated",
    ObjectFlag.EDGE_TRUNCATED: "footprint truncated by the image edge",
    ObjectFlag.APERTURE_INCOMPLETE: "aperture data incomplete",
    ObjectFlag.ISOPHOTAL_INCOMPLETE: "isophotal data incomplete",
    ObjectFlag.FOOTPRINT_MASKED: "footprint contains masked pixels",
    ObjectFlag.APERTURE_MASKED: "photometric aperture contains masked pixels",
    ObjectFlag.ANNULUS_BAD: "local background annulus lacks good pixels",
    ObjectFlag.SHAPE_OUTLIER: "outlier by the shape prefilter",
}


def describe_flags(value: int) -> list[str]:
    """Return the descriptions of the bits set in ``value``."""
    return [text for bit, text in FLAG_DESCRIPTIONS.items() if value & bit]
