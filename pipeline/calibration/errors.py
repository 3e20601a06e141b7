"""The error a calibration raises when its input cannot give a trustworthy zero point."""

from __future__ import annotations


class CalibrationError(ValueError):
    """The image cannot be calibrated with this input; the message says what to do."""
