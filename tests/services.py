"""Access to the real services the tests use (Redis, PostgreSQL), with honest skips.

A missing service skips the test with the reason, unless SKYSIFT_REQUIRE_SERVICES=1
(set by .ci/run), in which case it fails.
"""

from __future__ import annotations

import os
import socket
import uuid

import pytest

REDIS_URL = os.environ.get("SKYSIFT_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
POSTGRES_ADMIN_URL = os.environ.get(
    "SKYSIFT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require(service: str, host: str, port: int) -> None:
    if _reachable(host, port):
        return
    message = f"{service} is not reachable at {host}:{port}"
    if os.environ.get("SKYSIFT_REQUIRE_SERVICES") == "1":
        pytest.fail(message + " and SKYSIFT_REQUIRE_SERVICES=1")
    pytest.skip(message)


def redis_url() -> str:
    require("Redis", "127.0.0.1", 6379)
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    return REDIS_URL


def postgres_database() -> tuple[str, callable]:
    """A fresh PostgreSQL database URL and a function that drops it."""
    require("PostgreSQL", "127.0.0.1", 5432)
    from sqlalchemy import create_engine, text

    name = f"skysift_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}", drop
