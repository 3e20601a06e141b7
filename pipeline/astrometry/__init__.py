"""Astrometry: from an object list and a reference catalogue to a checked WCS.

The entry point is :func:`solve_astrometry`; its pieces are usable alone:

- :func:`refine_wcs` — the built-in method: match (rotation/scale/shift vote,
  then nearest neighbours) and a linear TAN-SIP least-squares fit;
- :func:`refine_with_scamp` — the same through SCAMP (``scamp`` program);
- :func:`run_solve_field` / :func:`build_catalog_indexes` — blind solving with
  astrometry.net's ``solve-field`` and index files built from any catalogue;
- :func:`solve_with_nova` — blind solving through nova.astrometry.net;
- :func:`check_solution`, :func:`plot_residual_map`, :func:`wcs_grid_difference`;
- :func:`write_wcs_file`, :func:`read_wcs_file`, :func:`apply_wcs`.

Errors are :class:`AstrometryError` (a ``ValueError``) subclasses whose
messages are meant for the user.
"""

from pipeline.astrometry.blind import BlindHints, run_solve_field, solve_field_available
from pipeline.astrometry.config import AstrometryConfig
from pipeline.astrometry.errors import (
    AstrometryError,
    NoMatchError,
    PoorSolutionError,
    SolverCancelled,
    SolverFailed,
    SolverTimeout,
    SolverUnavailable,
)
from pipeline.astrometry.fit import fit_tan_sip, wcs_to_sip
from pipeline.astrometry.indexes import build_catalog_indexes, find_index_files, index_scales
from pipeline.astrometry.nova import NovaClient, NovaSettings, solve_with_nova
from pipeline.astrometry.quality import (
    check_solution,
    plot_residual_map,
    require_quality,
    wcs_grid_difference,
)
from pipeline.astrometry.refine import RefineSettings, refine_wcs
from pipeline.astrometry.scamp import ScampSettings, refine_with_scamp, scamp_available
from pipeline.astrometry.solution import AstrometrySolution
from pipeline.astrometry.solve import solve_astrometry
from pipeline.astrometry.wcsfile import apply_wcs, read_wcs_file, strip_wcs, write_wcs_file

__all__ = [
    "AstrometryConfig",
    "AstrometryError",
    "AstrometrySolution",
    "BlindHints",
    "NoMatchError",
    "NovaClient",
    "NovaSettings",
    "PoorSolutionError",
    "RefineSettings",
    "ScampSettings",
    "SolverCancelled",
    "SolverFailed",
    "SolverTimeout",
    "SolverUnavailable",
    "apply_wcs",
    "build_catalog_indexes",
    "check_solution",
    "find_index_files",
    "fit_tan_sip",
    "index_scales",
    "plot_residual_map",
    "read_wcs_file",
    "refine_wcs",
    "refine_with_scamp",
    "require_quality",
    "run_solve_field",
    "scamp_available",
    "solve_astrometry",
    "solve_field_available",
    "solve_with_nova",
    "strip_wcs",
    "wcs_grid_difference",
    "wcs_to_sip",
    "write_wcs_file",
]
