"""Presets: list, save a task's settings as a preset, delete."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.enums import RequestEncodingType
from litestar.exceptions import ClientException, NotFoundException, PermissionDeniedException
from litestar.params import Body
from litestar.response import Redirect, Template
from sqlmodel import Session, select

from jobs.db import session_scope
from jobs.models import Preset
from jobs.presets import PresetError, delete_preset, preset_from_task
from web.access import get_task
from web.accounts.service import audit

FormData = Annotated[dict[str, Any], Body(media_type=RequestEncodingType.URL_ENCODED)]


def all_presets(session: Session) -> list[Preset]:
    return list(session.exec(select(Preset).order_by(Preset.name)).all())


def preset_id_from(value: Any) -> int | None:
    """A preset id from a form field or header ('' or missing: none)."""
    text = str(value or "").strip()
    if not text:
        return None
    if not text.isdigit():
        raise ClientException(f"preset {text!r} is not a preset id")
    return int(text)


class PresetController(Controller):
    path = "/presets"

    @get("/", name="presets")
    async def list_presets(self) -> Template:
        with session_scope() as session:
            return Template("presets.html", context={"presets": all_presets(session)})

    @post("/from-task/{task_id:int}", name="presets.from_task")
    async def from_task(self, request: Request, task_id: int, data: FormData) -> Redirect:
        with session_scope() as session:
            task = get_task(session, request, task_id, "view")
            try:
                preset = preset_from_task(
                    session,
                    task,
                    str(data.get("name", "")),
                    str(data.get("description", "")),
                    request.user.id,
                )
            except PresetError as exc:
                raise ClientException(str(exc)) from exc
            audit(
                session,
                request.user,
                "create_preset",
                f"preset:{preset.id}",
                task=task_id,
                name=preset.name,
            )
        return Redirect("/presets/", status_code=303)

    @post("/{preset_id:int}/delete", name="presets.delete")
    async def delete(self, request: Request, preset_id: int) -> Redirect:
        with session_scope() as session:
            preset = session.get(Preset, preset_id)
            if preset is None:
                raise NotFoundException("no such preset")
            if not (request.user.is_admin or preset.owner_id == request.user.id):
                raise PermissionDeniedException("only its creator or an administrator may do this")
            audit(session, request.user, "delete_preset", f"preset:{preset_id}", name=preset.name)
            delete_preset(session, preset)
        return Redirect("/presets/", status_code=303)
