"""JSON API: create tasks, set config, run and cancel steps, read state and results.

Every handler loads tasks through :mod:`web.access`, like the pages.
"""

from __future__ import annotations

import re
import shutil
from typing import Any

from litestar import Controller, Request, delete, get, post
from litestar.exceptions import ClientException, PermissionDeniedException
from pydantic import BaseModel, ValidationError
from sqlmodel import col, select

from jobs import runner
from jobs.candidates import cutout_name
from jobs.db import session_scope
from jobs.models import Candidate, RunState, StepRun, Task
from jobs.presets import PresetError, preset_inputs
from jobs.settings import get_settings
from jobs.storage import list_task_files, task_dir
from jobs.tasks import FitsInputError, create_task, delete_task, duplicate_task
from pipeline.fitsio import write_task_image
from pipeline.steps import STEPS, get_step
from web.access import can_manage, get_task, referenced_task_errors, visible_tasks_query
from web.accounts.service import audit
from web.candidates import vote_summary
from web.forms import path_errors
from web.tasks.routes import receive_upload

INPUT_FILE = re.compile(
    r"custom_template\.fits|custom_template_mask\.fits|custom_mask\.fits"
    r"|catalog[A-Za-z0-9_-]*\.(fits|ecsv|csv|vot)"
)


class StepRunOut(BaseModel):
    id: int
    step: str
    state: RunState
    queued_at: str
    started_at: str | None
    finished_at: str | None
    summary: dict[str, Any]
    warnings: list[str]
    error: str | None
    files: list[str]


class TaskOut(BaseModel):
    id: int
    title: str
    original_name: str
    state: str
    created: str
    config: dict[str, Any]
    steps: dict[str, StepRunOut]


def _run_out(run: StepRun) -> StepRunOut:
    iso = lambda value: value.isoformat() if value else None  # noqa: E731
    return StepRunOut(
        id=run.id,
        step=run.step,
        state=run.state,
        queued_at=iso(run.queued_at),
        started_at=iso(run.started_at),
        finished_at=iso(run.finished_at),
        summary=run.summary,
        warnings=run.warnings,
        error=run.error,
        files=run.files,
    )


def _task_out(session, task: Task) -> TaskOut:
    runs = runner.latest_runs(session, task.id)
    return TaskOut(
        id=task.id,
        title=task.title,
        original_name=task.original_name,
        state=task.state,
        created=task.created.isoformat(),
        config=task.config,
        steps={name: _run_out(run) for name, run in runs.items()},
    )


def _step(step: str):
    try:
        return get_step(step)
    except KeyError as exc:
        raise ClientException(str(exc), status_code=404) from exc


class ApiController(Controller):
    path = "/api"
    tags = ("tasks",)

    @get("/steps", summary="The steps, their availability and config schema")
    async def steps(self) -> list[dict[str, Any]]:
        return [
            {
                "name": s.name,
                "title": s.title,
                "available": s.available,
                "config_schema": s.config_model.model_json_schema() if s.available else None,
            }
            for s in STEPS
        ]

    @get("/tasks", summary="Tasks visible to the caller, newest first")
    async def list_tasks(self, request: Request, limit: int = 50, offset: int = 0) -> list[TaskOut]:
        limit = min(max(limit, 1), 500)
        with session_scope() as session:
            tasks = session.exec(
                visible_tasks_query(request).offset(max(offset, 0)).limit(limit)
            ).all()
            return [_task_out(session, t) for t in tasks]

    @post(
        "/tasks",
        summary="Create a task from a FITS file sent as the request body",
        request_max_body_size=None,
        status_code=201,
    )
    async def create(self, request: Request, preset: int | None = None) -> TaskOut:
        """The body is the FITS file; ``X-Filename`` names it; ``preset`` applies a preset."""
        name, path = await receive_upload(request, get_settings().max_upload_mb * 2**20)
        try:
            with session_scope() as session:
                config, extra = preset_inputs(session, preset)
                task = create_task(
                    session,
                    path,
                    original_name=name,
                    owner_id=request.user.id,
                    config=config,
                    extra_files=extra,
                )
                audit(session, request.user, "create_task", f"task:{task.id}", source="api")
                return _task_out(session, task)
        except FitsInputError as exc:
            raise ClientException(f"{name}: {exc}", status_code=422) from exc
        except PresetError as exc:
            raise ClientException(str(exc)) from exc
        finally:
            path.unlink(missing_ok=True)

    @get("/tasks/{task_id:int}", summary="A task with the latest run of each step")
    async def detail(self, request: Request, task_id: int) -> TaskOut:
        with session_scope() as session:
            return _task_out(session, get_task(session, request, task_id, "view"))

    @get("/tasks/{task_id:int}/files", summary="The task's files")
    async def files(self, request: Request, task_id: int) -> list[dict[str, Any]]:
        with session_scope() as session:
            get_task(session, request, task_id, "view")
        return list_task_files(task_id)

    @post(
        "/tasks/{task_id:int}/duplicate",
        summary="Copy a task (image, settings, inputs)",
        status_code=201,
    )
    async def duplicate(self, request: Request, task_id: int) -> TaskOut:
        with session_scope() as session:
            task = get_task(session, request, task_id, "view")
            copy = duplicate_task(session, task, request.user.id)
            audit(
                session,
                request.user,
                "duplicate_task",
                f"task:{copy.id}",
                source=task_id,
                via="api",
            )
            return _task_out(session, copy)

    @delete("/tasks/{task_id:int}", summary="Delete a task and its files", status_code=204)
    async def remove(self, request: Request, task_id: int) -> None:
        with session_scope() as session:
            task = get_task(session, request, task_id, "view")
            if not can_manage(request.user, task):
                raise PermissionDeniedException("only the owner or an administrator may delete it")
            if runner.active_run(session, task_id) is not None:
                raise ClientException("cancel the running step first", status_code=409)
            audit(session, request.user, "delete_task", f"task:{task_id}", via="api")
            delete_task(session, task)

    @post(
        "/tasks/{task_id:int}/files/{name:str}",
        summary="Add an input file to a task: a catalogue, a template or a mask",
        request_max_body_size=None,
        status_code=201,
    )
    async def add_file(self, request: Request, task_id: int, name: str) -> dict[str, Any]:
        """``custom_template.fits``, ``custom_template_mask.fits``, ``custom_mask.fits`` or a
        catalogue named ``catalog*.fits|ecsv|csv|vot`` (then set ``catalog_file`` to it)."""
        with session_scope() as session:
            get_task(session, request, task_id, "edit")
        if not INPUT_FILE.fullmatch(name):
            raise ClientException(
                "input files are custom_template.fits, custom_template_mask.fits, "
                "custom_mask.fits or catalog*.fits|ecsv|csv|vot"
            )
        _name, path = await receive_upload(request, get_settings().max_upload_mb * 2**20)
        target = task_dir(task_id) / name
        try:
            if name.endswith(".fits") and not name.startswith("catalog"):
                write_task_image(path, target)  # validated as an image
            else:
                shutil.move(path, target)
        except FitsInputError as exc:
            raise ClientException(f"{name}: {exc}", status_code=422) from exc
        finally:
            path.unlink(missing_ok=True)
        with session_scope() as session:
            audit(session, request.user, "add_file", f"task:{task_id}", name=name, via="api")
        return {"file": name, "size": target.stat().st_size}

    @get(
        "/tasks/{task_id:int}/candidates/{step:str}",
        summary="Candidates of a step with their votes (brightest first)",
    )
    async def candidates(self, request: Request, task_id: int, step: str) -> list[dict[str, Any]]:
        spec = _step(step)
        if spec.candidates is None:
            raise ClientException(
                f"the {spec.title.lower()} step finds no candidates", status_code=404
            )
        with session_scope() as session:
            get_task(session, request, task_id, "view")
            rows = session.exec(
                select(Candidate)
                .where(Candidate.task_id == task_id, Candidate.step == step)
                .order_by(col(Candidate.mag))
            ).all()
            votes = vote_summary(session, task_id, step, [r.key for r in rows], request.user.id)
        return [
            {
                "key": r.key,
                "ra": r.ra,
                "dec": r.dec,
                "mag": r.mag,
                "mag_err": r.mag_err,
                "sn": r.sn,
                "mjd": r.mjd,
                "cutout": cutout_name(task_id, step, r.key),
                "votes": dict(votes[r.key]["counts"]),
            }
            for r in rows
        ]

    @post(
        "/tasks/{task_id:int}/steps/{step:str}", summary="Set a step's config (optional) and run it"
    )
    async def run(
        self, request: Request, task_id: int, step: str, data: dict[str, Any] | None = None
    ) -> StepRunOut:
        spec = _step(step)
        if not spec.available:
            raise ClientException(
                f"the {spec.title.lower()} step is not built yet", status_code=409
            )
        with session_scope() as session:
            task = get_task(session, request, task_id, "edit")
            merged = {**task.config.get(step, {}), **(data or {})}
            try:
                config = spec.config_model.model_validate(merged).model_dump(mode="json")
                errors = path_errors(config, task_dir(task_id)) or referenced_task_errors(
                    session, request, config, task_id
                )
                if errors:
                    raise ClientException("invalid config", extra={"errors": errors})
            except ValidationError as exc:
                raise ClientException(
                    "invalid config", extra={"errors": exc.errors(include_url=False)}
                ) from exc
            task.config = {**task.config, step: config}
            session.add(task)
            session.commit()
            try:
                run = runner.queue_step(session, task, step)
            except runner.RunRefused as exc:
                raise ClientException(str(exc), status_code=409) from exc
            audit(
                session,
                request.user,
                "run_step",
                f"task:{task_id}",
                step=step,
                run=run.id,
                via="api",
            )
            return _run_out(run)

    @post("/tasks/{task_id:int}/steps/{step:str}/cancel", summary="Cancel the step's active run")
    async def cancel(self, request: Request, task_id: int, step: str) -> dict[str, Any]:
        _step(step)
        with session_scope() as session:
            get_task(session, request, task_id, "edit")
            run = runner.request_cancel(session, task_id, step)
            if run is None:
                raise ClientException("the step is not queued or running", status_code=409)
            audit(session, request.user, "cancel_step", f"task:{task_id}", step=step, via="api")
            return {"id": run.id, "state": run.state.value, "cancel_requested": True}
