"""Running a step for a task: queueing, execution inside an actor, cancellation, recovery.

The actor message carries only the task id and the step name; the config is read
from the StepRun row the web created when the user pressed Run.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
import traceback
from datetime import timedelta

from dramatiq.middleware.time_limit import TimeLimitExceeded
from dramatiq.threading import Interrupt
from sqlmodel import Session, col, select

from jobs.candidates import clear_candidates, index_candidates
from jobs.channels import get_channel
from jobs.db import session_scope
from jobs.footprints import FOOTPRINT_STEP, clear_footprint, store_footprint
from jobs.models import RunState, StepRun, Task, utcnow
from jobs.settings import get_settings
from jobs.storage import task_dir
from pipeline.steps import (
    ServiceUnavailable,
    StepCancelled,
    StepContext,
    StepError,
    downstream_of,
    get_step,
    run_step,
)

logger = logging.getLogger("skysift.jobs")
MAX_RETRIES = 3  # for ServiceUnavailable only


class RunRefused(Exception):
    """The run cannot be queued now (another step is active, bad config, ...)."""


# ---------------------------------------------------------------------------- queries


def latest_runs(session: Session, task_id: int) -> dict[str, StepRun]:
    """The newest StepRun of each step of a task."""
    runs = session.exec(
        select(StepRun).where(StepRun.task_id == task_id).order_by(col(StepRun.id))
    ).all()
    return {run.step: run for run in runs}


def active_run(session: Session, task_id: int) -> StepRun | None:
    return session.exec(
        select(StepRun)
        .where(StepRun.task_id == task_id)
        .where(col(StepRun.state).in_([RunState.QUEUED, RunState.RUNNING]))
    ).first()


def publish(task_id: int, kind: str, **data) -> str:
    # The send time lets clients (and bench/) measure delivery latency.
    return get_channel().publish(task_id, kind, {**data, "t": time.time()})


def _set_task_state(session: Session, task_id: int, state: str) -> None:
    task = session.get(Task, task_id)
    if task is not None:
        task.state = state
        task.modified = utcnow()
        session.add(task)


# ---------------------------------------------------------------------------- queueing


def queue_step(session: Session, task: Task, step: str) -> StepRun:
    """Validate the task's config for ``step``, create a queued StepRun and send the message.

    Downstream steps' runs are marked cleared; their files go when the step starts.
    """
    spec = get_step(step)
    if not spec.available:
        raise RunRefused(f"the {spec.title.lower()} step is not available in this version")
    if active_run(session, task.id) is not None:
        raise RunRefused("a step of this task is already queued or running; wait or cancel it")
    config = spec.config_model.model_validate(task.config.get(step, {}))
    clear_candidates(session, task.id, downstream_of(step))
    if FOOTPRINT_STEP in downstream_of(step):
        clear_footprint(session, task.id)
    for later in downstream_of(step)[1:]:
        previous = latest_runs(session, task.id).get(later)
        if previous is not None and previous.state != RunState.CLEARED:
            previous.state = RunState.CLEARED
            session.add(previous)
    run = StepRun(task_id=task.id, step=step, config=config.model_dump(mode="json"))
    session.add(run)
    task.state = f"{step}: queued"
    task.modified = utcnow()
    session.add(task)
    session.commit()
    send_step_message(task.id, step)
    publish(task.id, "state", step=step, state=RunState.QUEUED.value, run_id=run.id)
    return run


def send_step_message(task_id: int, step: str) -> None:
    from jobs.actors import actor_for

    actor_for(step).send(task_id, step)


def request_cancel(session: Session, task_id: int, step: str) -> StepRun | None:
    """Ask the active run of ``step`` to stop: a queued run is cancelled at once."""
    run = latest_runs(session, task_id).get(step)
    if run is None or not run.state.active:
        return None
    run.cancel_requested = True
    if run.state == RunState.QUEUED:
        run.state = RunState.CANCELLED
        run.finished_at = utcnow()
        _set_task_state(session, task_id, f"{step}: cancelled")
    session.add(run)
    session.commit()
    publish(task_id, "state", step=step, state=run.state.value, run_id=run.id)
    return run


# ---------------------------------------------------------------------------- execution


class _RunReporter(logging.Handler):
    """Collects a run's log lines and publishes each as an event."""

    def __init__(self, task_id: int, step: str, run_id: int) -> None:
        super().__init__(logging.INFO)
        self.task_id, self.step, self.run_id = task_id, step, run_id
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        line = self.format(record)
        self.lines.append(line)
        publish(
            self.task_id,
            "log",
            step=self.step,
            run_id=self.run_id,
            level=record.levelname.lower(),
            line=line,
        )


class _Watchdog(threading.Thread):
    """Beats the heartbeat of a running step and stops the worker thread on cancel.

    Cancellation is checked at every progress report; for long stretches without one,
    the watchdog raises StepCancelled inside the worker thread (as Dramatiq's time
    limit does), so cancel really stops the work.
    """

    def __init__(self, run_id: int, worker_thread: int, interval: float) -> None:
        super().__init__(daemon=True, name=f"skysift-watchdog-{run_id}")
        self.run_id, self.worker_thread, self.interval = run_id, worker_thread, interval
        self.cancelled = False
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            with session_scope() as session:
                run = session.get(StepRun, self.run_id)
                if run is None:
                    return
                run.heartbeat_at = utcnow()
                session.add(run)
                cancel = run.cancel_requested
            if cancel and not self.cancelled:
                self.cancelled = True
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(self.worker_thread), ctypes.py_object(StepCancelled)
                )

    def stop(self) -> None:
        self._stop_event.set()


def _claim_run(task_id: int, step: str) -> StepRun | None:
    """Mark the queued run of this message as running; None if there is nothing to do."""
    with session_scope() as session:
        run = latest_runs(session, task_id).get(step)
        if run is None:
            return None
        if run.state == RunState.RUNNING:
            # Redelivered after its worker died: say so rather than leave it running.
            _finish(session, run, RunState.FAILED, "the worker running this step stopped")
            return None
        if run.state != RunState.QUEUED:
            return None
        run.state = RunState.RUNNING
        run.started_at = run.heartbeat_at = utcnow()
        session.add(run)
        _set_task_state(session, task_id, f"{step}: running")
        return run


def _finish(
    session: Session, run: StepRun, state: RunState, error: str | None = None, log: str = ""
) -> None:
    run.state = state
    run.finished_at = utcnow()
    run.error = error
    if log:
        run.log = log
    session.add(run)
    _set_task_state(session, run.task_id, f"{run.step}: {state.value}")
    session.commit()
    publish(run.task_id, "state", step=run.step, state=state.value, run_id=run.id, error=error)


def execute(task_id: int, step: str) -> None:
    """Body of the ``tasks.<step>`` actors: run the queued StepRun of this task and step."""
    run = _claim_run(task_id, step)
    if run is None:
        return
    settings = get_settings()
    reporter = _RunReporter(task_id, step, run.id)
    step_logger = logging.Logger(f"skysift.task.{task_id}.{step}", logging.INFO)
    step_logger.addHandler(reporter)
    last_fraction = [-1.0]

    def on_progress(fraction: float, message: str) -> None:
        # Throttle to whole percents so a tight loop does not flood the channel.
        if int(fraction * 100) != int(last_fraction[0] * 100) or message:
            last_fraction[0] = fraction
            publish(
                task_id, "progress", step=step, run_id=run.id, fraction=fraction, message=message
            )

    watchdog = _Watchdog(run.id, threading.get_ident(), settings.heartbeat_s)
    ctx = StepContext(
        task_dir=task_dir(task_id),
        log=step_logger,
        progress_callback=on_progress,
        is_cancelled=lambda: watchdog.cancelled,
        cache_dir=settings.data_dir / "cache",
    )
    state, error, result, retry = RunState.FAILED, None, None, None
    watchdog.start()
    try:
        step_logger.info("%s started", get_step(step).title)
        result = run_step(step, ctx, run.config)
        state = RunState.DONE
        step_logger.info("%s finished", get_step(step).title)
    except StepCancelled:
        state, error = RunState.CANCELLED, "cancelled by the user"
        step_logger.warning("cancelled by the user")
    except ServiceUnavailable as exc:
        error = str(exc)
        step_logger.error("%s", exc)
        if _retries_so_far() < MAX_RETRIES:
            step_logger.warning("the service may come back: the step will be retried shortly")
            state, retry = RunState.QUEUED, exc
    except StepError as exc:
        error = str(exc)
        step_logger.error("%s", exc)
    except TimeLimitExceeded:
        error = f"the step exceeded its time limit of {settings.step_time_limit_s} s"
        step_logger.error("%s", error)
    except Interrupt:  # the worker is shutting down: say so, do not leave the run running
        error = "the worker stopped while running this step; run it again"
        step_logger.error("%s", error)
    except Exception as exc:  # report any failure on the page rather than lose it
        error = f"internal error: {type(exc).__name__}: {exc}"
        step_logger.error("%s", traceback.format_exc())
        step_logger.error("%s", error)
    finally:
        watchdog.stop()
        log_text = "\n".join(reporter.lines)
        (ctx.task_dir / f"{step}.log").write_text(log_text + "\n")
        with session_scope() as session:
            stored = session.get(StepRun, run.id)
            if result is not None:
                stored.summary = result.summary
                stored.files = result.files
                stored.warnings = result.warnings
            stored.progress = 1.0 if state == RunState.DONE else stored.progress
            inspect = (ctx.read_result("inspect") or {}) if state == RunState.DONE else {}
            if state == RunState.DONE and get_step(step).candidates:
                index_candidates(session, task_id, step, inspect.get("mjd"))
            if state == RunState.DONE and step == FOOTPRINT_STEP:
                store_footprint(session, task_id, inspect.get("mjd"), inspect.get("filter"))
            _finish(session, stored, state, error, log_text)
    if retry is not None:
        raise retry  # Dramatiq's Retries middleware re-sends the message after a backoff


def _retries_so_far() -> int:
    from dramatiq.middleware import CurrentMessage

    message = CurrentMessage.get_current_message()
    return message.options.get("retries", 0) if message else MAX_RETRIES


# ---------------------------------------------------------------------------- recovery


def recover_runs(requeue: bool) -> dict[str, int]:
    """Deal with runs left over from a stopped process so none stays stuck.

    Running runs whose heartbeat is stale are failed (with their log kept). Queued runs
    are sent again when ``requeue`` (the embedded default lost its in-memory queue).
    """
    settings = get_settings()
    stale_before = utcnow() - timedelta(seconds=max(3 * settings.heartbeat_s, 15))
    counts = {"failed": 0, "requeued": 0}
    with session_scope() as session:
        active = session.exec(
            select(StepRun).where(col(StepRun.state).in_([RunState.QUEUED, RunState.RUNNING]))
        ).all()
        for run in active:
            if run.state == RunState.RUNNING:
                if requeue or (run.heartbeat_at or run.queued_at) < stale_before:
                    _finish(session, run, RunState.FAILED, "the worker running this step stopped")
                    counts["failed"] += 1
            elif requeue:
                send_step_message(run.task_id, run.step)
                counts["requeued"] += 1
    return counts


def fail_stale_runs(task_id: int) -> None:
    """Fail running runs of a task whose worker stopped beating (deployment mode)."""
    settings = get_settings()
    stale_before = utcnow() - timedelta(seconds=max(3 * settings.heartbeat_s, 15))
    with session_scope() as session:
        for run in latest_runs(session, task_id).values():
            if run.state == RunState.RUNNING and (run.heartbeat_at or run.queued_at) < stale_before:
                _finish(session, run, RunState.FAILED, "the worker running this step stopped")
