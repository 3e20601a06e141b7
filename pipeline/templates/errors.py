"""Errors of the template sources."""

from __future__ import annotations

from pipeline.steps.base import ServiceUnavailable


class TemplateError(ValueError):
    """The template cannot be used (missing, no WCS, no overlap, unknown band)."""


class TemplateServiceError(ServiceUnavailable):
    """A template survey server did not answer (down, slow, HTTP error): retry later."""
