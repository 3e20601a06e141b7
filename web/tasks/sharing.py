"""Sharing a task with groups, for viewing or for changing it."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, post
from litestar.enums import RequestEncodingType
from litestar.exceptions import ClientException, PermissionDeniedException
from litestar.params import Body
from litestar.response import Template
from sqlmodel import Session, select

from jobs.db import session_scope
from jobs.models import AccessLevel, Group, Membership, ShareLink, Task, TaskShare, User
from web.access import can_manage, get_task
from web.accounts.service import audit

FormData = Annotated[dict[str, Any], Body(media_type=RequestEncodingType.URL_ENCODED)]


def shareable_groups(session: Session, user: User) -> list[Group]:
    """Groups ``user`` may share with: all for administrators, their own otherwise."""
    query = select(Group).order_by(Group.name)
    if not user.is_admin:
        query = query.join(Membership, Membership.group_id == Group.id).where(
            Membership.user_id == user.id
        )
    return list(session.exec(query).all())


def sharing_context(session: Session, user: User, task: Task) -> dict[str, Any]:
    shares = session.exec(
        select(TaskShare, Group)
        .join(Group, Group.id == TaskShare.group_id)
        .where(TaskShare.task_id == task.id)
        .order_by(Group.name)
    ).all()
    links = session.exec(select(ShareLink).where(ShareLink.task_id == task.id)).all()
    return {
        "task": task,
        "links": links,
        "new_url": None,
        "shares": [{"group": group, "access": share.access.value} for share, group in shares],
        "groups": shareable_groups(session, user),
        "can_manage": can_manage(user, task),
        "owner": session.get(User, task.owner_id) if task.owner_id else None,
    }


def _managed_task(session: Session, request: Request, task_id: int) -> Task:
    task = get_task(session, request, task_id, "view")
    if not can_manage(request.user, task):
        raise PermissionDeniedException("only the owner or an administrator may share this task")
    return task


class SharingController(Controller):
    path = "/tasks/{task_id:int}/shares"

    @post("/", name="shares.add", status_code=200)
    async def add(self, request: Request, task_id: int, data: FormData) -> Template:
        with session_scope() as session:
            task = _managed_task(session, request, task_id)
            group_id = int(str(data.get("group_id", "0")) or 0)
            try:
                access = AccessLevel(str(data.get("access", "view")))
            except ValueError as exc:
                raise ClientException("access is 'view' or 'edit'") from exc
            if group_id not in {g.id for g in shareable_groups(session, request.user)}:
                raise ClientException("you can share only with groups you belong to")
            share = session.get(TaskShare, (task_id, group_id)) or TaskShare(
                task_id=task_id, group_id=group_id
            )
            share.access = access
            session.add(share)
            audit(
                session,
                request.user,
                "share",
                f"task:{task_id}",
                group=group_id,
                access=access.value,
            )
            session.commit()
            return Template(
                "tasks/_sharing.html", context=sharing_context(session, request.user, task)
            )

    @post("/{group_id:int}/delete", name="shares.remove", status_code=200)
    async def remove(self, request: Request, task_id: int, group_id: int) -> Template:
        with session_scope() as session:
            task = _managed_task(session, request, task_id)
            share = session.get(TaskShare, (task_id, group_id))
            if share is not None:
                session.delete(share)
                audit(session, request.user, "unshare", f"task:{task_id}", group=group_id)
                session.commit()
            return Template(
                "tasks/_sharing.html", context=sharing_context(session, request.user, task)
            )
