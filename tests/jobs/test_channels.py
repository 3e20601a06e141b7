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
