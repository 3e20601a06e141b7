"""Collaboration-portal figures (issue 8): page throughput with 10 000 tasks in PostgreSQL,
time to first byte and weight of a candidate vetting page, and 200 SSE clients held by one
web process.

A deployment-mode ``skysift serve`` (PostgreSQL, Redis; no embedded worker) runs in a
subprocess on a fresh database ``skysift_bench_<random>`` that is dropped at the end. The
bench process fills it with bulk inserts: users and groups, 10 000 tasks (some shared with
groups), their inspection and photometry runs, indexed candidates and votes. The tasks whose
pages are requested get real folders: one simulated 1024² sky is run once through the
inspection, photometry and subtraction steps, and that folder is hard-linked to each of them,
with its candidates indexed and its runs stored as done, as the worker would leave them.

Pages are fetched with an async httpx client signed in as an administrator and as a normal
member (who sees own tasks and those shared with their groups), at concurrency 1 and 8. The
candidate vetting page is then weighed (HTML, CSS, JS, thumbnails) and its load on a slow link
estimated. Last, 200 task-event streams are opened at once (failures counted), then 200 are
held idle past the server's keep-alive interval, one event is published per task in Redis and
its delivery to every stream timed, with the web process's memory before and while holding them.

Run: ``uv run python bench/bench_collaboration.py`` (PostgreSQL at 127.0.0.1:5432 with trust
auth for ``postgres``, Redis at 127.0.0.1:6379; see ``--help``). Prints tables.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import itertools
import json
import logging
import os
import random
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
PG_SERVER = "postgres@127.0.0.1:5432"
REDIS_URL = "redis://127.0.0.1:6379/13"
STEP = "subtraction"  # the candidate step whose vetting pages are measured
# Lighthouse's "Slow 4G" throttling profile: 1.6 Mbit/s down, 150 ms round trip.
SLOW_LINK_BITS_PER_S = 1.6e6
SLOW_LINK_RTT_S = 0.150
CONFIGS = {  # the steps run on the simulated task, as its StepRun rows record them
    "inspect": {},
    "photometry": {"catalog": "ps1", "catalog_file": "catalog.fits"},
    STEP: {"template": "custom", "template_gain": 4.0},
}
FIELDS = ("NGC 2403", "M 101", "SN 2026abc", "GRB 261102A", "AT 2026xyz", "M 31", "NGC 6946")
FILTERS = ("g", "r", "i", "clear")


# ---------------------------------------------------------------------------- services


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mib(pid: int) -> tuple[float, float, int]:
    """Resident and peak resident memory (MiB) and thread count of a process."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return (
        int(fields["VmRSS"].split()[0]) / 1024,
        int(fields["VmHWM"].split()[0]) / 1024,
        int(fields["Threads"]),
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (load-independent cost of its work)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def create_database(server: str) -> str:
    import psycopg

    name = f"skysift_bench_{secrets.token_hex(4)}"
    with psycopg.connect(f"postgresql://{server}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_database(server: str, name: str) -> None:
    import psycopg

    with psycopg.connect(f"postgresql://{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def clear_redis(url: str) -> int:
    """Delete the keys a SkySift deployment leaves in its Redis database."""
    import redis

    client = redis.Redis.from_url(url)
    keys = [k for pattern in ("skysift*", "dramatiq*") for k in client.scan_iter(pattern)]
    if keys:
        client.delete(*keys)
    return len(keys)


# ---------------------------------------------------------------------------- data


def build_prototype(folder: Path, size: int, transients: int) -> dict[str, dict]:
    """A task folder after inspection, photometry and subtraction of a simulated sky
    (a folder already holding the subtraction result is used as it is)."""
    from astropy.io import fits

    from pipeline.simulate import simulate_sky
    from pipeline.steps import StepContext, run_step

    if not (folder / f"{STEP}.result.json").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        sky = simulate_sky(size=size, seed=1, n_transients=transients)
        fits.PrimaryHDU(sky.image, sky.header).writeto(folder / "image.fits", overwrite=True)
        sky.catalog.write(folder / "catalog.fits", overwrite=True)
        template = fits.PrimaryHDU(sky.template.image, sky.template.header)
        template.writeto(folder / "custom_template.fits", overwrite=True)
        ctx = StepContext(task_dir=folder, log=logging.getLogger("bench.collaboration"))
        for step, config in CONFIGS.items():
            run_step(step, ctx, config)
    return {
        step: {**json.loads((folder / f"{step}.result.json").read_text()), "config": config}
        for step, config in CONFIGS.items()
    }


def _jname(ra: float, dec: float) -> str:
    hours = ra / 15.0
    h, m = int(hours), int(hours * 60) % 60
    s = (hours * 3600) % 60
    sign, dec = ("+" if dec >= 0 else "-"), abs(dec)
    d, dm = int(dec), int(dec * 60) % 60
    ds = (dec * 3600) % 60
    return f"J{h:02d}{m:02d}{s:05.2f}{sign}{d:02d}{dm:02d}{ds:04.1f}"


def _step_run(task_id: int, step: str, result: dict, finished) -> dict[str, Any]:
    from jobs.models import RunState

    seconds = float(result.get("seconds") or 5.0)
    return {
        "task_id": task_id,
        "step": step,
        "state": RunState.DONE,
        "config": result["config"],
        "queued_at": finished - timedelta(seconds=seconds + 1),
        "started_at": finished - timedelta(seconds=seconds),
        "finished_at": finished,
        "heartbeat_at": finished,
        "progress": 1.0,
        "summary": result["summary"],
        "files": result["files"],
        "warnings": result["warnings"],
        "log": f"{step} started\n{step} finished",
    }


def populate(
    n_tasks: int,
    n_folders: int,
    prototype: Path,
    results: dict[str, dict],
    passwords: dict[str, str],
    rng: random.Random,
) -> dict[str, Any]:
    """Users, groups, tasks, runs, shares, candidates and votes; folders for a few tasks."""
    from sqlalchemy import insert
    from sqlmodel import select

    from jobs.candidates import index_candidates
    from jobs.db import session_scope
    from jobs.footprints import store_footprint
    from jobs.models import (
        AccessLevel,
        Candidate,
        Group,
        Membership,
        StepRun,
        Task,
        TaskShare,
        Vote,
        VoteValue,
        utcnow,
    )
    from jobs.storage import task_dir
    from web.accounts.service import create_user

    started = time.monotonic()
    with session_scope() as session:
        users = {
            name: create_user(session, name, password, is_admin=name == "admin")
            for name, password in passwords.items()
        }
        groups = [Group(name=f"project-{i}") for i in range(6)]
        session.add_all(groups)
        session.flush()
        user_ids = [u.id for u in users.values()]
        member_groups = {
            u.id: rng.sample(groups, 2 if u.username == "member" else rng.randint(1, 2))
            for u in users.values()
            if not u.is_admin
        }
        for user_id, chosen in member_groups.items():
            session.add_all(Membership(user_id=user_id, group_id=g.id) for g in chosen)
        now = utcnow()
        rows = []
        for i in range(n_tasks):
            field, band = rng.choice(FIELDS), rng.choice(FILTERS)
            created = now - timedelta(minutes=(n_tasks - i) * 50)
            rows.append(
                {
                    "title": f"{field} {band} {created:%Y-%m-%d}",
                    "original_name": f"{field.replace(' ', '')}_{band}_{i:05d}.fits",
                    "source": "upload",
                    "owner_id": user_ids[i % len(user_ids)],
                    "created": created,
                    "modified": created + timedelta(minutes=2),
                    "state": "photometry: done",
                    "config": {"photometry": results["photometry"]["config"]},
                }
            )
        task_ids = list(
            session.scalars(insert(Task).returning(Task.id, sort_by_parameter_order=True), rows)
        )
        owner = {tid: row["owner_id"] for tid, row in zip(task_ids, rows, strict=True)}
        created_of = {tid: row["created"] for tid, row in zip(task_ids, rows, strict=True)}
        shares = []
        for tid in task_ids:
            for group in rng.sample(groups, rng.choice((0, 0, 1, 1, 2))):
                access = rng.choice((AccessLevel.VIEW, AccessLevel.EDIT))
                shares.append({"task_id": tid, "group_id": group.id, "access": access})
        session.execute(insert(TaskShare), shares)
        runs = []
        for tid in task_ids:
            finished = created_of[tid] + timedelta(minutes=1)
            runs.append(_step_run(tid, "inspect", results["inspect"], finished))
            runs.append(_step_run(tid, "photometry", results["photometry"], finished))
        # Tasks a member sees, own or shared through a group, get folders and real pages.
        member = users["member"]
        member_group_ids = {g.id for g in member_groups[member.id]}
        shared_with_member = {s["task_id"] for s in shares if s["group_id"] in member_group_ids}
        visible = [t for t in task_ids if owner[t] == member.id or t in shared_with_member]
        folder_ids = sorted(rng.sample(visible[-500:], n_folders))
        # One task in ten has 20 indexed candidates (search across tasks); folders have real ones.
        with_candidates = set(task_ids[::10]) | set(folder_ids)
        candidates = []
        for tid in sorted(with_candidates - set(folder_ids)):
            finished = created_of[tid] + timedelta(minutes=1)
            runs.append(_step_run(tid, STEP, results[STEP], finished))
            ra0, dec0 = rng.uniform(0, 360), rng.uniform(-30, 60)
            for row in range(20):
                ra, dec = ra0 + rng.uniform(-0.1, 0.1), dec0 + rng.uniform(-0.1, 0.1)
                candidates.append(
                    {
                        "task_id": tid,
                        "step": STEP,
                        "key": _jname(ra, dec),
                        "row": row,
                        "ra": ra,
                        "dec": dec,
                        "mag": rng.uniform(17, 21),
                        "mag_err": rng.uniform(0.02, 0.2),
                        "sn": rng.uniform(5, 80),
                        "mjd": 61000.0 + tid / 100,
                        "created": finished,
                    }
                )
        for tid in folder_ids:
            runs.append(_step_run(tid, STEP, results[STEP], created_of[tid] + timedelta(minutes=1)))
        session.execute(insert(Candidate), candidates)
        # Votes on a third of the synthetic candidates (vote filters do real work).
        votes = [
            {
                "task_id": c["task_id"],
                "step": STEP,
                "key": c["key"],
                "user_id": rng.choice(user_ids),
                "value": rng.choice(list(VoteValue)),
            }
            for c in candidates[::3]
        ]
        session.execute(insert(Vote), votes)
        session.execute(insert(StepRun), runs)
        session.commit()
        mjd = results["inspect"]["summary"].get("mjd")
        band = results["inspect"]["summary"].get("filter")
        for tid in folder_ids:
            shutil.copytree(prototype, task_dir(tid), copy_function=os.link)
            index_candidates(session, tid, STEP, mjd)
            store_footprint(session, tid, mjd, band)
            task = session.get(Task, tid)
            task.state = f"{STEP}: done"
            session.add(task)
        session.commit()
        keys = session.exec(
            select(Candidate.key).where(Candidate.task_id == folder_ids[0], Candidate.step == STEP)
        ).all()
        counts = {
            "tasks": len(task_ids),
            "shares": len(shares),
            "step runs": len(runs),
            "candidates": len(candidates) + len(keys) * len(folder_ids),
            "votes": len(votes),
            "tasks visible to member": len(visible),
            "users": len(users),
            "groups": len(groups),
        }
    return {
        "folder_ids": folder_ids,
        "visible_ids": visible,
        "keys": list(keys),
        "counts": counts,
        "seconds": time.monotonic() - started,
    }


# ---------------------------------------------------------------------------- pages


async def sign_in(base: str, username: str, password: str, connections: int) -> httpx.AsyncClient:
    """A client signed in through the login form (its session cookie is kept)."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    client = httpx.AsyncClient(base_url=base, timeout=120, limits=limits)
    await client.get("/login")
    client.headers["x-csrftoken"] = client.cookies.get("csrftoken", "")
    response = await client.post(
        "/login", data={"username": username, "password": password}, follow_redirects=True
    )
    response.raise_for_status()
    if "Sign out" not in response.text:
        raise SystemExit(f"could not sign in as {username}")
    return client


async def measure(
    client: httpx.AsyncClient, urls: list[str], n: int, concurrency: int, pid: int | None = None
) -> dict:
    """``n`` GETs cycling through ``urls`` from ``concurrency`` concurrent callers (and the
    server's CPU time per request when its ``pid`` is given)."""
    for url in urls[:3]:  # warm the templates and the connection pool
        (await client.get(url)).raise_for_status()
    counter = itertools.count()
    latencies: list[float] = []
    sizes: list[int] = []

    async def caller() -> None:
        while (i := next(counter)) < n:
            started = time.perf_counter()
            response = await client.get(urls[i % len(urls)])
            latencies.append(time.perf_counter() - started)
            response.raise_for_status()
            sizes.append(len(response.content))

    cpu = cpu_seconds(pid) if pid else 0.0
    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    cpu = cpu_seconds(pid) - cpu if pid else float("nan")
    latencies.sort()
    return {
        "rps": n / wall,
        "median_ms": 1000 * statistics.median(latencies),
        "p95_ms": 1000 * latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))],
        "kib": statistics.median(sizes) / 1024,
        "cpu_ms": 1000 * cpu / n,
    }


class _Assets(HTMLParser):
    """Stylesheets, scripts and images of a page; images inside closed <details> are
    fetched only when opened, lazy ones only near the viewport."""

    def __init__(self) -> None:
        super().__init__()
        self.css: list[str] = []
        self.js: list[str] = []
        self.images: list[tuple[str, bool]] = []  # (src, shown when the page loads)
        self._closed_details = 0
        self._stack: list[bool] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "link" and a.get("rel") == "stylesheet":
            self.css.append(a["href"])
        elif tag == "script" and a.get("src"):
            self.js.append(a["src"])
        elif tag == "img" and a.get("src"):
            self.images.append((a["src"], self._closed_details == 0))
        elif tag == "details":
            closed = "open" not in a
            self._stack.append(closed)
            self._closed_details += closed

    def handle_endtag(self, tag: str) -> None:
        if tag == "details" and self._stack:
            self._closed_details -= self._stack.pop()


async def _wire_bytes(client: httpx.AsyncClient, urls: list[str]) -> tuple[int, int]:
    """Bytes on the wire for ``urls`` as served, and their size if gzip-compressed."""
    wire = gz = 0
    for url in urls:
        response = await client.get(url, headers={"accept-encoding": "gzip"})
        response.raise_for_status()
        wire += response.num_bytes_downloaded
        gz += len(gzip.compress(response.content, 6))
    return wire, gz


async def time_to_first_byte(client: httpx.AsyncClient, url: str, repeat: int) -> dict:
    """Median time to the response headers, to the first body chunk and to the last."""
    heads, firsts, totals = [], [], []
    for _ in range(repeat):
        started = time.perf_counter()
        async with client.stream("GET", url) as response:
            heads.append(time.perf_counter() - started)
            response.raise_for_status()
            first = None
            async for _chunk in response.aiter_raw():
                first = first or time.perf_counter() - started
            firsts.append(first)
        totals.append(time.perf_counter() - started)
    return {
        "headers_ms": 1000 * statistics.median(heads),
        "first_chunk_ms": 1000 * statistics.median(firsts),
        "complete_ms": 1000 * statistics.median(totals),
    }


async def page_weight(client: httpx.AsyncClient, url: str, js9_url: str, ttfb_s: float) -> dict:
    """Bytes of a candidate page, its assets and thumbnails; load estimate on a slow link."""
    page = await client.get(url)
    page.raise_for_status()
    assets = _Assets()
    assets.feed(page.text)
    shown = [src for src, visible in assets.images if visible]
    deferred = [src for src, visible in assets.images if not visible]
    css, css_gz = await _wire_bytes(client, assets.css)
    js, js_gz = await _wire_bytes(client, assets.js)
    shown_bytes, _ = await _wire_bytes(client, shown)
    deferred_bytes, _ = await _wire_bytes(client, deferred)
    html = page.num_bytes_downloaded
    html_gz = len(gzip.compress(page.content, 6))
    # The JS9 viewer page, for comparison: what the vetting page does not load.
    viewer = await client.get(js9_url)
    viewer.raise_for_status()
    js9 = _Assets()
    js9.feed(viewer.text)
    js9_files = [u for u in js9.css + js9.js if "js9" in u or "mask-editor" in u]
    js9_files += ["/static/vendor/js9/astroemw.js", "/static/vendor/js9/astroemw.wasm"]
    js9_bytes, _ = await _wire_bytes(client, js9_files)
    rtt, rate = SLOW_LINK_RTT_S, SLOW_LINK_BITS_PER_S / 8

    def link(extra: int, rtts: int) -> float:
        # TCP + TLS 1.3 set-up (2 RTT), the request (1 RTT) and the server's TTFB, then the
        # HTML; each later wave of requests costs one more RTT plus its bytes at link rate.
        return 3 * rtt + ttfb_s + html / rate + rtts * rtt + extra / rate

    first_screen_bytes, _ = await _wire_bytes(client, shown[:3])  # ~3 candidates a screen
    return {
        "html": html,
        "html_gz": html_gz,
        "css": css,
        "css_gz": css_gz,
        "js": js,
        "js_gz": js_gz,
        "n_shown": len(shown),
        "shown": shown_bytes,
        "n_deferred": len(deferred),
        "deferred": deferred_bytes,
        "js9": js9_bytes,
        "n_js9": len(js9_files),
        "slow_html_s": link(0, 0),
        "slow_render_s": link(css, 1),
        "slow_interactive_s": link(css + js, 1),
        "slow_first_screen_s": link(css + js + first_screen_bytes, 2),
        "slow_all_shown_s": link(css + js + shown_bytes, 2),
        "slow_all_shown_gz_s": link(css_gz + js_gz + shown_bytes, 2) - (html - html_gz) / rate,
    }


# ---------------------------------------------------------------------------- SSE


class _Streams:
    """Event-stream readers sharing one client; each notes when it is connected (the replayed
    ``bench: ready`` line arrived), whether it failed, and the delay of ``bench: ping``."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.readers: list[asyncio.Task] = []
        self.connected: list[asyncio.Event] = []
        self.failed: list[str | None] = []
        self.latency: list[float | None] = []
        self.foreign: list[int] = []  # events of another task (must stay empty)
        self.lines: list[int] = []
        self.keepalives: list[int] = []
        self.last_line: list[float] = []
        self.stop = asyncio.Event()

    async def _read(self, i: int, task_id: int) -> None:
        try:
            async with self.client.stream("GET", f"/tasks/{task_id}/events") as response:
                if response.status_code != 200:
                    self.failed[i] = f"HTTP {response.status_code}"
                    return
                kind = None
                async for line in response.aiter_lines():
                    self.lines[i] += 1
                    self.last_line[i] = time.monotonic()
                    if line.startswith(":"):
                        self.keepalives[i] += 1
                    elif line.startswith("event:"):
                        kind = line.split(":", 1)[1].strip()
                    elif line.startswith("data:") and kind == "log":
                        data = json.loads(line[5:])
                        if data.get("task") != task_id:
                            self.foreign.append(i)
                        if data["line"] == "bench: ready":
                            self.connected[i].set()
                        elif data["line"] == "bench: ping" and self.latency[i] is None:
                            self.latency[i] = time.time() - data["t"]
                            await self.stop.wait()  # hold the stream until all have it
                            return
        except httpx.HTTPError as exc:
            self.failed[i] = type(exc).__name__
        finally:
            self.connected[i].set()  # connected or failed: nobody waits for it any more

    async def open(self, task_ids: list[int], timeout: float = 120) -> float:
        """Open one stream per id at once; seconds until each is connected or failed."""
        started = time.perf_counter()
        first = len(self.readers)
        for offset, task_id in enumerate(task_ids):
            self.connected.append(asyncio.Event())
            self.failed.append(None)
            self.latency.append(None)
            self.lines.append(0)
            self.keepalives.append(0)
            self.last_line.append(time.monotonic())
            self.readers.append(asyncio.create_task(self._read(first + offset, task_id)))
        waiting = [e.wait() for e in self.connected[first:]]
        await asyncio.wait_for(asyncio.gather(*waiting), timeout)
        return time.perf_counter() - started

    async def close(self) -> None:
        self.stop.set()
        for task in self.readers:
            task.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)


async def hold_streams(
    base: str,
    cookies: httpx.Cookies,
    task_ids: list[int],
    n_clients: int,
    wave: int,
    hold_s: float,
    redis_url: str,
    server_pid: int,
    probe: httpx.AsyncClient,
) -> dict:
    """Open ``n_clients`` event streams all at once (a reconnect storm) and count failures;
    then hold as many, opened in waves, publish one event per task and time its delivery."""
    import redis

    from jobs.channels import RedisChannel

    channel = RedisChannel(redis_url)
    watcher = redis.Redis.from_url(redis_url)
    ids = [task_ids[i % len(task_ids)] for i in range(n_clients)]
    for tid in set(ids):  # replayed at once to each new stream: shows it is connected
        channel.publish(tid, "log", {"line": "bench: ready", "task": tid, "t": time.time()})
    limits = httpx.Limits(max_connections=n_clients + 10, max_keepalive_connections=n_clients + 10)

    def new_client() -> httpx.AsyncClient:
        timeout = httpx.Timeout(60, read=300)
        return httpx.AsyncClient(base_url=base, cookies=cookies, limits=limits, timeout=timeout)

    at_start = rss_mib(server_pid)
    async with new_client() as client:
        storm = _Streams(client)
        try:
            storm_s = await storm.open(ids)
        finally:
            await storm.close()
    storm_failed = [f for f in storm.failed if f]
    await asyncio.sleep(2.0)
    before = rss_mib(server_pid)
    async with new_client() as client:
        streams = _Streams(client)
        try:
            connect_s = 0.0
            for start in range(0, n_clients, wave):
                connect_s += await streams.open(ids[start : start + wave])
            failed = [f for f in streams.failed if f]
            if failed:
                raise SystemExit(f"{len(failed)} of {n_clients} streams failed: {failed[:3]}")
            # Idle past the server's wait (15 s): each stream must get a keep-alive and stay.
            await asyncio.sleep(hold_s)
            held = rss_mib(server_pid)
            info = watcher.info("clients")
            during = await measure(probe, ["/tasks/"], 40, 1)  # pages answer meanwhile
            sent = time.time()
            for tid in sorted(set(ids)):
                channel.publish(tid, "log", {"line": "bench: ping", "task": tid, "t": time.time()})
            deadline = time.monotonic() + 60
            while any(v is None for v in streams.latency) and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            all_in = time.time() - sent
        finally:
            await streams.close()
    got = sorted(1000 * v for v in streams.latency if v is not None)
    return {
        "clients": n_clients,
        "tasks": len(set(ids)),
        "storm_s": storm_s,
        "storm_failed": len(storm_failed),
        "storm_errors": sorted(set(storm_failed)),
        "wave": wave,
        "connect_s": connect_s,
        "rss_start": at_start[0],
        "rss_before": before[0],
        "rss_held": held[0],
        "threads_before": before[2],
        "threads_held": held[2],
        "redis_blocked": info.get("blocked_clients"),
        "redis_clients": info.get("connected_clients"),
        "received": len(got),
        "median_ms": statistics.median(got) if got else float("nan"),
        "p95_ms": got[min(len(got) - 1, int(0.95 * len(got)))] if got else float("nan"),
        "max_ms": max(got) if got else float("nan"),
        "all_in_ms": 1000 * all_in,
        "foreign": len(streams.foreign) + len(storm.foreign),
        "missing": [
            (i, ids[i], streams.lines[i], round(time.monotonic() - streams.last_line[i], 1))
            for i, v in enumerate(streams.latency)
            if v is None
        ],
        "list_during_ms": during["median_ms"],
        "hold_s": hold_s,
        "keepalive_min": min(streams.keepalives),
    }


# ---------------------------------------------------------------------------- run


def start_server(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "web.cli", "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def wait_until_up(base: str, server: subprocess.Popen, log: Path) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        for _ in range(300):
            if server.poll() is not None:
                raise SystemExit(f"the server stopped:\n{log.read_text()[-3000:]}")
            try:
                await client.get("/login")
                return
            except httpx.HTTPError:
                await asyncio.sleep(0.2)
    raise SystemExit("the server did not start")


async def run_pages(base: str, data: dict, passwords: dict[str, str], args, pid: int) -> dict:
    folder_ids, keys = data["folder_ids"], data["keys"]
    results: dict[str, Any] = {"rows": []}
    clients = {who: await sign_in(base, who, passwords[who], 16) for who in ("admin", "member")}
    results["clients"] = clients
    endpoints = {}
    for who, client in clients.items():
        first = (await client.get("/tasks/")).text.split("page 1 of ", 1)[1]
        pages, total = int(first.split(" ", 1)[0]), int(first.split("(", 1)[1].split(" ", 1)[0])
        results[f"{who}_tasks"] = total
        endpoints[who] = {
            "task list, page 1": ["/tasks/"],
            "task list, last page": [f"/tasks/?page={pages}"],
            "task list, text filter (q=NGC)": ["/tasks/?q=NGC"],
            "task page": [f"/tasks/{t}" for t in folder_ids],
            "candidate search, all": ["/candidates"],
            "candidate search, not voted": ["/candidates?vote=none"],
            "candidate list (vetting page)": [f"/tasks/{t}/candidates/{STEP}/" for t in folder_ids],
            "one candidate's vetting block": [
                f"/tasks/{t}/candidates/{STEP}/{keys[i % len(keys)]}/block"
                for i, t in enumerate(folder_ids)
            ],
        }
    # Both users measured back to back, so that they see the same machine load.
    for label in endpoints["admin"]:
        for concurrency in (1, 8):
            for who, client in clients.items():
                urls = endpoints[who][label]
                figures = await measure(client, urls, args.requests, concurrency, pid)
                results["rows"].append((who, label, concurrency, figures))
                print(
                    f"  {who:6s} {label:32s} c={concurrency} {figures['rps']:6.1f} req/s, "
                    f"median {figures['median_ms']:6.1f} ms, p95 {figures['p95_ms']:6.1f} ms, "
                    f"server CPU {figures['cpu_ms']:5.1f} ms/req",
                    flush=True,
                )
    member = clients["member"]
    page_url = f"/tasks/{folder_ids[0]}/candidates/{STEP}/"
    results["ttfb"] = await time_to_first_byte(member, page_url, 20)
    results["weight"] = await page_weight(
        member,
        page_url,
        f"/tasks/{folder_ids[0]}/view/image.fits",
        results["ttfb"]["first_chunk_ms"] / 1000,
    )
    task_page = (await member.get(f"/tasks/{folder_ids[0]}")).content
    results["task_page_bytes"] = (len(task_page), len(gzip.compress(task_page, 6)))
    results["member_cookies"] = member.cookies
    return results


def print_report(data: dict, pages: dict, sse: dict, memory: dict, args, loads: list) -> None:
    print()
    print(f"data: {', '.join(f'{v} {k}' for k, v in data['counts'].items())}")
    print(f"populated in {data['seconds']:.1f} s; tasks with folders: {len(data['folder_ids'])}")
    print(f"admin sees {pages['admin_tasks']} tasks, member {pages['member_tasks']}")
    print(
        f"\n{'page':32s} {'user':7s} {'conc':>4s} {'req/s':>7s} {'median ms':>10s} "
        f"{'p95 ms':>8s} {'CPU ms':>7s} {'KiB':>6s}"
    )
    for who, label, concurrency, f in pages["rows"]:
        print(
            f"{label:32s} {who:7s} {concurrency:4d} {f['rps']:7.1f} {f['median_ms']:10.1f} "
            f"{f['p95_ms']:8.1f} {f['cpu_ms']:7.1f} {f['kib']:6.1f}"
        )
    t, w = pages["ttfb"], pages["weight"]
    print(
        f"\ncandidate page (member, 20 fetches): headers {t['headers_ms']:.1f} ms, first body "
        f"chunk {t['first_chunk_ms']:.1f} ms, complete {t['complete_ms']:.1f} ms"
    )
    print(
        f"bytes: HTML {w['html']} (gzip {w['html_gz']}), CSS {w['css']} (gzip {w['css_gz']}), "
        f"JS {w['js']} (gzip {w['js_gz']}); {w['n_shown']} images shown at load "
        f"{w['shown']} B; {w['n_deferred']} in closed <details> {w['deferred']} B; "
        f"JS9 viewer assets not loaded: {w['n_js9']} files {w['js9']} B"
    )
    print(f"task page HTML {pages['task_page_bytes'][0]} B (gzip {pages['task_page_bytes'][1]})")
    print(
        f"slow link ({SLOW_LINK_BITS_PER_S / 1e6:.1f} Mbit/s, {1000 * SLOW_LINK_RTT_S:.0f} ms "
        f"RTT): HTML {w['slow_html_s']:.2f} s, first render {w['slow_render_s']:.2f} s, "
        f"interactive {w['slow_interactive_s']:.2f} s, first screen of thumbnails "
        f"{w['slow_first_screen_s']:.2f} s, every shown thumbnail {w['slow_all_shown_s']:.2f} s "
        f"({w['slow_all_shown_gz_s']:.2f} s with gzip on text)"
    )
    print(
        f"\nSSE storm: {sse['clients']} streams opened at once: {sse['storm_failed']} failed "
        f"{sse['storm_errors']}, all answered in {sse['storm_s']:.2f} s"
    )
    print(
        f"SSE held: {sse['clients']} streams over {sse['tasks']} tasks, opened "
        f"{sse['wave']} at a time, connected in {sse['connect_s']:.2f} s; web RSS "
        f"{sse['rss_start']:.0f} before the storm, {sse['rss_before']:.0f} -> "
        f"{sse['rss_held']:.0f} MiB "
        f"({1024 * (sse['rss_held'] - sse['rss_before']) / sse['clients']:.0f} KiB per stream), "
        f"threads {sse['threads_before']} -> {sse['threads_held']}; Redis blocked clients "
        f"{sse['redis_blocked']} of {sse['redis_clients']}"
    )
    print(
        f"delivery of one event per task: {sse['received']}/{sse['clients']} received, median "
        f"{sse['median_ms']:.1f} ms, p95 {sse['p95_ms']:.1f} ms, max {sse['max_ms']:.1f} ms "
        f"(all in after {sse['all_in_ms']:.0f} ms); task list while held: "
        f"{sse['list_during_ms']:.1f} ms median; events of another task received: "
        f"{sse['foreign']}; keep-alives per stream in {sse['hold_s']:.0f} s idle: at least "
        f"{sse['keepalive_min']}"
    )
    if sse["missing"]:
        print(f"streams that missed the event, by task: {sorted(sse['missing'])}")
    print(
        f"web process RSS: {memory['idle']:.0f} MiB after start, {memory['pages']:.0f} after "
        f"the page runs, peak {memory['peak']:.0f}"
    )
    print(f"load average (1/5/15 min): {' | '.join(loads)}")
    print(f"command: {' '.join(sys.argv)}; {args}")


async def bench(args, base: str, server: subprocess.Popen, log: Path, data: dict, pw) -> None:
    await wait_until_up(base, server, log)
    idle = rss_mib(server.pid)[0]
    print("pages:", flush=True)
    pages = await run_pages(base, data, pw, args, server.pid)
    after_pages = rss_mib(server.pid)[0]
    try:
        print("SSE streams ...", flush=True)
        sse = await hold_streams(
            base,
            pages["member_cookies"],
            data["visible_ids"][-args.sse_tasks :],
            args.sse,
            args.sse_wave,
            args.sse_hold,
            args.redis_url,
            server.pid,
            pages["clients"]["member"],
        )
    finally:
        for client in pages["clients"].values():
            await client.aclose()
    memory = {"idle": idle, "pages": after_pages, "peak": rss_mib(server.pid)[1]}
    args.loads.append(load_average())
    print_report(data, pages, sse, memory, args, args.loads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--folders", type=int, default=20, help="tasks given real folders")
    parser.add_argument("--requests", type=int, default=120, help="GETs per figure")
    parser.add_argument("--sse", type=int, default=200, help="event streams held at once")
    parser.add_argument("--sse-tasks", type=int, default=50, help="tasks the streams follow")
    parser.add_argument("--sse-wave", type=int, default=25, help="streams opened together")
    parser.add_argument(
        "--sse-hold", type=float, default=20.0, help="idle seconds before the event"
    )
    parser.add_argument("--size", type=int, default=1024, help="side of the simulated image")
    parser.add_argument("--transients", type=int, default=30)
    parser.add_argument(
        "--prototype", type=Path, help="keep the processed task folder here and reuse it"
    )
    parser.add_argument("--pg", default=PG_SERVER, help="user@host:port of PostgreSQL")
    parser.add_argument("--redis-url", default=REDIS_URL)
    args = parser.parse_args()
    args.loads = [load_average()]
    rng = random.Random(8)
    passwords = {name: secrets.token_urlsafe(16) for name in ("admin", "member")}
    passwords |= {f"user{i}": secrets.token_urlsafe(16) for i in range(8)}
    database = create_database(args.pg)
    server = None
    with tempfile.TemporaryDirectory(prefix="skysift-collab-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SKYSIFT_")}
        env |= {
            "SKYSIFT_DATABASE_URL": f"postgresql+psycopg://{args.pg}/{database}",
            "SKYSIFT_REDIS_URL": args.redis_url,
            "SKYSIFT_DATA_DIR": str(Path(tmp) / "data"),
        }
        os.environ.update({k: v for k, v in env.items() if k.startswith("SKYSIFT_")})
        from jobs.db import dispose_engines, upgrade_database
        from jobs.settings import configure

        try:
            configure().ensure_dirs()
            cleared = clear_redis(args.redis_url)
            if cleared:
                print(f"removed {cleared} SkySift keys left in {args.redis_url}")
            upgrade_database()
            print(f"database {database} migrated; simulating and processing one task ...")
            started = time.monotonic()
            prototype = args.prototype or Path(tmp) / "prototype"
            results = build_prototype(prototype, args.size, args.transients)
            print(
                f"  inspect + photometry + {STEP} in {time.monotonic() - started:.1f} s, "
                f"{results[STEP]['summary'].get('n_candidates')} candidates",
                flush=True,
            )
            data = populate(args.tasks, args.folders, prototype, results, passwords, rng)
            print(f"  populated in {data['seconds']:.1f} s: {data['counts']}", flush=True)
            port = free_port()
            log = Path(tmp) / "server.log"
            server = start_server(env, port, log)
            try:
                asyncio.run(bench(args, f"http://127.0.0.1:{port}", server, log, data, passwords))
            except BaseException:
                print(f"server log (end):\n{log.read_text()[-4000:]}", file=sys.stderr)
                raise
        finally:
            if server is not None:
                server.terminate()
                server.wait()
            dispose_engines()
            drop_database(args.pg, database)
            clear_redis(args.redis_url)


if __name__ == "__main__":
    main()
