"""The Dramatiq broker, set up explicitly with its middleware list.

With ``SKYSIFT_REDIS_URL`` set, messages go to Redis and separate ``skysift worker``
processes consume them. Without it (the embedded default) a StubBroker keeps them
in memory and an in-process :class:`dramatiq.Worker` runs them on threads.
"""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    CurrentMessage,
    Pipelines,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)

from jobs.settings import Settings, get_settings

QUEUE = "skysift"


def middleware() -> list[dramatiq.Middleware]:
    """Our middleware, in order; time limits come from each actor's options."""
    return [
        AgeLimit(),
        TimeLimit(),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        Retries(max_retries=0),
        CurrentMessage(),
    ]


def make_broker(settings: Settings) -> dramatiq.Broker:
    if settings.redis_url:
        from dramatiq.brokers.redis import RedisBroker

        return RedisBroker(url=settings.redis_url, middleware=middleware(), namespace="skysift")
    return StubBroker(middleware=middleware())


def setup_broker(settings: Settings | None = None) -> dramatiq.Broker:
    """Create the broker for ``settings``, make it global and bind our actors to it."""
    broker = make_broker(settings or get_settings())
    dramatiq.set_broker(broker)
    from jobs import actors

    for actor in actors.ACTORS:
        actor.broker = broker
        broker.declare_actor(actor)
    return broker


def start_worker(broker: dramatiq.Broker, threads: int) -> dramatiq.Worker:
    """Run actors in this process on ``threads`` threads.

    Used by the embedded default and by ``skysift worker``. Like Dramatiq's own CLI,
    it announces the process boot first: TimeLimit starts its timer thread then.
    """
    broker.emit_after("process_boot")
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=200)
    worker.start()
    return worker
