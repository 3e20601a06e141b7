"""Step runs through Dramatiq: embedded worker, real Redis workers, cancel, recovery."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from jobs import runner
from jobs.channels import get_channel, reset_channel
from jobs.db import session_scope, upgrade_database
from jobs.models import RunState, StepRun, Task, utcnow
from jobs.tasks import create_task
from tests.services import redis_url

ROOT = Path(__file__).resolve().parents[2]


def make_image(path: Path, size: int = 128) -> Path:
    data = np.random.default_rng(3).normal(1000, 30, (size, size)).astype(np.float32)
    header = fits.Header({"GAIN": 2.0, "SATURATE": 60000.0, "EXPTIME": 30.0, "FILTER": "R"})
    fits.PrimaryHDU(data, header).writeto(path, overwrite=True)
    return path


def new_task(tmp_path: Path) -> int:
    with session_scope() as session:
        task = create_task(session, make_image(tmp_path / "in.fits"), original_name="in.fits")
        return task.id


def queue(task_id: int, step: str = "inspect") -> int:
    with session_scope() as session:
        task = session.get(Task, task_id)
        return runner.queue_step(session, task, step).id


def wait_state(run_id: int, states: set[RunState], timeout: float = 60) -> StepRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_scope() as session:
            run = session.get(StepRun, run_id)
            if run.state in states:
                return run
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} not in {states} after {timeout} s (is {run.state})")


@pytest.fixture
def embedded(settings):
    from jobs.broker import setup_broker, start_worker

    settings.ensure_dirs()
    upgrade_database()
    broker = setup_broker(settings)
    worker = start_worker(broker, 2)
    yield settings
    worker.stop(timeout=5000)


def test_embedded_run_streams_logs_and_stores_result(embedded, tmp_path):
    task_id = new_task(tmp_path)
    run = wait_state(queue(task_id), {RunState.DONE, RunState.FAILED})
    assert run.state == RunState.DONE, run.error
    assert run.summary["gain"] == 2.0
    assert "mask.fits" in run.files and run.log
    events = get_channel().read(task_id, None, timeout=0.1)
    kinds = {e.kind for e in events}
    assert {"log", "progress", "state"} <= kinds
    assert all(e.data.get("run_id") in (None, run.id) or e.kind != "log" for e in events)
    states = [e.data["state"] for e in events if e.kind == "state"]
    assert states[0] == "queued" and states[-1] == "done"


def test_only_one_active_step_per_task(embedded, tmp_path, monkeypatch):
    import pipeline.steps.inspect as inspect_step

    monkeypatch.setattr(inspect_step, "run", lambda ctx, config: time.sleep(2) or _result())
    task_id = new_task(tmp_path)
    queue(task_id)
    with pytest.raises(runner.RunRefused, match="already queued or running"):
        queue(task_id)


def _result():
    from pipeline.steps import StepResult

    return StepResult(summary={"slept": True})


def test_cancel_stops_work_that_never_reports_progress(embedded, tmp_path, monkeypatch):
    import pipeline.steps.inspect as inspect_step

    iterations = []

    def busy(ctx, config):
        ctx.log.info("spinning")
        while True:  # pure Python with no progress calls: only the watchdog can stop it
            iterations.append(1)
            sum(range(1000))

    monkeypatch.setattr(inspect_step, "run", busy)
    task_id = new_task(tmp_path)
    run_id = queue(task_id)
    wait_state(run_id, {RunState.RUNNING})
    time.sleep(0.3)
    with session_scope() as session:
        runner.request_cancel(session, task_id, "inspect")
    run = wait_state(run_id, {RunState.CANCELLED, RunState.FAILED, RunState.DONE}, timeout=20)
    assert run.state == RunState.CANCELLED
    count = len(iterations)
    time.sleep(0.5)
    assert len(iterations) == count  # the loop really stopped
    assert "spinning" in run.log


def test_cancel_before_start_never_runs(settings, tmp_path):
    settings.ensure_dirs()
    upgrade_database()
    from jobs.broker import setup_broker

    setup_broker(settings)  # no worker: the message waits
    task_id = new_task(tmp_path)
    run_id = queue(task_id)
    with session_scope() as session:
        runner.request_cancel(session, task_id, "inspect")
    runner.execute(task_id, "inspect")  # the message arrives late: nothing runs
    with session_scope() as session:
        run = session.get(StepRun, run_id)
        assert run.state == RunState.CANCELLED and run.started_at is None


def test_restart_fails_running_and_requeues_queued(settings, tmp_path):
    settings.ensure_dirs()
    upgrade_database()
    from jobs.broker import setup_broker, start_worker

    broker = setup_broker(settings)
    first, second = new_task(tmp_path), new_task(tmp_path)
    with session_scope() as session:
        session.add(
            StepRun(
                task_id=first,
                step="inspect",
                state=RunState.RUNNING,
                started_at=utcnow(),
                heartbeat_at=utcnow(),
                log="half way",
            )
        )
        session.add(StepRun(task_id=second, step="inspect", state=RunState.QUEUED))
    counts = runner.recover_runs(requeue=True)
    assert counts == {"failed": 1, "requeued": 1}
    worker = start_worker(broker, 1)
    try:
        with session_scope() as session:
            dead = runner.latest_runs(session, first)["inspect"]
            assert dead.state == RunState.FAILED and "stopped" in dead.error
            assert dead.log == "half way"
            queued_id = runner.latest_runs(session, second)["inspect"].id
        assert wait_state(queued_id, {RunState.DONE, RunState.FAILED}).state == RunState.DONE
    finally:
        worker.stop(timeout=5000)


def test_stale_heartbeat_is_shown_as_failed(settings, tmp_path):
    settings.ensure_dirs()
    upgrade_database()
    task_id = new_task(tmp_path)
    with session_scope() as session:
        session.add(
            StepRun(
                task_id=task_id,
                step="inspect",
                state=RunState.RUNNING,
                started_at=utcnow() - timedelta(minutes=5),
                heartbeat_at=utcnow() - timedelta(minutes=5),
            )
        )
    runner.fail_stale_runs(task_id)
    with session_scope() as session:
        assert runner.latest_runs(session, task_id)["inspect"].state == RunState.FAILED


def test_redis_broker_with_separate_worker_process(settings, tmp_path):
    url = redis_url()
    from jobs.broker import setup_broker
    from jobs.settings import configure

    configured = configure(data_dir=settings.data_dir, redis_url=url, heartbeat_s=0.5)
    reset_channel()
    configured.ensure_dirs()
    upgrade_database()
    setup_broker(configured)
    env = {**os.environ, "SKYSIFT_DATA_DIR": str(settings.data_dir), "SKYSIFT_REDIS_URL": url}
    worker = subprocess.Popen(
        [sys.executable, "-m", "web.cli", "worker", "--threads", "1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        task_id = new_task(tmp_path)
        run = wait_state(queue(task_id), {RunState.DONE, RunState.FAILED}, timeout=90)
        assert run.state == RunState.DONE, run.error
        # Events published by the worker process reach this (web) process through Redis.
        events = get_channel().read(task_id, None, timeout=1)
        assert any(e.kind == "log" for e in events)
        assert [e.data["state"] for e in events if e.kind == "state"][-1] == "done"
    finally:
        worker.terminate()
        output = worker.communicate(timeout=30)[0]
    assert "SkySift worker" in output


def test_time_limit_fails_the_run_with_a_message(embedded, tmp_path, monkeypatch):
    import pipeline.steps.inspect as inspect_step
    from jobs.actors import actor_for

    monkeypatch.setitem(actor_for("inspect").options, "time_limit", 1000)

    def forever(ctx, config):
        while True:
            sum(range(1000))

    monkeypatch.setattr(inspect_step, "run", forever)
    task_id = new_task(tmp_path)
    run = wait_state(queue(task_id), {RunState.FAILED, RunState.DONE}, timeout=30)
    assert run.state == RunState.FAILED
    assert "time limit" in run.error
