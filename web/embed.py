"""Read-only embed views for observatory dashboards, opened by revocable share links.

A link carries a random token (only its hash is stored). The embed page may be framed
only by the origins in ``SKYSIFT_EMBED_ORIGINS`` (Content-Security-Policy
frame-ancestors); every other page may be framed by SkySift itself only.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.exceptions import NotFoundException, PermissionDeniedException
from litestar.response import File, Template
from sqlmodel import Session, col, select

from jobs import runner
from jobs.candidates import cutout_name
from jobs.db import session_scope
from jobs.models import Candidate, ShareLink, Task, utcnow
from jobs.settings import get_settings
from jobs.storage import UnsafePathError, safe_join, task_dir
from pipeline.steps import STEPS
from web.access import can_manage, get_task
from web.accounts.service import audit

LINK_PREFIX = "skl_"
EMBED_CANDIDATES = 50  # brightest candidates listed in an embed view


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def frame_policy(embed: bool) -> str:
    origins = get_settings().embed_origins.split() if embed else []
    return "frame-ancestors " + " ".join(["'self'", *origins])


def add_frame_policy(response: Response) -> Response:
    """Pages may be framed by SkySift only, unless the handler set its own policy."""
    response.headers.setdefault("Content-Security-Policy", frame_policy(embed=False))
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


def _task_for_token(session: Session, token: str) -> Task:
    link = session.exec(select(ShareLink).where(ShareLink.token_hash == _digest(token))).first()
    task = session.get(Task, link.task_id) if link and not link.revoked else None
    if task is None:
        raise NotFoundException("this link does not exist or was revoked")
    return task


def links_context(session: Session, task: Task, new_url: str | None = None) -> dict[str, Any]:
    links = session.exec(
        select(ShareLink).where(ShareLink.task_id == task.id).order_by(col(ShareLink.id))
    ).all()
    return {"task": task, "links": links, "new_url": new_url}


class ShareLinkController(Controller):
    path = "/tasks/{task_id:int}/links"

    @post("/", name="links.create", status_code=200)
    async def create(self, request: Request, task_id: int) -> Template:
        with session_scope() as session:
            task = get_task(session, request, task_id, "view")
            if not can_manage(request.user, task):
                raise PermissionDeniedException("only the owner or an administrator may do this")
            token = LINK_PREFIX + secrets.token_urlsafe(24)
            link = ShareLink(task_id=task_id, token_hash=_digest(token), created_by=request.user.id)
            session.add(link)
            session.flush()
            audit(session, request.user, "create_link", f"task:{task_id}", link=link.id)
            url = f"{request.base_url}embed/{token}"
            return Template("tasks/_links.html", context=links_context(session, task, url))

    @post("/{link_id:int}/revoke", name="links.revoke", status_code=200)
    async def revoke(self, request: Request, task_id: int, link_id: int) -> Template:
        with session_scope() as session:
            task = get_task(session, request, task_id, "view")
            if not can_manage(request.user, task):
                raise PermissionDeniedException("only the owner or an administrator may do this")
            link = session.get(ShareLink, link_id)
            if link is None or link.task_id != task_id:
                raise NotFoundException("no such link")
            link.revoked = True
            session.add(link)
            audit(session, request.user, "revoke_link", f"task:{task_id}", link=link_id)
            return Template("tasks/_links.html", context=links_context(session, task))


class EmbedController(Controller):
    path = "/embed/{token:str}"

    @get("/", name="embed.task")
    async def task_view(self, token: str) -> Template:
        with session_scope() as session:
            task = _task_for_token(session, token)
            runs = runner.latest_runs(session, task.id)
            candidates = session.exec(
                select(Candidate)
                .where(Candidate.task_id == task.id)
                .order_by(col(Candidate.mag))
                .limit(EMBED_CANDIDATES)
            ).all()
        listed = [(c, cutout_name(task.id, c.step, c.key)) for c in candidates]
        return Template(
            "embed/task.html",
            context={
                "task": task,
                "runs": runs,
                "steps": STEPS,
                "token": token,
                "generated": utcnow(),
                "candidates": listed,
            },
            headers={"Content-Security-Policy": frame_policy(embed=True)},
        )

    @get("/files/{path:path}", name="embed.file")
    async def file(self, token: str, path: str) -> File:
        """Plots of the task (PNG only: the embed view is for pictures and numbers)."""
        with session_scope() as session:
            task = _task_for_token(session, token)
        try:
            target = safe_join(task_dir(task.id), path)
        except UnsafePathError as exc:
            raise NotFoundException(str(exc)) from exc
        if target.suffix.lower() != ".png" or not target.is_file():
            raise NotFoundException(f"{path} is not a plot of this task")
        return File(
            target,
            media_type="image/png",
            content_disposition_type="inline",
            headers={"Content-Security-Policy": frame_policy(embed=True)},
        )
