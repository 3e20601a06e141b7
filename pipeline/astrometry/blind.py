"""Blind astrometric solving with astrometry.net's ``solve-field`` on the object list.

We never give ``solve-field`` the image: it gets an xylist (FITS table of
1-based X, Y and FLUX of the unflagged detections, brightest first), the
image size, optional position and scale hints and a backend config naming the
index files, and runs in a temporary folder with a CPU limit. It is asked for
a SIP tweak of order 2; when the first solution comes back without it (too
few matches for the tweak), it is run again verifying that solution, which
then has the stars to fit the SIP terms.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from pipeline.astrometry.errors import (
    AstrometryError,
    SolverCancelled,
    SolverFailed,
    SolverTimeout,
    SolverUnavailable,
)
from pipeline.astrometry.indexes import write_backend_config
from pipeline.astrometry.sources import Detections
from pipeline.astrometry.wcsfile import wcs_from_header

log = logging.getLogger("skysift.astrometry")

SOLVE_FIELD = "solve-field"
MAX_XYLIST_OBJECTS = 1000
WALL_TIME_MARGIN_S = 30.0  # solve-field also spends time loading indexes and writing files


@dataclass(frozen=True)
class BlindHints:
    """What we know about the field before solving (all optional).

    Attributes
    ----------
    ra, dec : float
        Approximate field centre, degrees.
    radius_deg : float
        How far from (ra, dec) the centre may be.
    scale_low, scale_high : float
        Pixel scale bounds, arcsec per pixel.
    """

    ra: float | None = None
    dec: float | None = None
    radius_deg: float | None = None
    scale_low: float | None = None
    scale_high: float | None = None

    @property
    def has_position(self) -> bool:
        return self.ra is not None and self.dec is not None

    @property
    def has_scale(self) -> bool:
        return self.scale_low is not None and self.scale_high is not None

    def describe(self) -> str:
        parts = []
        if self.has_position:
            parts.append(f"RA {self.ra:.4f}, Dec {self.dec:.4f} ± {self.radius_deg or 1:g}°")
        if self.has_scale:
            parts.append(f"scale {self.scale_low:.3g}–{self.scale_high:.3g}″/px")
        return ", ".join(parts) or "no hints"


@dataclass
class BlindResult:
    """A ``solve-field`` solution before our own checks and refinement."""

    wcs: WCS
    seconds: float
    runs: int
    index: str = ""
    log_odds: float | None = None
    log_text: str = field(default="", repr=False)


def solve_field_available(program: str = SOLVE_FIELD) -> bool:
    """True when the ``solve-field`` program is on the PATH."""
    return shutil.which(program) is not None


def write_xylist(detections: Detections, shape: tuple[int, int], path: Path) -> int:
    """Write the xylist ``solve-field`` reads: 1-based X, Y (FITS convention) and FLUX.

    Returns the number of rows written (at most :data:`MAX_XYLIST_OBJECTS`).
    """
    det = detections.first(MAX_XYLIST_OBJECTS)
    table = Table({"X": det.x + 1.0, "Y": det.y + 1.0, "FLUX": det.flux})
    hdu = fits.table_to_hdu(table)
    hdu.header["IMAGEW"] = (int(shape[1]), "image width, pixels")
    hdu.header["IMAGEH"] = (int(shape[0]), "image height, pixels")
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, overwrite=True)
    return len(det)


def solve_field_command(
    xylist: Path,
    shape: tuple[int, int],
    out_dir: Path,
    config: Path,
    hints: BlindHints,
    *,
    tweak_order: int,
    cpu_limit_s: float,
    verify: Path | None = None,
    program: str = SOLVE_FIELD,
) -> list[str]:
    """The ``solve-field`` command line for an xylist."""
    command = [
        program,
        str(xylist),
        "--width",
        str(shape[1]),
        "--height",
        str(shape[0]),
        "--x-column",
        "X",
        "--y-column",
        "Y",
        "--sort-column",
        "FLUX",
        "--no-plots",
        "--overwrite",
        "--dir",
        str(out_dir),
        "--temp-dir",
        str(out_dir),
        "--config",
        str(config),
        "--cpulimit",
        str(int(np.ceil(cpu_limit_s))),
        "--crpix-center",
        "--new-fits",
        "none",
        "--cancel",
        str(out_dir / "cancel"),
    ]
    command += ["--tweak-order", str(tweak_order)] if tweak_order > 0 else ["--no-tweak"]
    if hints.has_position:
        command += ["--ra", f"{hints.ra:.6f}", "--dec", f"{hints.dec:.6f}"]
        command += ["--radius", f"{hints.radius_deg or 1.0:.4f}"]
    if hints.has_scale:
        command += ["--scale-units", "arcsecperpix"]
        command += [
            "--scale-low",
            f"{hints.scale_low:.5g}",
            "--scale-high",
            f"{hints.scale_high:.5g}",
        ]
    if verify is not None:
        command += ["--verify", str(verify)]
    return command


def _run(command: list[str], wall_limit: float, cancel_file: Path, cancelled) -> str:
    """Run solve-field, honouring a wall-time limit and cancellation; return its log."""
    log.debug("running %s", " ".join(command))
    try:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
    except FileNotFoundError as exc:
        raise SolverUnavailable(
            f"{command[0]} is not installed: install the Debian package astrometry.net"
        ) from exc
    deadline = time.monotonic() + wall_limit
    while True:
        try:
            output, _ = process.communicate(timeout=0.5)
            return output
        except subprocess.TimeoutExpired:
            if cancelled is not None and cancelled():
                cancel_file.touch()  # solve-field stops cleanly when this file appears
                try:
                    process.communicate(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.communicate()
                raise SolverCancelled("blind solving was cancelled") from None
            if time.monotonic() > deadline:
                process.kill()
                process.communicate()
                raise SolverTimeout(
                    f"solve-field did not finish within {wall_limit:.0f} s"
                ) from None


def _parse_log(text: str) -> tuple[str, float | None]:
    index = re.findall(r"solved with index (\S+?)\.?\s*$", text, re.MULTILINE)
    odds = re.findall(r"log-odds ratio ([0-9.eE+-]+)", text)
    return (index[-1] if index else ""), (float(odds[-1]) if odds else None)


def _sip_order(wcs: WCS) -> int:
    return int(wcs.sip.a_order) if wcs.sip is not None else 1


def run_solve_field(
    detections: Detections,
    shape: tuple[int, int],
    *,
    index_files: list[Path] = (),
    index_dirs: list[Path] = (),
    hints: BlindHints | None = None,
    tweak_order: int = 2,
    cpu_limit_s: float = 60.0,
    work_dir: Path | None = None,
    cancelled: Callable[[], bool] | None = None,
    program: str = SOLVE_FIELD,
) -> BlindResult:
    """Solve the field blindly from the detections with ``solve-field``.

    Parameters
    ----------
    detections : Detections
        Unflagged detections, brightest first
        (:func:`~pipeline.astrometry.sources.select_detections`).
    shape : (ny, nx)
        Image shape.
    index_files, index_dirs : list of Path
        Index files to load, and folders to search for more (at least one of them).
    hints : BlindHints, optional
        Position and scale hints; they speed the solve up enormously.
    tweak_order : int
        SIP order of ``solve-field``'s tweak (0 disables it).
    cpu_limit_s : float
        CPU seconds ``solve-field`` may spend (``--cpulimit``).
    work_dir : Path, optional
        Where to run; a temporary folder (removed afterwards) by default.
    cancelled : callable, optional
        Polled while solving; when it returns True the solve is stopped.

    Returns
    -------
    BlindResult

    Raises
    ------
    SolverUnavailable
        ``solve-field`` or the index files are missing.
    SolverFailed
        No solution within the limits.
    SolverTimeout
        The process overran its wall-time limit.
    """
    hints = hints or BlindHints()
    if not solve_field_available(program):
        raise SolverUnavailable(
            f"{program} is not installed: install the Debian package astrometry.net "
            "(and index files, or let SkySift build them from the catalogue)"
        )
    if not index_files and not index_dirs:
        raise SolverUnavailable(
            "no astrometry.net index files: install e.g. astrometry-data-tycho2, configure an "
            "index folder, or provide a reference catalogue to build indexes from"
        )
    if len(detections) < 5:
        raise AstrometryError(
            f"only {len(detections)} usable detections: blind solving needs at least 5 stars"
        )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="skysift-solve-", dir=work_dir) as tmp:
        folder = Path(tmp)
        config = write_backend_config(
            folder / "astrometry.cfg",
            index_files=list(index_files),
            index_dirs=list(index_dirs),
            cpu_limit_s=cpu_limit_s,
        )
        xylist = folder / "field.xyls"
        write_xylist(detections, shape, xylist)
        wall = cpu_limit_s * 2 + WALL_TIME_MARGIN_S
        args = dict(tweak_order=tweak_order, cpu_limit_s=cpu_limit_s, program=program)
        text = _run(
            solve_field_command(xylist, shape, folder, config, hints, **args),
            wall,
            folder / "cancel",
            cancelled,
        )
        solution = folder / "field.wcs"
        if not solution.exists():
            tail = "\n".join(text.strip().splitlines()[-3:])
            raise SolverFailed(
                f"solve-field found no solution ({hints.describe()}, {len(detections)} "
                f"detections, CPU limit {cpu_limit_s:g} s): give position/scale hints, a "
                f"longer time limit or check the index scales. Last output: {tail}"
            )
        wcs = _read_solution(solution, shape)
        runs = 1
        if tweak_order >= 2 and _sip_order(wcs) < tweak_order:
            # too few matches for the tweak: verify the solution to tweak it again
            first = folder / "first.wcs"
            shutil.copy(solution, first)
            solution.unlink()
            text += _run(
                solve_field_command(
                    xylist, shape, folder, config, BlindHints(), verify=first, **args
                ),
                wall,
                folder / "cancel",
                cancelled,
            )
            runs = 2
            wcs = _read_solution(solution if solution.exists() else first, shape)
    index, odds = _parse_log(text)
    return BlindResult(
        wcs=wcs,
        seconds=time.perf_counter() - started,
        runs=runs,
        index=Path(index).name,
        log_odds=odds,
        log_text=text,
    )


def _read_solution(path: Path, shape: tuple[int, int]) -> WCS:
    header = fits.getheader(path)
    wcs = wcs_from_header(header)
    wcs.pixel_shape = (int(shape[1]), int(shape[0]))
    return wcs
