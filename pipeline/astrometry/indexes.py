"""Index files for astrometry.net: the system ones and ones built from any catalogue.

``build-astrometry-index`` turns a star list into an index of quads of one
size range. Its presets ``-P k`` cover quads of 2.0–2.8 arcmin times
``sqrt(2)**k`` (k = -5 … 19). A field is solved by quads between about a
tenth of its width and its full width, so :func:`index_scales` picks the
presets overlapping that range. Built indexes are cached by a hash of the
catalogue positions and magnitudes plus the preset, so the same catalogue
(e.g. the one the photometry step downloaded for this field) is indexed once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from astropy.table import Table

from pipeline.astrometry.errors import AstrometryError, SolverFailed, SolverUnavailable
from pipeline.astrometry.sources import ReferenceStars, angular_distance

log = logging.getLogger("skysift.astrometry")

BUILD_INDEX = "build-astrometry-index"
SYSTEM_INDEX_DIRS = (
    Path("/usr/share/astrometry"),
    Path("/usr/local/astrometry/data"),
    Path("/usr/local/share/astrometry"),
)
INDEX_CACHE_ENV = "SKYSIFT_INDEX_CACHE"
DEFAULT_INDEX_CACHE = Path.home() / ".cache" / "skysift" / "astrometry-index"
PRESET_RANGE = (-5, 19)
QUAD_MIN_ARCMIN, QUAD_MAX_ARCMIN = 2.0, 2.8  # quad sizes of preset 0
QUAD_FRACTION = (0.1, 1.0)  # useful quads, as fractions of the field width
INDEX_FORMAT_VERSION = "1"  # bump to invalidate cached indexes when the build changes
BUILD_TIMEOUT_S = 600
INPARALLEL_MAX_BYTES = 1 << 30  # load index sets up to 1 GiB into memory together


def default_cache_dir() -> Path:
    """Where built indexes are kept: ``$SKYSIFT_INDEX_CACHE`` or ``~/.cache/skysift/...``."""
    configured = os.environ.get(INDEX_CACHE_ENV)
    return Path(configured) if configured else DEFAULT_INDEX_CACHE


def preset_quad_range(preset: int) -> tuple[float, float]:
    """Quad diameters (arcmin) indexed by ``build-astrometry-index -P preset``."""
    factor = np.sqrt(2.0) ** preset
    return QUAD_MIN_ARCMIN * factor, QUAD_MAX_ARCMIN * factor


def index_scales(field_min_arcmin: float, field_max_arcmin: float | None = None) -> list[int]:
    """Presets whose quads suit fields between ``field_min`` and ``field_max`` arcmin wide."""
    field_max_arcmin = field_max_arcmin or field_min_arcmin
    if not 0 < field_min_arcmin <= field_max_arcmin:
        raise AstrometryError(
            f"invalid field width range {field_min_arcmin}–{field_max_arcmin} arcmin"
        )
    low = QUAD_FRACTION[0] * field_min_arcmin
    high = QUAD_FRACTION[1] * field_max_arcmin
    presets = []
    for preset in range(PRESET_RANGE[0], PRESET_RANGE[1] + 1):
        quad_low, quad_high = preset_quad_range(preset)
        if quad_high >= low and quad_low <= high:
            presets.append(preset)
    if not presets:  # a field smaller or larger than any preset: take the nearest one
        presets = [
            PRESET_RANGE[0] if high < preset_quad_range(PRESET_RANGE[0])[0] else PRESET_RANGE[1]
        ]
    return presets


def find_index_files(extra_dirs: list[str | Path] | tuple = (), system: bool = True) -> list[Path]:
    """Index files (``*.fits``) in ``extra_dirs`` and (if ``system``) the system folders."""
    found: list[Path] = []
    for folder in [*map(Path, extra_dirs), *(SYSTEM_INDEX_DIRS if system else ())]:
        if folder.is_dir():
            found.extend(sorted(p for p in folder.glob("*.fits") if p.is_file()))
    return found


def catalog_extent_arcmin(refs: ReferenceStars) -> float:
    """Diameter (arcmin) of the sky area the catalogue covers."""
    if len(refs) == 0:
        return 0.0
    a, d = np.deg2rad(refs.ra), np.deg2rad(refs.dec)
    vec = np.array([np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)]).mean(axis=1)
    ra0 = np.rad2deg(np.arctan2(vec[1], vec[0]))
    dec0 = np.rad2deg(np.arctan2(vec[2], np.hypot(vec[0], vec[1])))
    return float(2 * angular_distance(ra0, dec0, refs.ra, refs.dec).max() * 60.0)


def catalog_hash(refs: ReferenceStars) -> str:
    """Hash of the positions and magnitudes (rounded to 1 mas / 1 mmag) of a star list."""
    digest = hashlib.sha256(INDEX_FORMAT_VERSION.encode())
    digest.update(np.round(refs.ra * 3.6e6).astype(np.int64).tobytes())
    digest.update(np.round(refs.dec * 3.6e6).astype(np.int64).tobytes())
    mags = np.where(np.isfinite(refs.mag), refs.mag, 99.0)
    digest.update(np.round(mags * 1000).astype(np.int64).tobytes())
    return digest.hexdigest()[:20]


def _write_star_list(refs: ReferenceStars, path: Path) -> None:
    mags = np.where(np.isfinite(refs.mag), refs.mag, 99.0)
    Table({"RA": refs.ra, "DEC": refs.dec, "MAG": mags}).write(path, overwrite=True)


def build_index(
    refs: ReferenceStars,
    preset: int,
    destination: Path,
    *,
    unique_id: int,
    work_dir: Path,
    program: str = BUILD_INDEX,
) -> Path:
    """Run ``build-astrometry-index`` for one preset; the file appears atomically."""
    star_list = work_dir / "stars.fits"
    if not star_list.exists():
        _write_star_list(refs, star_list)
    partial = destination.with_name(f".{destination.name}.{os.getpid()}.partial")
    command = [
        program,
        "-i",
        str(star_list),
        "-o",
        str(partial),
        "-P",
        str(preset),
        "-S",
        "MAG",
        "-A",
        "RA",
        "-D",
        "DEC",
        "-E",
        "-I",
        str(unique_id),
        "-t",
        str(work_dir),
    ]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False
        )
    except FileNotFoundError as exc:
        raise SolverUnavailable(
            f"{program} is not installed: install the Debian package astrometry.net"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise SolverFailed(f"{program} did not finish in {BUILD_TIMEOUT_S} s") from exc
    if result.returncode != 0 or not partial.exists():
        partial.unlink(missing_ok=True)
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-5:])
        raise SolverFailed(f"{program} -P {preset} failed (exit {result.returncode}): {tail}")
    os.replace(partial, destination)
    return destination


def build_catalog_indexes(
    refs: ReferenceStars,
    presets: list[int],
    cache_dir: str | Path | None = None,
    program: str = BUILD_INDEX,
) -> list[Path]:
    """Index files of ``refs`` for each preset, built once and cached.

    Parameters
    ----------
    refs : ReferenceStars
        The catalogue (brightest first is not required: the build sorts by MAG).
    presets : list of int
        ``-P`` values, from :func:`index_scales`.
    cache_dir : path, optional
        Cache root (:func:`default_cache_dir` by default); files go to
        ``<cache>/<catalogue hash>/index-<preset>.fits``.

    Raises
    ------
    SolverUnavailable
        When ``build-astrometry-index`` is missing.
    AstrometryError
        When the catalogue has too few stars to index.
    """
    if len(refs) < 10:
        raise AstrometryError(
            f"the catalogue has only {len(refs)} stars: too few to build an astrometric index"
        )
    if shutil.which(program) is None:
        raise SolverUnavailable(
            f"{program} is not installed: install the Debian package astrometry.net "
            "to solve fields from a local catalogue"
        )
    key = catalog_hash(refs)
    folder = Path(cache_dir or default_cache_dir()) / key
    folder.mkdir(parents=True, exist_ok=True)
    base_id = int(key[:6], 16) % 20000 * 100  # index ids must differ between catalogues
    paths: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="skysift-index-") as tmp:
        for preset in presets:
            path = folder / f"index-{preset:+03d}.fits"
            if not path.exists():
                log.info("building astrometry index -P %d for %d stars", preset, len(refs))
                build_index(
                    refs,
                    preset,
                    path,
                    unique_id=base_id + preset - PRESET_RANGE[0],
                    work_dir=Path(tmp),
                    program=program,
                )
            paths.append(path)
    return paths


def write_backend_config(
    path: Path,
    *,
    index_files: list[Path] = (),
    index_dirs: list[Path] = (),
    cpu_limit_s: float = 60.0,
) -> Path:
    """The ``astrometry.cfg`` for ``solve-field --config``: which indexes to load.

    Listed files are loaded by name; folders are searched for index files
    (``autoindex``). The engine's CPU limit applies to each index in turn unless
    all are loaded at once (``inparallel``), so small index sets (up to
    :data:`INPARALLEL_MAX_BYTES`) are loaded together and the limit holds for
    the whole solve; with big sets each index gets its share of the limit.
    """
    total = sum(
        p.stat().st_size for p in [*index_files, *find_index_files(index_dirs, False)] if p.exists()
    )
    n_indexes = len(index_files) + len(find_index_files(index_dirs, False))
    together = total <= INPARALLEL_MAX_BYTES
    per_index = cpu_limit_s if together else max(cpu_limit_s / max(n_indexes, 1), 5.0)
    lines = ["# written by SkySift", f"cpulimit {int(np.ceil(per_index))}"]
    if together:
        lines.append("inparallel")
    lines += [f"add_path {folder}" for folder in index_dirs]
    if index_dirs:
        lines.append("autoindex")
    lines += [f"index {file}" for file in index_files]
    path.write_text("\n".join(lines) + "\n")
    return path
