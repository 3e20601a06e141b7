"""The live event stream of a task over real HTTP: ids, and catching up after a reconnect."""

from __future__ import annotations

import json

import httpx

from tests.conftest import PASSWORD, live_client
from tests.web.test_tasks import fits_bytes


def read_events(client: httpx.Client, url: str, until_state: str | None, limit: int, headers=None):
    events = []
    with client.stream("GET", url, headers=headers or {}, timeout=60) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        current: dict = {}
        for line in stream.iter_lines():
            if not line:
                if "data" in current:
                    events.append(current)
                    if until_state and current["data"].get("state") == until_state:
                        break
                    if len(events) >= limit:
                        break
                current = {}
                continue
            field, _, value = line.partition(":")
            value = value.strip()
            if field == "data":
                current["data"] = json.loads(value)
            elif field in ("id", "event"):
                current[field] = value
    return events


def test_stream_resumes_after_the_last_event_id(live_server):
    client = live_client(live_server)
    task_id = client.post(
        "/tasks/upload",
        content=fits_bytes((200, 200), {"GAIN": 2.0}),
        headers={"x-filename": "a.fits", "accept": "application/json"},
    ).json()["id"]
    run = client.post(f"/tasks/{task_id}/steps/inspect/run", data={"mask_cosmics": "on"})
    assert run.status_code in (200, 201)
    url = f"/tasks/{task_id}/events"
    everything = read_events(client, url, until_state="done", limit=10_000)
    ids = [e["id"] for e in everything]
    assert len(ids) == len(set(ids)) and len(ids) > 3
    assert {e["event"] for e in everything} >= {"state", "log", "progress"}
    # A client that saw the first three events gets exactly the rest, by header or query.
    rest = read_events(
        client, url, until_state="done", limit=10_000, headers={"Last-Event-ID": ids[2]}
    )
    assert [e["id"] for e in rest] == ids[3:]
    rest_q = read_events(client, f"{url}?after={ids[2]}", until_state="done", limit=10_000)
    assert [e["id"] for e in rest_q] == ids[3:]
    assert client.get("/tasks/424242/events").status_code == 404
    client.close()


def test_stream_is_refused_to_those_who_may_not_see_the_task(live_server):
    owner = live_client(live_server)
    task_id = owner.post(
        "/tasks/upload",
        content=fits_bytes((64, 64)),
        headers={"x-filename": "a.fits", "accept": "application/json"},
    ).json()["id"]
    owner.post("/admin/users", data={"username": "stranger", "password": PASSWORD})
    stranger = live_client(live_server, "stranger")
    assert stranger.get(f"/tasks/{task_id}/events").status_code == 404
    anonymous = httpx.Client(base_url=live_server)
    response = anonymous.get(f"/tasks/{task_id}/events", headers={"accept": "text/event-stream"})
    assert response.status_code in (302, 303, 401)
    with owner.stream("GET", f"/tasks/{task_id}/events") as stream:
        assert stream.status_code == 200
    for client in (owner, stranger, anonymous):
        client.close()
