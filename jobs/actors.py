"""Dramatiq actors: one per pipeline step, named ``tasks.<step>``.

Actors are declared on a placeholder broker at import; :func:`jobs.broker.setup_broker`
binds them to the real one (Redis or the embedded StubBroker).
"""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.stub import StubBroker

from jobs.broker import QUEUE
from jobs.runner import MAX_RETRIES, execute
from jobs.settings import get_settings
from pipeline.steps import STEP_NAMES, ServiceUnavailable


def _retry_when(retries: int, exc: Exception) -> bool:
    # Only a service outage is worth a retry; bad input fails the same way again.
    return isinstance(exc, ServiceUnavailable) and retries < MAX_RETRIES


def _make_actor(step: str) -> dramatiq.Actor:
    def run_step_actor(task_id: int, step_name: str) -> None:
        execute(task_id, step_name)

    run_step_actor.__name__ = f"run_{step}"
    return dramatiq.actor(
        run_step_actor,
        actor_name=f"tasks.{step}",
        queue_name=QUEUE,
        broker=_PLACEHOLDER,
        time_limit=get_settings().step_time_limit_s * 1000,
        max_retries=MAX_RETRIES,
        retry_when=_retry_when,
        min_backoff=5000,
    )


_PLACEHOLDER = StubBroker()
ACTORS: list[dramatiq.Actor] = [_make_actor(step) for step in STEP_NAMES]
_BY_STEP = dict(zip(STEP_NAMES, ACTORS, strict=True))


def actor_for(step: str) -> dramatiq.Actor:
    return _BY_STEP[step]
