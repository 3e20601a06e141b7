"""HTML forms generated from the per-step config models, and parsing them back.

The config model is the one source of each parameter's type, default and help
text; the form, its validation and the API schema all come from it.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo


@dataclass
class FormField:
    name: str
    label: str
    kind: str  # "checkbox", "number", "text", "select", "textarea"
    value: Any
    default: Any
    help: str
    choices: list[str]
    optional: bool
    step: str | None = None
    error: str | None = None


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(annotation)) == 2:
            return args[0], True
    return annotation, False


def _kind(annotation: Any) -> tuple[str, list[str], str | None]:
    if annotation is bool:
        return "checkbox", [], None
    if annotation is int:
        return "number", [], "1"
    if annotation is float:
        return "number", [], "any"
    if typing.get_origin(annotation) is Literal:
        return "select", [str(a) for a in typing.get_args(annotation)], None
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return "select", [str(m.value) for m in annotation], None
    if typing.get_origin(annotation) in (list, tuple):
        return "textarea", [], None
    return "text", [], None


def _label(name: str, info: FieldInfo) -> str:
    return info.title or name.replace("_", " ").capitalize()


def form_fields(
    model: type[BaseModel], values: dict[str, Any] | None, errors: dict[str, str] | None = None
) -> list[FormField]:
    """One FormField per model field, filled from ``values`` (the stored config) or defaults."""
    values = values or {}
    errors = errors or {}
    fields = []
    for name, info in model.model_fields.items():
        annotation, optional = _unwrap_optional(info.annotation)
        kind, choices, step = _kind(annotation)
        default = info.get_default(call_default_factory=True)
        value = values.get(name, default)
        if kind == "textarea" and isinstance(value, list | tuple):
            value = "\n".join(str(v) for v in value)
        fields.append(
            FormField(
                name=name,
                label=_label(name, info),
                kind=kind,
                value=value,
                default=default,
                help=info.description or "",
                choices=choices,
                optional=optional,
                step=step,
                error=errors.get(name),
            )
        )
    return fields


def parse_form(
    model: type[BaseModel], form: dict[str, Any]
) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """Turn submitted form values into a validated config dict, or field errors.

    Empty inputs of optional fields mean "automatic" (None); unchecked boxes mean False.
    """
    raw: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        annotation, optional = _unwrap_optional(info.annotation)
        kind, _choices, _step = _kind(annotation)
        if kind == "checkbox":
            raw[name] = form.get(name) in ("on", "true", "1", True)
            continue
        value = form.get(name)
        if isinstance(value, list):
            value = value[-1]
        value = "" if value is None else str(value).strip()
        if value == "":
            if optional:
                raw[name] = None
            continue
        if kind == "textarea":
            raw[name] = [line.strip() for line in value.splitlines() if line.strip()]
        else:
            raw[name] = value
    try:
        config = model.model_validate(raw)
    except ValidationError as exc:
        errors: dict[str, str] = {}
        for err in exc.errors():
            key = str(err["loc"][0]) if err["loc"] else "__all__"
            errors[key] = err["msg"]
        return None, errors
    return config.model_dump(mode="json"), {}


def changed_from_defaults(model: type[BaseModel], config: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``config`` that differ from the model defaults (what the user set)."""
    defaults = model().model_dump(mode="json")
    return {k: v for k, v in config.items() if defaults.get(k) != v}


def path_errors(config: dict[str, Any], task_folder: Path) -> dict[str, str]:
    """Errors for file settings that leave the task folder.

    Through the web, ``*_file`` settings name files inside the task folder and
    ``*_dir`` settings (server folders) cannot be set at all: paths from users never
    reach outside their roots.
    """
    errors: dict[str, str] = {}
    root = task_folder.resolve()
    for key, value in config.items():
        if value in (None, ""):
            continue
        if key.endswith("_dir"):
            errors[key] = "server folders are set by the administrator, not per task"
        elif key.endswith("_file"):
            target = (root / str(value)).resolve()
            if not target.is_relative_to(root) or not target.is_file():
                errors[key] = f"{value!r} is not a file of this task (upload it to the task first)"
    return errors
