"""SCAMP adapter: refine an approximate WCS with Emmanuel Bertin's SCAMP.

SCAMP reads FITS-LDAC catalogues: ours is written from the object table
(1-based ``XWIN_IMAGE``/``YWIN_IMAGE``, error ellipses from the S/N, fluxes),
with the image header (approximate WCS) in ``LDAC_IMHEAD``; the reference
catalogue goes into a second LDAC file read with ``ASTREF_CATALOG FILE``.
SCAMP writes its solution as a ``.head`` text header with a TPV distortion,
which astropy reads. It is the same interface as the built-in method and
returns an :class:`~pipeline.astrometry.solution.AstrometrySolution`.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from pipeline.astrometry.errors import (
    NoMatchError,
    SolverFailed,
    SolverTimeout,
    SolverUnavailable,
)
from pipeline.astrometry.refine import (
    REFERENCE_PER_DETECTION,
    matches_for_wcs,
    no_reference_message,
)
from pipeline.astrometry.solution import AstrometrySolution
from pipeline.astrometry.sources import (
    Detections,
    ReferenceStars,
    pixel_scale_deg,
    project_to_pixels,
    reference_stars,
    select_detections,
)
from pipeline.astrometry.wcsfile import wcs_from_header, wcs_header
from pipeline.wcs_header import sanitize_wcs_header

log = logging.getLogger("skysift.astrometry")

SCAMP = "scamp"
SCAMP_TIMEOUT_S = 300
REFERENCE_ERROR_ARCSEC = 0.05  # assumed positional error of catalogue stars without one
DEFAULT_FWHM_PX = 3.0


@dataclass(frozen=True)
class ScampSettings:
    """Knobs of :func:`refine_with_scamp`."""

    distort_degree: int = 3
    max_offset_arcsec: float = 60.0
    max_rotation_deg: float = 1.0
    max_scale_error: float = 0.01
    max_stars: int | None = 5000
    mag_column: str | None = None
    reference_epoch: float = 2000.0


def scamp_available(program: str = SCAMP) -> bool:
    """True when the ``scamp`` program is on the PATH (Debian package ``scamp``)."""
    return shutil.which(program) is not None


def write_ldac(path: Path, header: fits.Header, table: Table) -> None:
    """Write a FITS-LDAC file: the header as 80-character cards in LDAC_IMHEAD, then LDAC_OBJECTS.

    astropy pads strings with NUL bytes, which turns the blanks after the END
    card into NULs; SCAMP crashes on that, so the card block is written back
    byte for byte after astropy has laid out the file.
    """
    text = header.tostring(endcard=True, padding=False).encode("ascii")
    column = fits.Column(
        name="Field Header Card", format=f"{len(text)}A", array=np.array([text], f"S{len(text)}")
    )
    imhead = fits.BinTableHDU.from_columns([column], name="LDAC_IMHEAD")
    imhead.header["TDIM1"] = f"(80, {len(text) // 80})"
    objects = fits.table_to_hdu(table)
    objects.name = "LDAC_OBJECTS"
    buffer = BytesIO()
    fits.HDUList([fits.PrimaryHDU(), imhead, objects]).writeto(buffer)
    with fits.open(BytesIO(buffer.getvalue())) as written:
        start = written[1].fileinfo()["datLoc"]
    raw = bytearray(buffer.getvalue())
    raw[start : start + len(text)] = text
    Path(path).write_bytes(bytes(raw))


def _image_header(wcs: WCS, shape: tuple[int, int]) -> fits.Header:
    header = fits.Header()
    header["SIMPLE"] = True
    header["BITPIX"] = -32
    header["NAXIS"] = 2
    header["NAXIS1"] = int(shape[1])
    header["NAXIS2"] = int(shape[0])
    header["EXPTIME"] = 1.0
    header.update(wcs_header(wcs))
    for key in ("IMAGEW", "IMAGEH"):
        header.remove(key, ignore_missing=True)
    return header


def _reference_header() -> fits.Header:
    header = fits.Header()
    header["SIMPLE"] = True
    header["BITPIX"] = 8
    header["NAXIS"] = 2
    header["NAXIS1"] = 1
    header["NAXIS2"] = 1
    return header


def _object_table(det: Detections, objects: Table) -> Table:
    rows = det.index
    flux = det.flux
    if "fluxerr" in objects.colnames:
        fluxerr = np.asarray(objects["fluxerr"], float)[rows]
    elif "magerr" in objects.colnames:
        fluxerr = flux * np.asarray(objects["magerr"], float)[rows] / 1.0857
    else:
        fluxerr = flux * 0.01
    fluxerr = np.where(np.isfinite(fluxerr) & (fluxerr > 0), fluxerr, flux * 0.1)
    fwhm = (
        np.asarray(objects["fwhm"], float)[rows]
        if "fwhm" in objects.colnames
        else np.full(len(rows), DEFAULT_FWHM_PX)
    )
    fwhm = np.where(np.isfinite(fwhm) & (fwhm > 0), fwhm, DEFAULT_FWHM_PX)
    # centroid error ~ FWHM / (2.35 S/N), floored at 0.01 px
    error = np.maximum(fwhm / 2.3548 / (flux / fluxerr), 0.01)
    return Table(
        {
            "NUMBER": np.arange(1, len(rows) + 1, dtype=np.int32),
            "XWIN_IMAGE": det.x + 1.0,
            "YWIN_IMAGE": det.y + 1.0,
            "ERRAWIN_IMAGE": error.astype(np.float32),
            "ERRBWIN_IMAGE": error.astype(np.float32),
            "ERRTHETAWIN_IMAGE": np.zeros(len(rows), np.float32),
            "FLUX_AUTO": flux.astype(np.float32),
            "FLUXERR_AUTO": fluxerr.astype(np.float32),
            "MAG_AUTO": (-2.5 * np.log10(flux)).astype(np.float32),
            "MAGERR_AUTO": (1.0857 * fluxerr / flux).astype(np.float32),
            "FWHM_IMAGE": fwhm.astype(np.float32),
            "ELONGATION": np.ones(len(rows), np.float32),
            "FLAGS": np.zeros(len(rows), np.int16),
        }
    )


def _reference_table(refs: ReferenceStars, epoch: float) -> Table:
    error = np.full(len(refs), REFERENCE_ERROR_ARCSEC / 3600.0)
    mag = np.where(np.isfinite(refs.mag), refs.mag, 99.0)
    return Table(
        {
            "X_WORLD": refs.ra,
            "Y_WORLD": refs.dec,
            "ERRA_WORLD": error.astype(np.float32),
            "ERRB_WORLD": error.astype(np.float32),
            "ERRTHETA_WORLD": np.zeros(len(refs), np.float32),
            "MAG": mag.astype(np.float32),
            "MAGERR": np.full(len(refs), 0.05, np.float32),
            "OBSDATE": np.full(len(refs), epoch),
        }
    )


def scamp_command(
    catalog: Path,
    reference: Path,
    settings: ScampSettings,
    scale_arcsec: float,
    program: str = SCAMP,
) -> list[str]:
    """SCAMP command line: our catalogue against a local reference file, TPV output."""
    options = {
        "ASTREF_CATALOG": "FILE",
        "ASTREFCAT_NAME": str(reference),
        "ASTREF_BAND": "DEFAULT",
        "SOLVE_PHOTOM": "N",
        "PROJECTION_TYPE": "TPV",
        "DISTORT_DEGREES": str(int(settings.distort_degree)),
        "POSITION_MAXERR": f"{max(settings.max_offset_arcsec / 60.0, 0.1):.3f}",
        "POSANGLE_MAXERR": f"{max(settings.max_rotation_deg, 0.1):.3f}",
        "PIXSCALE_MAXERR": f"{1.0 + max(settings.max_scale_error, 0.001):.4f}",
        "CROSSID_RADIUS": f"{max(3.0 * scale_arcsec, 1.0):.2f}",
        "MATCH": "Y",
        "SN_THRESHOLDS": "5.0,20.0",
        "FWHM_THRESHOLDS": "0.0,1000.0",
        "ELLIPTICITY_MAX": "1.0",
        "CHECKPLOT_DEV": "NULL",
        "CHECKPLOT_TYPE": "NONE",
        "WRITE_XML": "N",
        "VERBOSE_TYPE": "NORMAL",
        "HEADER_SUFFIX": ".head",
        "AHEADER_GLOBAL": "none.ahead",
        "NTHREADS": "1",
        "REF_TIMEOUT": "1",
    }
    command = [program, str(catalog), "-c", "/dev/null"]
    for key, value in options.items():
        command += [f"-{key}", value]
    return command


def refine_with_scamp(
    objects: Table,
    catalog: Table,
    wcs: WCS,
    shape: tuple[int, int],
    settings: ScampSettings | None = None,
    *,
    work_dir: Path | None = None,
    program: str = SCAMP,
) -> AstrometrySolution:
    """Refine ``wcs`` against ``catalog`` with SCAMP; a TPV solution.

    Parameters are those of :func:`pipeline.astrometry.refine.refine_wcs`.

    Raises
    ------
    SolverUnavailable
        ``scamp`` is not installed.
    NoMatchError
        No catalogue star falls on the field.
    SolverFailed
        SCAMP ran but wrote no usable solution.
    """
    settings = settings or ScampSettings()
    if not scamp_available(program):
        raise SolverUnavailable(
            "scamp is not installed: install the Debian package scamp or use the built-in method"
        )
    started = time.perf_counter()
    det = select_detections(objects, settings.max_stars)
    scale_arcsec = pixel_scale_deg(wcs, shape) * 3600.0
    margin = settings.max_offset_arcsec / scale_arcsec + 10.0
    refs, _, _ = project_to_pixels(
        reference_stars(catalog, settings.mag_column), wcs, shape, margin
    )
    refs = refs.subset(slice(0, max(REFERENCE_PER_DETECTION * len(det), 1000)))
    if len(refs) < 3 or len(det) < 3:
        raise NoMatchError(no_reference_message(len(det), len(refs)))
    with tempfile.TemporaryDirectory(prefix="skysift-scamp-", dir=work_dir) as tmp:
        folder = Path(tmp)
        objects_path, reference_path = folder / "objects.ldac", folder / "reference.ldac"
        write_ldac(objects_path, _image_header(wcs, shape), _object_table(det, objects))
        write_ldac(
            reference_path, _reference_header(), _reference_table(refs, settings.reference_epoch)
        )
        command = scamp_command(objects_path, reference_path, settings, scale_arcsec, program)
        try:
            result = subprocess.run(
                command,
                cwd=folder,
                capture_output=True,
                text=True,
                timeout=SCAMP_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise SolverTimeout(f"SCAMP did not finish within {SCAMP_TIMEOUT_S} s") from exc
        head = folder / "objects.head"
        if result.returncode != 0 or not head.exists():
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-5:])
            raise SolverFailed(f"SCAMP failed (exit {result.returncode}): {tail}")
        solved = _read_head(head, shape)
    solution = matches_for_wcs(solved, det, refs, shape)
    solution.method = "scamp"
    solution.sip_order = int(settings.distort_degree)
    solution.details["seconds"] = round(time.perf_counter() - started, 3)
    return solution


def _read_head(path: Path, shape: tuple[int, int]) -> WCS:
    """The WCS in SCAMP's ``.head`` file (text cards, TPV distortion)."""
    text = path.read_bytes().decode("ascii", errors="replace").replace("\ufffd", "?")
    # SCAMP's COMMENT/HISTORY lines carry non-ASCII text that astropy's WCS rejects
    cards = [
        line.ljust(80)[:80]
        for line in text.splitlines()
        if line.strip() and not line.startswith(("COMMENT", "HISTORY"))
    ]
    header = fits.Header.fromstring("".join(cards))
    header["NAXIS"] = 2
    header["NAXIS1"], header["NAXIS2"] = int(shape[1]), int(shape[0])
    header, _ = sanitize_wcs_header(header)  # SCAMP's TAN + PV polynomial is TPV
    wcs = wcs_from_header(header)
    wcs.pixel_shape = (int(shape[1]), int(shape[0]))
    return wcs
