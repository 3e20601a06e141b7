"""Errors of the reference-catalogue layer.

Two kinds, so that the job layer knows what to do:

* :class:`CatalogError` (a ``ValueError``): the request cannot be answered as asked
  (unknown catalogue, field outside the catalogue's footprint, no stars in the cone,
  unreadable local file). Retrying the same request will not help; the message says
  what to change.
* :class:`ServiceUnavailable` (from :mod:`pipeline.steps.base`, a ``StepError``): the
  remote service did not answer (connection refused, timeout, HTTP 5xx, an error
  answer from VizieR). The same request may succeed later, so the job layer may retry.
"""

from __future__ import annotations

from pipeline.steps.base import ServiceUnavailable

__all__ = ["CatalogError", "ServiceUnavailable"]


class CatalogError(ValueError):
    """The catalogue request cannot be answered as asked; the message says what to change."""
