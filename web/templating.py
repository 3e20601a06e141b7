"""Jinja filters used by the templates."""

from __future__ import annotations

from typing import Any

from litestar.plugins.jinja import JinjaTemplateEngine

from pipeline.flags import describe_flags


def human_size(size: int | None) -> str:
    if size is None:
        return ""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def format_value(value: Any) -> str:
    """Summary numbers shown compactly: floats to 4 significant digits."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return ", ".join(format_value(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {format_value(v)}" for k, v in value.items())
    if value is None:
        return "—"
    return str(value)


def register_filters(engine: JinjaTemplateEngine) -> None:
    env = engine.engine
    env.filters["human_size"] = human_size
    env.filters["fmt"] = format_value
    env.filters["flags"] = describe_flags
