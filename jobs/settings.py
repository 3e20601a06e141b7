"""Deployment settings: one typed model, read from ``SKYSIFT_*`` environment variables."""

from __future__ import annotations

import secrets
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where SkySift keeps its data and which services it talks to.

    The embedded default needs none of these set: SQLite and task folders go under
    ``./skysift-data`` and jobs run in-process.
    """

    model_config = SettingsConfigDict(env_prefix="SKYSIFT_", env_file=None, extra="ignore")

    data_dir: Path = Field(Path("skysift-data"), description="Folder for the database and tasks")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default is a SQLite file in the data folder"
    )
    redis_url: str | None = Field(
        None, description="Redis URL; when set, jobs go to separate `skysift worker` processes"
    )
    archive_roots: str = Field(
        "",
        description="Archive folders offered in the file browser, separated by ':' "
        "(optionally named: name=/path)",
    )
    max_upload_mb: int = Field(1024, description="Largest accepted upload in MiB")
    step_time_limit_s: int = Field(1800, description="Time limit of one step run, seconds")
    worker_threads: int = Field(2, description="Worker threads of the embedded worker")
    heartbeat_s: float = Field(5.0, description="How often a running step reports it is alive")
    secret_key: str | None = Field(None, description="Session/CSRF secret; generated if unset")
    tasks_per_page: int = Field(20, description="Tasks per page in the task list")

    embed_origins: str = Field(
        "",
        description="Origins allowed to frame embed views, space-separated "
        "(e.g. https://dashboard.example.org)",
    )

    @property
    def presets_dir(self) -> Path:
        return self.data_dir / "presets"

    @property
    def tasks_dir(self) -> Path:
        return self.data_dir / "tasks"

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'skysift.db').resolve()}"

    @property
    def embedded(self) -> bool:
        """True when jobs run inside the web process (no Redis configured)."""
        return not self.redis_url

    def archives(self) -> dict[str, Path]:
        """Named archive roots: ``{"name": Path}``, from ``archive_roots``."""
        roots: dict[str, Path] = {}
        for item in filter(None, (part.strip() for part in self.archive_roots.split(":"))):
            name, _, path = item.partition("=") if "=" in item else ("", "", item)
            path_obj = Path(path).expanduser().resolve()
            roots[name or path_obj.name or "root"] = path_obj
        return roots

    def ensure_dirs(self) -> None:
        self.tasks_dir.mkdir(parents=True, exist_ok=True)

    def resolved_secret(self) -> str:
        """The configured secret, or one generated once and kept in the data folder."""
        if self.secret_key:
            return self.secret_key
        path = self.data_dir / "secret.key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_hex(32))
            path.chmod(0o600)
        return path.read_text().strip()


_current: Settings | None = None


def get_settings() -> Settings:
    """Settings in force: those set by :func:`configure`, else read from the environment."""
    global _current
    if _current is None:
        _current = Settings()
    return _current


def configure(**values) -> Settings:
    """Replace the process-wide settings (CLI flags, tests); unspecified values come from env."""
    global _current
    _current = Settings(**values)
    return _current
