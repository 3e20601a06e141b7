"""Simulated skies with known truth, for science tests and demos.

``simulate_sky`` makes a science image (PSF varying over the field, noise
consistent with GAIN/RDNOISE, saturation, cosmic rays, bad columns, galaxies,
a TAN-SIP WCS, a zero point varying over the field and a colour term,
injected transients), its reference catalogue in the VizieR Pan-STARRS1 DR1
layout, a template of the same sky and the full truth. ``write_simulation``
puts it on disk.

Example::

    sky = simulate_sky(size=512, seed=1, psf="gaussian")
    sky.image, sky.header, sky.catalog       # what a user would upload / query
    sky.truth.stars                          # row-aligned with sky.catalog
    sky.truth.zero_point_map(x, y)           # true ZP; sky.truth.color_term on g-r
    sky.variant("perturbed_wcs", shift_arcsec=20, rot_deg=0.3)   # a damaged header
    write_simulation(sky, "out/")            # image.fits, catalog.fits, truth.json, ...

Pixel coordinates in the truth are 0-based (numpy); magnitudes are AB (PS1).
"""

from .config import SkyConfig
from .core import SimulatedSky, SimulationTruth, limiting_magnitude, simulate_sky
from .io import simulate_command, write_simulation
from .template import SimulatedImage

__all__ = [
    "SimulatedImage",
    "SimulatedSky",
    "SimulationTruth",
    "SkyConfig",
    "limiting_magnitude",
    "simulate_command",
    "simulate_sky",
    "write_simulation",
]
