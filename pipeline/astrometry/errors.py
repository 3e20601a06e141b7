"""Errors of the astrometry subpackage.

Every error is an :class:`AstrometryError`, a ``ValueError`` whose message is
meant for the user: it says what went wrong with the input and what to try.
The photometry step turns them into :class:`pipeline.steps.base.StepError`
(:class:`SolverTimeout` into ``ServiceUnavailable``, a retryable failure, and
:class:`SolverCancelled` into ``StepCancelled``).
"""

from __future__ import annotations


class AstrometryError(ValueError):
    """The astrometric solution cannot be found or trusted; the message says why."""


class NoMatchError(AstrometryError):
    """The detections and the reference catalogue have no consistent match."""


class PoorSolutionError(AstrometryError):
    """A solution was found but fails the quality checks (too few matches, large residuals)."""


class SolverUnavailable(AstrometryError):
    """A required program, index file or service key is missing."""


class SolverFailed(AstrometryError):
    """The external solver ran but did not find a solution."""


class SolverTimeout(SolverFailed):
    """The solver or service did not answer in time; the same request may succeed later."""


class SolverCancelled(AstrometryError):
    """The caller's ``cancelled()`` callback asked to stop while a solver was running."""
