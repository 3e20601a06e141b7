"""Forced photometry of named targets: parse, resolve, measure, cut out.

Typical use in the photometry step::

    from pipeline.targets import measure_targets

    result = measure_targets(config, image, fwhm=fwhm, out_dir=ctx.task_dir,
                             measurement=config, mask=mask, background=bg.level,
                             noise=bg.rms, gain=gain, segmentation=segmentation,
                             wcs=wcs, calibration=calibration, time_iso=time_iso,
                             filter_name=filter_name, logger=ctx.log)
    result.table, result.files, result.warnings, result.summary

Modules: ``parse`` (target lines), ``resolve`` (Sesame, TNS, Fink), ``photometry``
(forced photometry, upper limits), ``hips`` (hips2fits atlas images), ``measure`` (the
one-call entry, files), ``config`` (:class:`TargetsConfig`), ``errors``.
"""

from pipeline.targets.config import TargetsConfig
from pipeline.targets.errors import (
    AtlasUnavailable,
    ResolverUnavailable,
    TargetError,
    TargetNotFound,
)
from pipeline.targets.hips import atlas_survey, atlas_wcs, fetch_atlas
from pipeline.targets.measure import (
    CUTOUT_FOLDER,
    TARGET_COLUMNS,
    TARGETS_FILE,
    TargetsResult,
    measure_targets,
)
from pipeline.targets.parse import TargetSpec, parse_coordinates, parse_target, parse_targets
from pipeline.targets.photometry import PHOTOMETRY_COLUMNS, forced_photometry
from pipeline.targets.resolve import (
    Resolution,
    TargetResolver,
    coordinate_name,
    query_fink,
    query_sesame,
    query_tns,
    resolve_name,
)

__all__ = [
    "CUTOUT_FOLDER",
    "PHOTOMETRY_COLUMNS",
    "TARGETS_FILE",
    "TARGET_COLUMNS",
    "AtlasUnavailable",
    "Resolution",
    "ResolverUnavailable",
    "TargetError",
    "TargetNotFound",
    "TargetResolver",
    "TargetSpec",
    "TargetsConfig",
    "TargetsResult",
    "atlas_survey",
    "atlas_wcs",
    "coordinate_name",
    "fetch_atlas",
    "forced_photometry",
    "measure_targets",
    "parse_coordinates",
    "parse_target",
    "parse_targets",
    "query_fink",
    "query_sesame",
    "query_tns",
    "resolve_name",
]
