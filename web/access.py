"""The one access-check layer: every page, fragment, file, stream and API call loads
tasks through these functions.

Rules: administrators see and change everything; owners see and change their tasks;
members of a group a task is shared with see it, and change it if the share says
"edit". A task the requester may not see answers exactly like a missing one (404),
so ids cannot be probed.
"""

from __future__ import annotations

from typing import Literal

from litestar import Request
from litestar.exceptions import NotFoundException, PermissionDeniedException
from sqlalchemy import or_
from sqlmodel import Session, col, select

from jobs.models import AccessLevel, Membership, Task, TaskShare, User

Access = Literal["view", "edit"]


def request_user(request: Request | None) -> User | None:
    return request.scope.get("user") if request is not None else None


def _share_levels(session: Session, user: User, task_id: int) -> set[AccessLevel]:
    rows = session.exec(
        select(TaskShare.access)
        .join(Membership, Membership.group_id == TaskShare.group_id)
        .where(TaskShare.task_id == task_id, Membership.user_id == user.id)
    ).all()
    return set(rows)


def can_access(session: Session, user: User | None, task: Task, access: Access) -> bool:
    """Whether ``user`` may view or change ``task``."""
    if user is None:
        return False
    if user.is_admin or task.owner_id == user.id:
        return True
    levels = _share_levels(session, user, task.id)
    return AccessLevel.EDIT in levels if access == "edit" else bool(levels)


def can_manage(user: User | None, task: Task) -> bool:
    """Sharing and deleting are for the owner and administrators only."""
    return user is not None and (user.is_admin or task.owner_id == user.id)


def get_task(session: Session, request: Request | None, task_id: int, access: Access) -> Task:
    """The task, or 404 when it does not exist or the requester may not see it.

    Someone who may see the task but not change it gets 403 for a change.
    """
    user = request_user(request)
    task = session.get(Task, task_id)
    if task is None or not can_access(session, user, task, "view"):
        raise NotFoundException(f"task {task_id} does not exist")
    if access == "edit" and not can_access(session, user, task, "edit"):
        raise PermissionDeniedException(f"you may view task {task_id} but not change it")
    return task


def visible_tasks_query(request: Request | None):
    """A SELECT of the tasks the requester may see, newest first."""
    user = request_user(request)
    query = select(Task).order_by(col(Task.created).desc(), col(Task.id).desc())
    if user is None:
        return query.where(col(Task.id) == -1)
    if user.is_admin:
        return query
    shared = (
        select(TaskShare.task_id)
        .join(Membership, Membership.group_id == TaskShare.group_id)
        .where(Membership.user_id == user.id)
    )
    return query.where(or_(col(Task.owner_id) == user.id, col(Task.id).in_(shared)))


def referenced_task_errors(
    session: Session, request: Request | None, config: dict, own_id: int
) -> dict[str, str]:
    """Errors for settings naming other tasks (``other_tasks``) the requester may not see."""
    errors: dict[str, str] = {}
    for key, value in config.items():
        if not key.endswith("_tasks") or not value:
            continue
        for task_id in value:
            task = session.get(Task, int(task_id))
            if (
                task is None
                or task.id == own_id
                or not can_access(session, request_user(request), task, "view")
            ):
                errors[key] = f"task {task_id} does not exist or is not visible to you"
                break
    return errors
