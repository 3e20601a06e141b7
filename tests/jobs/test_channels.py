"""Event channels: ids, replay after a given id, blocking reads; memory and Redis."""

from __future__ import annotations

import threading
import time

import pytest

from jobs.channels import MemoryChannel, RedisChannel
from tests.services import redis_url


@pytest.fixture(params=["memory", "redis"])
def channel(request):
    if request.param == "memory":
        return MemoryChannel()
    return RedisChannel(redis_url())


def test_events_replay_after_the_last_seen_id(channel):
    ids = [channel.publish(7, "log", {"line": f"line {i}"}) for i in range(5)]
    assert len(set(ids)) == 5
    everything = channel.read(7, None, timeout=0.1)
    assert [e.data["line"] for e in everything] == [f"line {i}" for i in range(5)]
    missed = channel.read(7, ids[2], timeout=0.1)
    assert [e.id for e in missed] == ids[3:]
    assert channel.read(7, ids[-1], timeout=0.1) == []
    assert channel.read(8, None, timeout=0.1) == []  # other tasks see nothing


def test_a_blocked_reader_wakes_on_publish(channel):
    last = channel.publish(3, "state", {"state": "queued"})
    found = []

    def reader():
        found.extend(channel.read(3, last, timeout=5))

    thread = threading.Thread(target=reader)
    thread.start()
    time.sleep(0.2)
    channel.publish(3, "progress", {"fraction": 0.5})
    thread.join(5)
    assert [e.kind for e in found] == ["progress"]


def test_hundreds_of_async_waiters_wake_on_one_publish(channel):
    """The web process holds every open stream as a coroutine, not a thread."""
    import asyncio

    last = channel.publish(11, "state", {"state": "queued"})

    async def scenario():
        waiters = [
            asyncio.create_task(channel.wait_events(11, last, timeout=10)) for _ in range(300)
        ]
        await asyncio.sleep(0.3)  # all blocked
        assert not any(w.done() for w in waiters)
        threading.Thread(target=channel.publish, args=(11, "log", {"line": "hello"})).start()
        results = await asyncio.wait_for(asyncio.gather(*waiters), timeout=5)
        quiet = await channel.wait_events(12, None, timeout=0.2)
        return results, quiet

    results, quiet = asyncio.run(scenario())
    assert all([e.data["line"] for e in found] == ["hello"] for found in results)
    assert quiet == []


def test_a_quiet_stream_waits_past_the_redis_client_timeout():
    """redis-py's default socket timeout (5 s) must not cut a longer blocking wait."""
    import asyncio

    channel = RedisChannel(redis_url())
    started = time.monotonic()
    assert asyncio.run(channel.wait_events(424242, None, timeout=6.0)) == []
    assert channel.read(424242, None, timeout=6.0) == []
    assert time.monotonic() - started >= 11.5
