"""Server-sent events: one stream per task page, resumable from the last event id."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from litestar import Request, get
from litestar.response import ServerSentEvent, ServerSentEventMessage

from jobs.channels import get_channel
from jobs.db import session_scope
from web.access import get_task

WAIT_SECONDS = 15.0  # also the keep-alive interval, below common proxy idle timeouts


@get("/tasks/{task_id:int}/events", name="tasks.events")
async def task_events(request: Request, task_id: int, after: str | None = None) -> ServerSentEvent:
    """Stream a task's events; ``Last-Event-ID`` or ``?after=`` resumes after a known id."""
    with session_scope() as session:
        get_task(session, request, task_id, "view")
    last = request.headers.get("last-event-id") or after or None
    channel = get_channel()

    async def stream() -> AsyncIterator[ServerSentEventMessage]:
        nonlocal last
        while True:
            events = await channel.wait_events(task_id, last, WAIT_SECONDS)
            if not events:
                yield ServerSentEventMessage(data=None, comment="keep-alive")
                continue
            for event in events:
                last = event.id
                yield ServerSentEventMessage(
                    data=json.dumps(event.data, default=str), event=event.kind, id=event.id
                )

    return ServerSentEvent(
        stream(), headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
