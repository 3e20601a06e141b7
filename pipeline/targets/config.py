"""Settings of forced photometry of targets: the one place their defaults live.

:class:`TargetsConfig` is a mixin for the photometry step's config model (like
``MeasurementConfig``). The aperture, annulus and S/N threshold are not repeated here:
targets are measured with the photometry step's own (``MeasurementConfig``).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field, field_validator

from pipeline.steps.base import StepConfig
from pipeline.targets.parse import parse_targets, target_lines

# The real services (configurable so that mirrors and local test servers can be used).
DEFAULT_SESAME_URL = "https://cds.unistra.fr/cgi-bin/nph-sesame"
DEFAULT_TNS_URL = "https://www.wis-tns.org"
DEFAULT_FINK_URL = "https://api.fink-portal.org"
DEFAULT_HIPS2FITS_URL = "https://alasky.cds.unistra.fr"
DEFAULT_RESOLVER_TIMEOUT_S = 20.0


class TargetsConfig(StepConfig):
    """Forced photometry of named targets (part of the photometry step config)."""

    targets: list[str] = Field(
        default_factory=list,
        description="Targets, one per line; the first is the primary target (the step fails "
        "if it is outside the image, others are skipped with a warning). Each line is a "
        "SIMBAD name (M 31), a TNS name (2024abc, SN 2024abc, AT2024abc), coordinates in "
        "degrees or sexagesimal (150.1 20.2, 10:00:24.1 +20:12:30, 100024.1+201230) or a "
        "0-based pixel position (x=1021.5 y=377).",
    )
    centroid_targets: bool = Field(
        False,
        description="Move each target to the light-weighted centroid within one FWHM before "
        "measuring (the given position is kept in x_orig/y_orig); a target that is not "
        "detected there is measured at the given position.",
    )
    tns_bot_id: str | None = Field(
        None, description="TNS bot id, for TNS names (without a bot the Fink resolver is used)."
    )
    tns_bot_name: str | None = Field(None, description="TNS bot name.")
    tns_api_key: str | None = Field(
        None, description="TNS bot API key (kept with the task settings; never logged)."
    )
    resolver_timeout: float = Field(
        DEFAULT_RESOLVER_TIMEOUT_S,
        gt=0,
        le=300,
        description="Seconds to wait for each answer of Sesame, the TNS, Fink and hips2fits.",
    )
    sesame_url: str = Field(
        DEFAULT_SESAME_URL,
        description="CDS Sesame name resolver (SIMBAD names), e.g. a mirror's "
        "https://vizier.cfa.harvard.edu/viz-bin/nph-sesame.",
    )
    tns_url: str = Field(DEFAULT_TNS_URL, description="Base URL of the TNS (its /api/get).")
    fink_url: str = Field(
        DEFAULT_FINK_URL, description="Base URL of the Fink API (TNS names without a TNS bot)."
    )
    hips2fits_url: str = Field(
        DEFAULT_HIPS2FITS_URL,
        description="Base URL of the CDS hips2fits service (atlas images of the cutouts), "
        "e.g. the mirror https://alaskybis.cds.unistra.fr.",
    )
    target_cutout_size: int = Field(
        64, ge=16, le=512, description="Side of the target cutouts, in pixels."
    )
    atlas_cutouts: bool = Field(
        True,
        description="Show an atlas image of the same field (Pan-STARRS, SkyMapper or 2MASS "
        "from hips2fits) in the target cutouts.",
    )

    @field_validator("targets", mode="before")
    @classmethod
    def _split_lines(cls, value):
        # a form's text area sends one string; keep one target per list item
        if value is None:
            return []
        if isinstance(value, str):
            return target_lines(value)
        return target_lines([str(item) for item in value])

    @field_validator("targets")
    @classmethod
    def _readable(cls, value: list[str]) -> list[str]:
        parse_targets(value)  # TargetError (a ValueError) names the unreadable line
        return value

    @field_validator("sesame_url", "tns_url", "fink_url", "hips2fits_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value.strip().rstrip("/")

    @field_validator("tns_bot_id", "tns_bot_name", "tns_api_key", mode="before")
    @classmethod
    def _blank_is_none(cls, value):
        if value is None:
            return None
        text = str(value).strip()
        return text or None

    @property
    def has_tns_bot(self) -> bool:
        """True when the TNS API itself can be asked (bot id, name and key all given)."""
        return bool(self.tns_bot_id and self.tns_bot_name and self.tns_api_key)
