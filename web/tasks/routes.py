"""Task pages: list, upload, demo, the task page and its step sections."""

from __future__ import annotations

import asyncio
import math
import re
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import unquote

from litestar import Controller, Request, get, post
from litestar.enums import RequestEncodingType
from litestar.exceptions import ClientException, HTTPException, PermissionDeniedException
from litestar.params import Body
from litestar.response import Redirect, Template
from sqlalchemy import func, or_
from sqlmodel import Session, col, select

from jobs import runner
from jobs.db import session_scope
from jobs.footprints import covering_task_ids
from jobs.models import Task
from jobs.presets import PresetError, preset_inputs
from jobs.settings import get_settings
from jobs.storage import task_dir
from jobs.tasks import FitsInputError, create_task, delete_task, duplicate_task, staging_file
from pipeline.fitsio import write_task_image
from pipeline.simulate import SkyConfig, simulate_sky, write_simulation
from pipeline.steps import get_step
from pipeline.templates.sources import CUSTOM_TEMPLATE_FILE
from web.access import can_manage, get_task, referenced_task_errors, visible_tasks_query
from web.accounts.service import audit
from web.forms import changed_from_defaults, parse_form, path_errors
from web.presets import all_presets, preset_id_from
from web.tasks.sharing import sharing_context
from web.tasks.views import all_sections, step_section

DEMO_SIZE = 1024
DEMO_CATALOG, DEMO_TEMPLATE, DEMO_TRUTH = (
    "demo_catalog.fits",
    "demo_template.fits",
    "demo_truth.json",
)
FormData = Annotated[dict[str, Any], Body(media_type=RequestEncodingType.URL_ENCODED)]


class UploadTooLarge(HTTPException):
    status_code = 413


async def receive_upload(request: Request, limit_bytes: int) -> tuple[str, Any]:
    """Stream the request body into a staging file, refusing it past ``limit_bytes``."""
    declared = request.headers.get("content-length")
    if declared and int(declared) > limit_bytes:
        raise UploadTooLarge(f"the file is larger than the {limit_bytes // 2**20} MiB upload limit")
    name = unquote(request.headers.get("x-filename", "") or request.query_params.get("name", ""))
    if not name:
        raise ClientException("the upload has no file name (X-Filename header)")
    path = staging_file()
    size = 0
    try:
        with path.open("wb") as out:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit_bytes:
                    raise UploadTooLarge(
                        f"the file is larger than the {limit_bytes // 2**20} MiB upload limit"
                    )
                out.write(chunk)
        if size == 0:
            raise ClientException("the uploaded file is empty")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return name, path


def _step_or_404(step: str):
    try:
        return get_step(step)
    except KeyError as exc:
        raise ClientException(str(exc), status_code=404) from exc


POSITION_TOKEN = re.compile(r"^at:([0-9.]+),([-+]?[0-9.]+)$")  # at:RA,Dec in degrees


def _filtered(session: Session, query, text: str):
    """Tasks matching every word: title, file name, state, id, or ``at:RA,Dec`` (covering)."""
    for token in text.split():
        position = POSITION_TOKEN.match(token)
        if position:
            ra, dec = float(position[1]), float(position[2])
            if not (0 <= ra < 360 and -90 <= dec <= 90):
                raise ClientException("at:RA,Dec takes RA 0–360 and Dec −90–+90 degrees")
            ids = covering_task_ids(session, ra, dec, query.with_only_columns(col(Task.id)))
            query = query.where(col(Task.id).in_(ids))
            continue
        like = f"%{token}%"
        matches = [
            col(Task.title).ilike(like),
            col(Task.original_name).ilike(like),
            col(Task.state).ilike(like),
        ]
        if token.isdigit():
            matches.append(col(Task.id) == int(token))
        query = query.where(or_(*matches))
    return query


def task_page_context(session: Session, request: Request, task: Task) -> dict[str, Any]:
    runner.fail_stale_runs(task.id)
    runs = runner.latest_runs(session, task.id)
    return {
        **sharing_context(session, request.user, task),
        "sections": all_sections(task, runs),
        "runs": runs,
    }


def render_section(
    session: Session,
    task: Task,
    step: str,
    errors: dict[str, str] | None = None,
    form_values: dict[str, Any] | None = None,
    message: str | None = None,
) -> Template:
    runs = runner.latest_runs(session, task.id)
    from jobs.storage import list_task_files

    files = {f["name"]: f for f in list_task_files(task.id)}
    section = step_section(task, get_step(step), runs, files, errors, form_values)
    return Template(
        "tasks/_step.html", context={"task": task, "section": section, "message": message}
    )


class TaskController(Controller):
    path = "/tasks"

    @get("/", name="tasks.list")
    async def list_tasks(self, request: Request, q: str = "", page: int = 1) -> Template:
        per_page = get_settings().tasks_per_page
        with session_scope() as session:
            query = _filtered(session, visible_tasks_query(request), q)
            total = session.exec(select(func.count()).select_from(query.subquery())).one()
            pages = max(1, math.ceil(total / per_page))
            page = min(max(page, 1), pages)
            tasks = session.exec(query.offset((page - 1) * per_page).limit(per_page)).all()
            presets = all_presets(session)
        context = {
            "tasks": tasks,
            "q": q,
            "page": page,
            "pages": pages,
            "total": total,
            "presets": presets,
        }
        partial = (
            request.headers.get("hx-request") and request.headers.get("hx-target") == "task-list"
        )
        return Template("tasks/_list.html" if partial else "tasks/list.html", context=context)

    @post("/upload", name="tasks.upload", request_max_body_size=None, status_code=201)
    async def upload(self, request: Request) -> dict[str, Any]:
        """Create a task from a FITS file sent as the raw request body (drag-and-drop/picker)."""
        settings = get_settings()
        name, path = await receive_upload(request, settings.max_upload_mb * 2**20)
        title = unquote(request.headers.get("x-title", ""))[:250]
        preset_id = preset_id_from(request.headers.get("x-preset"))
        try:
            with session_scope() as session:
                config, extra = preset_inputs(session, preset_id)
                task = create_task(
                    session,
                    path,
                    original_name=name,
                    title=title,
                    owner_id=request.user.id,
                    config=config,
                    extra_files=extra,
                )
                audit(session, request.user, "create_task", f"task:{task.id}", source="upload")
                task_id = task.id
        except FitsInputError as exc:
            raise ClientException(f"{name}: {exc}", status_code=422) from exc
        except PresetError as exc:
            raise ClientException(str(exc)) from exc
        finally:
            path.unlink(missing_ok=True)
        return {"id": task_id, "url": f"/tasks/{task_id}"}

    @post(
        "/{task_id:int}/template",
        name="tasks.template",
        request_max_body_size=None,
        status_code=201,
    )
    async def upload_template(self, request: Request, task_id: int) -> dict[str, Any]:
        """Store a user's template image for the subtraction step (``template: custom``)."""
        with session_scope() as session:
            get_task(session, request, task_id, "edit")
        name, path = await receive_upload(request, get_settings().max_upload_mb * 2**20)
        try:
            write_task_image(path, task_dir(task_id) / CUSTOM_TEMPLATE_FILE)
        except FitsInputError as exc:
            raise ClientException(f"{name}: {exc}", status_code=422) from exc
        finally:
            path.unlink(missing_ok=True)
        with session_scope() as session:
            audit(session, request.user, "upload_template", f"task:{task_id}", name=name)
        return {"file": CUSTOM_TEMPLATE_FILE, "url": f"/tasks/{task_id}"}

    @post("/demo", name="tasks.demo")
    async def demo(self, request: Request) -> Redirect:
        """Create a task from a simulated sky, so the pipeline can be tried offline."""
        seed = secrets.randbelow(100_000)
        sky = await asyncio.to_thread(simulate_sky, SkyConfig(size=DEMO_SIZE), seed=seed)
        staging = Path(tempfile.mkdtemp(dir=staging_file().parent))
        try:
            paths = write_simulation(sky, staging)
            with session_scope() as session:
                task = create_task(
                    session,
                    paths["image"],
                    original_name=f"simulated_sky_{seed}.fits",
                    title=f"Demo: simulated sky (seed {seed})",
                    source="demo",
                    owner_id=request.user.id,
                    config={"photometry": {"catalog": "ps1", "catalog_file": DEMO_CATALOG}},
                    extra_files={
                        DEMO_CATALOG: paths["catalog"],
                        DEMO_TEMPLATE: paths["template"],
                        DEMO_TRUTH: paths["truth_json"],
                    },
                )
                audit(session, request.user, "create_task", f"task:{task.id}", source="demo")
                task_id = task.id
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return Redirect(f"/tasks/{task_id}")

    @get("/{task_id:int}", name="tasks.detail")
    async def detail(self, request: Request, task_id: int) -> Template:
        with session_scope() as session:
            task = get_task(session, request, task_id, "view")
            return Template("tasks/detail.html", context=task_page_context(session, request, task))

    @post("/{task_id:int}/title", name="tasks.title")
    async def set_title(self, request: Request, task_id: int, data: FormData) -> Template:
        with session_scope() as session:
            task = get_task(session, request, task_id, "edit")
            task.title = str(data.get("title", ""))[:250]
            session.add(task)
            audit(session, request.user, "change_title", f"task:{task_id}", title=task.title)
            session.commit()
            return Template("tasks/_title.html", context={"task": task})

    @post("/{task_id:int}/delete", name="tasks.delete")
    async def delete(self, request: Request, task_id: int) -> Redirect:
        with session_scope() as session:
            task = get_task(session, request, task_id, "view")
            if not can_manage(request.user, task):
                raise PermissionDeniedException("only the owner or an administrator may delete it")
            if runner.active_run(session, task_id) is not None:
                raise ClientException("cancel the running step before deleting the task")
            audit(session, request.user, "delete_task", f"task:{task_id}", title=task.title)
            delete_task(session, task)
        return Redirect("/tasks/")

    @post("/{task_id:int}/duplicate", name="tasks.duplicate")
    async def duplicate(self, request: Request, task_id: int) -> Redirect:
        """A copy of the task (image, settings, masks, template) owned by the requester."""
        with session_scope() as session:
            task = get_task(session, request, task_id, "view")
            copy = duplicate_task(session, task, request.user.id)
            audit(session, request.user, "duplicate_task", f"task:{copy.id}", source=task_id)
            copy_id = copy.id
        return Redirect(f"/tasks/{copy_id}")

    @get("/{task_id:int}/steps/{step:str}", name="tasks.step")
    async def step_fragment(self, request: Request, task_id: int, step: str) -> Template:
        _step_or_404(step)
        with session_scope() as session:
            task = get_task(session, request, task_id, "view")
            return render_section(session, task, step)

    @post("/{task_id:int}/steps/{step:str}/run", name="tasks.run")
    async def run_step(self, request: Request, task_id: int, step: str, data: FormData) -> Template:
        """Save the step's form as the task config and queue the step."""
        spec = _step_or_404(step)
        with session_scope() as session:
            task = get_task(session, request, task_id, "edit")
            if not spec.available:
                return render_section(session, task, step, message="This step is not built yet.")
            config, errors = parse_form(spec.config_model, data)
            errors = (
                errors
                or path_errors(config, task_dir(task_id))
                or referenced_task_errors(session, request, config, task_id)
            )
            if errors:
                return render_section(session, task, step, errors=errors, form_values=data)
            task.config = {**task.config, step: config}
            session.add(task)
            session.commit()
            try:
                run = runner.queue_step(session, task, step)
            except runner.RunRefused as exc:
                return render_section(session, task, step, message=str(exc))
            audit(
                session,
                request.user,
                "run_step",
                f"task:{task_id}",
                step=step,
                run=run.id,
                changed=changed_from_defaults(spec.config_model, config),
            )
            session.commit()
            return render_section(session, task, step)

    @post("/{task_id:int}/steps/{step:str}/cancel", name="tasks.cancel")
    async def cancel_step(self, request: Request, task_id: int, step: str) -> Template:
        _step_or_404(step)
        with session_scope() as session:
            task = get_task(session, request, task_id, "edit")
            run = runner.request_cancel(session, task_id, step)
            message = None if run else "Nothing to cancel: the step is not running."
            if run:
                audit(session, request.user, "cancel_step", f"task:{task_id}", step=step)
                session.commit()
            return render_section(session, task, step, message=message)


@get("/", name="home")
async def home() -> Redirect:
    return Redirect("/tasks/")
