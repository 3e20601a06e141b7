"""Migrations create every table, on SQLite and on the running PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect
from sqlmodel import Session, SQLModel, select

from jobs.db import get_engine, upgrade_database
from jobs.models import RunState, StepRun, Task
from tests.services import postgres_database


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    url, drop = postgres_database()
    yield url
    get_engine(url).dispose()
    drop()


def test_migrations_match_the_models_and_store_rows(database_url):
    upgrade_database(database_url)
    engine = get_engine(database_url)
    tables = set(inspect(engine).get_table_names())
    assert set(SQLModel.metadata.tables) <= tables
    with Session(engine) as session:
        task = Task(title="M31", original_name="m31.fits", config={"inspect": {"gain": 2.0}})
        session.add(task)
        session.commit()
        run = StepRun(task_id=task.id, step="inspect", summary={"fwhm": 3.1}, warnings=["w"])
        session.add(run)
        session.commit()
        stored = session.exec(select(StepRun).where(StepRun.task_id == task.id)).one()
        assert stored.state == RunState.QUEUED
        assert stored.summary == {"fwhm": 3.1}
        assert session.get(Task, task.id).config["inspect"]["gain"] == 2.0
    upgrade_database(database_url)  # idempotent


def test_autogenerate_finds_no_difference(database_url):
    """The migrations describe exactly the models (a model change needs a migration)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    upgrade_database(database_url)
    with get_engine(database_url).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []
