"""The ``skysift`` command: serve, worker, db, simulate, process."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from jobs.settings import configure


def _settings_from(args: argparse.Namespace):
    values: dict[str, Any] = {}
    if getattr(args, "data_dir", None):
        values["data_dir"] = Path(args.data_dir)
    return configure(**values)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from web.app import create_app

    settings = _settings_from(args)
    mode = "embedded worker" if settings.embedded else f"Redis at {settings.redis_url}"
    print(f"SkySift on http://{args.host}:{args.port}/ (data in {settings.data_dir}, {mode})")
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="info")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from jobs.broker import setup_broker, start_worker
    from jobs.db import upgrade_database
    from jobs.runner import recover_runs

    settings = _settings_from(args)
    if not settings.redis_url:
        print(
            "skysift worker needs SKYSIFT_REDIS_URL (the embedded default runs jobs inside "
            "`skysift serve`)",
            file=sys.stderr,
        )
        return 2
    settings.ensure_dirs()
    upgrade_database()
    broker = setup_broker(settings)
    recover_runs(requeue=False)
    worker = start_worker(broker, args.threads or settings.worker_threads)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"SkySift worker: {worker.worker_threads} threads on {settings.redis_url}", flush=True)
    stop.wait()
    worker.stop(timeout=10000)
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    from jobs.db import session_scope, upgrade_database
    from jobs.footprints import rebuild_footprints

    settings = _settings_from(args)
    upgrade_database()
    print(f"database at {settings.effective_database_url} is up to date")
    if args.action == "footprints":
        with session_scope() as session:
            print(f"{rebuild_footprints(session)} task footprints stored")
    return 0


def cmd_reset_link(args: argparse.Namespace) -> int:
    from jobs.db import session_scope, upgrade_database
    from web.accounts.service import PasswordResetError, create_password_reset

    _settings_from(args)
    upgrade_database()
    with session_scope() as session:
        try:
            token = create_password_reset(session, args.username, created_by=None)
        except PasswordResetError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    print(f"{args.base_url.rstrip('/')}/reset/{token}")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from pipeline.simulate import simulate_command

    paths = simulate_command(Path(args.outdir), size=args.size, seed=args.seed, psf=args.psf)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


def cmd_process(args: argparse.Namespace) -> int:
    from pipeline.process import ProcessError, process_image

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        results = process_image(
            Path(args.image),
            Path(args.out),
            steps=[s for s in args.steps.split(",") if s],
            settings=args.set or [],
            filter_name=args.filter,
            catalog=args.catalog,
            catalog_name=args.catalog_name,
            template=args.template,
            targets=args.target or [],
        )
    except ProcessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(results, indent=1, default=str))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="skysift", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser(
        "serve", help="start the portal (embedded default: SQLite, in-process worker)"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--data-dir", help="data folder (default ./skysift-data)")
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="run job workers for a Redis deployment")
    worker.add_argument("--threads", type=int, default=None)
    worker.add_argument("--data-dir")
    worker.set_defaults(func=cmd_worker)

    db = sub.add_parser("db", help="database maintenance")
    db.add_argument(
        "action",
        choices=["upgrade", "footprints"],
        help="upgrade: apply migrations; footprints: also recompute every task's sky footprint",
    )
    db.add_argument("--data-dir")
    db.set_defaults(func=cmd_db)

    reset = sub.add_parser(
        "reset-link", help="print a one-time password reset link for a user (valid one day)"
    )
    reset.add_argument("username")
    reset.add_argument("--base-url", default="http://127.0.0.1:8000")
    reset.add_argument("--data-dir")
    reset.set_defaults(func=cmd_reset_link)

    simulate = sub.add_parser("simulate", help="write a simulated sky with its truth")
    simulate.add_argument("outdir")
    simulate.add_argument("--size", type=int, default=2048)
    simulate.add_argument("--seed", type=int, default=1)
    simulate.add_argument("--psf", choices=["moffat", "gaussian"], default="moffat")
    simulate.set_defaults(func=cmd_simulate)

    process = sub.add_parser("process", help="run pipeline steps on an image without the web")
    process.add_argument("image")
    process.add_argument("--out", required=True, help="output folder")
    process.add_argument("--steps", default="inspect,photometry")
    process.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="config value, as step.key=value or key=value",
    )
    process.add_argument("--filter", help="filter name, overriding the header")
    process.add_argument("--catalog", help="reference catalogue file")
    process.add_argument("--catalog-name", help="catalogue whose columns the file has (e.g. ps1)")
    process.add_argument("--template", help="template image for subtraction")
    process.add_argument("--target", action="append", help='target: "RA DEC" or a name')
    process.set_defaults(func=cmd_process)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
