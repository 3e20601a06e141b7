"""The one access-check layer: every page, fragment, file, stream and API call loads
tasks through these functions.

Accounts arrive with the collaboration issue; until then the portal is single-user
and every request acts as the local operator, so the checks reduce to existence.
The call sites already pass the request, so adding per-user rules changes only this
module.
"""

from __future__ import annotations

from typing import Literal

from litestar import Request
from litestar.exceptions import NotFoundException
from sqlmodel import Session, col, select

from jobs.models import Task

Access = Literal["view", "edit"]


def can_access(request: Request | None, task: Task, access: Access) -> bool:
    """Whether the requester may view or change ``task``."""
    return True


def get_task(session: Session, request: Request | None, task_id: int, access: Access) -> Task:
    """The task, or 404 when it does not exist or the requester may not ``access`` it.

    A task the requester may not see answers exactly like a missing one, so ids
    cannot be probed.
    """
    task = session.get(Task, task_id)
    if task is None or not can_access(request, task, access):
        raise NotFoundException(f"task {task_id} does not exist")
    return task


def visible_tasks_query(request: Request | None):
    """A SELECT of the tasks the requester may see, newest first."""
    return select(Task).order_by(col(Task.created).desc(), col(Task.id).desc())
