"""Fixture servers for the template surveys, answering from a simulated template image.

* Pan-STARRS: ``/cgi-bin/ps1filenames.py`` (text table) and ``/cgi-bin/fitscut.cgi``
  (asinh-scaled FITS with BOFFSET/BSOFTEN, like the real PS1 stacks; masks as int images);
* Legacy Survey: ``/fits-cutout`` (``layer``, ``bands``, ``pixscale``, ``size``; the
  ``<layer>-maskbits`` layer gives MASKBITS);
* hips2fits: ``/hips2fits`` (``hips``, ``width``, ``height``, ``ra``, ``dec``, ``fov``).

Every cutout is the simulated template reprojected onto the requested TAN grid.
"""

from __future__ import annotations

import io
import math

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from reproject import reproject_interp

from pipeline.simulate.template import SimulatedImage
from tests.fixture_servers.base import Reply, Request

PS1_BOFFSET, PS1_BSOFTEN = -50.0, 30.0
ASINH_A = 2.5 / math.log(10)
SATURATED_BLOCK = (slice(10, 14), slice(10, 14))  # flagged in every mask answer


def _grid(ra: float, dec: float, size: int, scale_arcsec: float) -> WCS:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [(size + 1) / 2, (size + 1) / 2]
    w.wcs.cdelt = [-scale_arcsec / 3600, scale_arcsec / 3600]
    return w


def _cutout(template: SimulatedImage, ra, dec, size, scale) -> tuple[np.ndarray, fits.Header]:
    w = _grid(ra, dec, size, scale)
    data, _ = reproject_interp((template.image, template.wcs), w, shape_out=(size, size))
    # fluxes per pixel scale with the pixel area
    native = abs(template.wcs.proj_plane_pixel_scales()[0].to_value("arcsec"))
    return data * (scale / native) ** 2, w.to_header()


def _fits(data, header) -> Reply:
    buffer = io.BytesIO()
    fits.PrimaryHDU(
        data.astype(np.float32 if data.dtype.kind == "f" else np.int32), header
    ).writeto(buffer)
    return Reply(200, buffer.getvalue(), "application/fits")


def _one(request: Request, key: str, default=None):
    values = request.query.get(key)
    return values[0] if values else default


def template_answer(template: SimulatedImage):
    """The request → reply function serving all three surveys from ``template``."""

    def answer(request: Request) -> Reply:
        ra, dec = float(_one(request, "ra", 0)), float(_one(request, "dec", 0))
        if request.path.endswith("ps1filenames.py"):
            band = _one(request, "filters")
            rows = ["projcell subcell ra dec filter mjd type filename shortname badflag"]
            for kind in ("stack", "stack.mask"):
                name = f"/rings.v3.skycell/1000/050/rings.v3.skycell.1000.050.{band}.{kind}.fits"
                rows.append(f"1000 50 {ra} {dec} {band} 0 {kind} {name} x 0")
            return Reply(200, "\n".join(rows).encode(), "text/plain")
        if request.path.endswith("fitscut.cgi"):
            size = int(_one(request, "size"))
            data, header = _cutout(template, ra, dec, size, 0.25)
            if _one(request, "red").endswith("mask.fits"):
                mask = np.zeros(data.shape, np.int32)
                mask[SATURATED_BLOCK] = 0x20
                return _fits(mask, header)
            header["BOFFSET"], header["BSOFTEN"] = PS1_BOFFSET, PS1_BSOFTEN
            scaled = ASINH_A * np.arcsinh((data - PS1_BOFFSET) / (2 * PS1_BSOFTEN))
            return _fits(scaled, header)
        if request.path.endswith("fits-cutout"):
            size = int(_one(request, "size"))
            scale = float(_one(request, "pixscale"))
            data, header = _cutout(template, ra, dec, size, scale)
            if _one(request, "layer").endswith("-maskbits"):
                bits = np.zeros(data.shape, np.int32)
                bits[SATURATED_BLOCK] = 1 << 3  # SATUR_R
                bits[0:3, :] = 1 << 11  # MEDIUM: not a bad bit
                return _fits(bits, header)
            return _fits(data, header)
        if request.path.endswith("hips2fits"):
            width = int(_one(request, "width"))
            fov = float(_one(request, "fov")) * 3600
            data, header = _cutout(template, ra, dec, width, fov / width)
            data[SATURATED_BLOCK] = np.nan
            return _fits(data, header)
        return Reply(404, b"not found")

    return answer


def template_empty(request: Request) -> Reply:
    """What the services answer outside their footprint (mode ``"empty"``).

    Pan-STARRS lists no file (the header line only); the Legacy Survey and hips2fits send
    a blank image (zeros, NaN) of the size asked for.
    """
    if request.path.endswith("ps1filenames.py"):
        return Reply(200, b"projcell subcell ra dec filter mjd type filename shortname badflag\n")
    ra, dec = float(_one(request, "ra", 0)), float(_one(request, "dec", 0))
    if request.path.endswith("fits-cutout"):
        size = int(_one(request, "size"))
        scale = float(_one(request, "pixscale"))
        return _fits(np.zeros((size, size)), _grid(ra, dec, size, scale).to_header())
    if request.path.endswith("hips2fits"):
        width = int(_one(request, "width"))
        fov = float(_one(request, "fov")) * 3600
        blank = np.full((width, width), np.nan)
        return _fits(blank, _grid(ra, dec, width, fov / width).to_header())
    return Reply(404, b"not found")
