"""A local CDS hips2fits: ``GET /hips-image-services/hips2fits`` answering FITS images.

Parameters as the real service takes them: ``hips`` (survey id), ``format`` (``fits``
only here), and either ``wcs`` (a FITS header as JSON, with ``NAXIS1``/``NAXIS2``, as
astroquery sends it) or ``width``, ``height``, ``ra``, ``dec``, ``fov`` (degrees, along
the larger side), ``projection`` (``TAN`` ...), optional ``rotation_angle``. The image
is made by reprojecting the survey image given to the server (an image and its WCS, e.g.
a simulated template) onto the requested grid; pixels the survey does not cover are
NaN. Errors come back as hips2fits sends them: a JSON ``{"title", "description"}`` with
an HTTP 4xx status (unknown survey, missing parameter, unsupported format).
"""

from __future__ import annotations

import json
import warnings
from io import BytesIO

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning
from reproject import reproject_interp

from tests.fixture_servers.base import FixtureServer, Reply, Request

HIPS2FITS_PATH = "/hips-image-services/hips2fits"
FITS_TYPE = "application/fits"


class Hips2fitsError(Exception):
    def __init__(self, status: int, title: str, description: str):
        super().__init__(title)
        self.status, self.title, self.description = status, title, description


def _error(status: int, title: str, description: str) -> Reply:
    body = json.dumps({"title": title, "description": description}).encode()
    return Reply(status, body, "application/json")


def requested_wcs(params: dict[str, str]) -> tuple[WCS, tuple[int, int]]:
    """The output grid of a request: its WCS and (ny, nx)."""
    if "wcs" in params:
        try:
            header = fits.Header(json.loads(params["wcs"]))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FITSFixedWarning)
                wcs = WCS(header)
            return wcs, (int(header["NAXIS2"]), int(header["NAXIS1"]))
        except (ValueError, KeyError) as exc:
            raise Hips2fitsError(
                400, "Invalid WCS", f"cannot read the wcs parameter: {exc}"
            ) from None
    missing = [k for k in ("width", "height", "ra", "dec", "fov") if k not in params]
    if missing:
        raise Hips2fitsError(400, "Missing parameter", f"missing {', '.join(missing)} (or wcs)")
    width, height = int(params["width"]), int(params["height"])
    scale = float(params["fov"]) / max(width, height)
    angle = np.radians(float(params.get("rotation_angle", 0.0)))
    wcs = WCS(naxis=2)
    projection = params.get("projection", "TAN")
    wcs.wcs.ctype = [f"RA---{projection}", f"DEC--{projection}"]
    wcs.wcs.crval = [float(params["ra"]), float(params["dec"])]
    wcs.wcs.crpix = [(width + 1) / 2.0, (height + 1) / 2.0]
    wcs.wcs.cd = scale * np.array([[-np.cos(angle), np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return wcs, (height, width)


class Hips2fitsFixture(FixtureServer):
    """A local hips2fits serving ``surveys`` (HiPS id → (image, WCS)).

    Attributes
    ----------
    surveys : dict
        The surveys served; tests may add entries while it runs.
    """

    def __init__(self, surveys: dict[str, tuple[np.ndarray, WCS]] | None = None, slow_seconds=5.0):
        super().__init__(self._answer, self._answer_empty, slow_seconds)
        self.surveys = dict(surveys or {})

    def params(self, index: int = -1) -> dict[str, str]:
        return {k: v[-1] for k, v in self.requests[index].query.items()}

    def _answer(self, request: Request, empty: bool = False) -> Reply:
        if request.path.rstrip("/") != HIPS2FITS_PATH:
            return Reply(404, b"not found: this fixture answers " + HIPS2FITS_PATH.encode())
        params = {k: v[-1] for k, v in request.query.items()}
        hips = params.get("hips", "")
        if hips not in self.surveys:
            return _error(404, "HiPS not found", f"no HiPS with the id {hips!r}")
        if params.get("format", "fits") != "fits":
            return _error(400, "Unsupported format", "this fixture answers format=fits only")
        try:
            wcs, shape = requested_wcs(params)
        except Hips2fitsError as exc:
            return _error(exc.status, exc.title, exc.description)
        if empty:  # a field the survey does not cover
            data = np.full(shape, np.nan, np.float32)
        else:
            data, _ = reproject_interp(self.surveys[hips], wcs, shape_out=shape)
            data = data.astype(np.float32)
        hdu = fits.PrimaryHDU(data=data, header=wcs.to_header())
        buffer = BytesIO()
        hdu.writeto(buffer)
        return Reply(200, buffer.getvalue(), FITS_TYPE)

    def _answer_empty(self, request: Request) -> Reply:
        return self._answer(request, empty=True)


@pytest.fixture
def hips2fits_server():
    """A running :class:`Hips2fitsFixture` with no surveys; the test adds them."""
    with Hips2fitsFixture(slow_seconds=3.0) as server:
        yield server
