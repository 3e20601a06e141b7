"""Errors of forced photometry of targets.

* :class:`TargetError` (a :class:`~pipeline.steps.base.StepError` and a ``ValueError``):
  the user's input cannot be used as given: an unreadable target line, a name no
  service knows, a primary target outside the image. Retrying will not help; the
  message says what to change.
* :class:`ResolverUnavailable` (a :class:`~pipeline.steps.base.ServiceUnavailable`): a
  name service (Sesame, the TNS, Fink) did not answer; the same run may succeed later.
* :class:`AtlasUnavailable`: hips2fits gave no atlas image. It never fails the step:
  the cutout shows the reason instead of the atlas panel.
"""

from __future__ import annotations

from pipeline.steps.base import ServiceUnavailable, StepError


class TargetError(StepError, ValueError):
    """A target cannot be used as given; the message says what to change."""


class TargetNotFound(TargetError):
    """A name service answered, but knows no object of that name."""


class ResolverUnavailable(ServiceUnavailable):
    """A name service is unreachable, too slow or broken; try again later."""


class AtlasUnavailable(Exception):
    """hips2fits gave no usable atlas image; ``str(exc)`` is the reason, for the figure."""
