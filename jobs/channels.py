"""Per-task event channels: log lines, progress and state changes, with ids for replay.

Two implementations behind one interface: memory (embedded default, one process)
and Redis streams (deployments, many processes). Each event gets a monotonically
increasing id; a reader passes the last id it saw and receives everything after it,
so a browser that reconnects catches up.

Web processes wait for events with :meth:`Channel.wait_events`, a coroutine, so one
process holds hundreds of open streams without a thread each.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

MAX_EVENTS_PER_TASK = 5000
MAX_OPEN_STREAMS = 5000  # Redis connections one web process may hold for waiting streams
SOCKET_TIMEOUT = 60.0  # s; above any XREAD block (redis-py 8 defaults to 5 s, below our 15 s)


@dataclass(frozen=True)
class Event:
    id: str
    kind: str  # "log", "progress", "state"
    data: dict[str, Any]


class Channel(Protocol):
    def publish(self, task_id: int, kind: str, data: dict[str, Any]) -> str: ...

    def read(self, task_id: int, after: str | None, timeout: float) -> list[Event]: ...

    async def wait_events(self, task_id: int, after: str | None, timeout: float) -> list[Event]: ...


def _id_key(event_id: str) -> tuple[int, int]:
    first, _, second = event_id.partition("-")
    return int(first), int(second or 0)


class MemoryChannel:
    """Events kept in process memory; readers block on a condition until new events arrive."""

    def __init__(self) -> None:
        self._events: dict[int, deque[Event]] = {}
        self._cond = threading.Condition()
        self._counter = 0
        # coroutines waiting for a task's next event, each woken on its own loop
        self._waiters: dict[int, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}

    def publish(self, task_id: int, kind: str, data: dict[str, Any]) -> str:
        with self._cond:
            self._counter += 1
            # Same shape as Redis stream ids so clients need not care which channel is used.
            event = Event(f"{int(time.time() * 1000)}-{self._counter}", kind, data)
            self._events.setdefault(task_id, deque(maxlen=MAX_EVENTS_PER_TASK)).append(event)
            self._cond.notify_all()
            waiters = list(self._waiters.get(task_id, ()))
        for loop, woken in waiters:
            with contextlib.suppress(RuntimeError):  # a closed loop: its waiter is gone
                loop.call_soon_threadsafe(woken.set)
        return event.id

    def _after(self, task_id: int, after: str | None) -> list[Event]:
        events = self._events.get(task_id, ())
        if after is None:
            return list(events)
        # The counter part alone orders events within this process.
        last = _id_key(after)[1]
        return [e for e in events if _id_key(e.id)[1] > last]

    def read(self, task_id: int, after: str | None, timeout: float) -> list[Event]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = self._after(task_id, after)
                remaining = deadline - time.monotonic()
                if found or remaining <= 0:
                    return found
                self._cond.wait(remaining)

    async def wait_events(self, task_id: int, after: str | None, timeout: float) -> list[Event]:
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        with self._cond:  # register before looking, so no event slips in between
            self._waiters.setdefault(task_id, set()).add(waiter)
            found = self._after(task_id, after)
        try:
            if not found:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter[1].wait(), timeout)
                with self._cond:
                    found = self._after(task_id, after)
        finally:
            with self._cond:
                self._waiters[task_id].discard(waiter)
                if not self._waiters[task_id]:
                    del self._waiters[task_id]
        return found


class RedisChannel:
    """Events in one Redis stream per task, trimmed to the newest events."""

    def __init__(self, url: str) -> None:
        import redis

        self._url = url
        self._redis = redis.Redis.from_url(
            url, decode_responses=True, socket_timeout=SOCKET_TIMEOUT
        )
        self._async: tuple[asyncio.AbstractEventLoop, Any] | None = None

    @staticmethod
    def _key(task_id: int) -> str:
        return f"skysift:events:{task_id}"

    def publish(self, task_id: int, kind: str, data: dict[str, Any]) -> str:
        return self._redis.xadd(
            self._key(task_id),
            {"kind": kind, "data": json.dumps(data, default=str)},
            maxlen=MAX_EVENTS_PER_TASK,
            approximate=True,
        )

    def read(self, task_id: int, after: str | None, timeout: float) -> list[Event]:
        reply = self._redis.xread(
            {self._key(task_id): after or "0-0"}, block=max(int(timeout * 1000), 1)
        )
        return self._events(reply)

    async def wait_events(self, task_id: int, after: str | None, timeout: float) -> list[Event]:
        reply = await self._async_client().xread(
            {self._key(task_id): after or "0-0"}, block=max(int(timeout * 1000), 1)
        )
        return self._events(reply)

    def _async_client(self):
        """An asyncio client bound to the running loop (one blocking XREAD per stream)."""
        import redis.asyncio

        loop = asyncio.get_running_loop()
        if self._async is None or self._async[0] is not loop:
            client = redis.asyncio.Redis.from_url(
                self._url,
                decode_responses=True,
                max_connections=MAX_OPEN_STREAMS,
                socket_timeout=SOCKET_TIMEOUT,
            )
            self._async = (loop, client)
        return self._async[1]

    @staticmethod
    def _events(reply) -> list[Event]:
        events: list[Event] = []
        for _stream, items in reply or ():
            for event_id, fields in items:
                events.append(Event(event_id, fields["kind"], json.loads(fields["data"])))
        return events


_channel: Channel | None = None
_lock = threading.Lock()


def get_channel() -> Channel:
    """The channel for this process, chosen from the settings."""
    global _channel
    with _lock:
        if _channel is None:
            from jobs.settings import get_settings

            url = get_settings().redis_url
            _channel = RedisChannel(url) if url else MemoryChannel()
        return _channel


def reset_channel(channel: Channel | None = None) -> None:
    """Forget the current channel (tests and reconfiguration)."""
    global _channel
    with _lock:
        _channel = channel
