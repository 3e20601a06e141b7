"""Per-task event channels: log lines, progress and state changes, with ids for replay.

Two implementations behind one interface: memory (embedded default, one process)
and Redis streams (deployments, many processes). Each event gets a monotonically
increasing id; a reader passes the last id it saw and receives everything after it,
so a browser that reconnects catches up.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

MAX_EVENTS_PER_TASK = 5000


@dataclass(frozen=True)
class Event:
    id: str
    kind: str  # "log", "progress", "state"
    data: dict[str, Any]


class Channel(Protocol):
    def publish(self, task_id: int, kind: str, data: dict[str, Any]) -> str: ...

    def read(self, task_id: int, after: str | None, timeout: float) -> list[Event]: ...


def _id_key(event_id: str) -> tuple[int, int]:
    first, _, second = event_id.partition("-")
    return int(first), int(second or 0)


class MemoryChannel:
    """Events kept in process memory; readers block on a condition until new events arrive."""

    def __init__(self) -> None:
        self._events: dict[int, deque[Event]] = {}
        self._cond = threading.Condition()
        self._counter = 0

    def publish(self, task_id: int, kind: str, data: dict[str, Any]) -> str:
        with self._cond:
            self._counter += 1
            # Same shape as Redis stream ids so clients need not care which channel is used.
            event = Event(f"{int(time.time() * 1000)}-{self._counter}", kind, data)
            self._events.setdefault(task_id, deque(maxlen=MAX_EVENTS_PER_TASK)).append(event)
            self._cond.notify_all()
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


class RedisChannel:
    """Events in one Redis stream per task, trimmed to the newest events."""

    def __init__(self, url: str) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, decode_responses=True)

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
