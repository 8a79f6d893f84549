"""Shared fixtures. Integration tests get real PostgreSQL (the embedded server, with pgvector)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from psycopg import sql

from commands.service import HeatersApplication
from infra.database import DatabaseAddress, connect, embedded_postgres, eventsourcing_env
from infra.schema import prepare_schema
from projections.read_your_writes import close_listeners


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that needs no service and no browser is a unit test: ``pytest -m unit`` runs them alone."""
    for item in items:
        if item.get_closest_marker("integration") is None and item.get_closest_marker("browser") is None:
            item.add_marker(pytest.mark.unit)


@pytest.fixture
def memory_app() -> Iterator[HeatersApplication]:
    """The application on eventsourcing's in-memory store (unit tests)."""
    app = HeatersApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    yield app
    app.close()


@pytest.fixture(scope="session")
def pg_address() -> Iterator[DatabaseAddress]:
    """One embedded PostgreSQL 18 + pgvector server for the whole test session.

    Its data lives outside pytest's base temp: any other pytest session started on the machine
    resets ``/tmp/pytest-of-<user>`` to mode 0700, and the server, which runs as a user of its own,
    then cannot reach its files (it stopped with "pg_control: Permission denied" mid-run)."""
    with (
        tempfile.TemporaryDirectory(prefix="heaters-test-pg-", ignore_cleanup_errors=True) as home,
        embedded_postgres(Path(home)) as address,
    ):
        yield address
        close_listeners()  # read-your-writes listeners, before their server goes


@pytest.fixture
def pg_schema(pg_address: DatabaseAddress) -> Iterator[str]:
    """A fresh schema per test, dropped afterwards."""
    schema = f"t_{uuid4().hex[:12]}"
    prepare_schema(pg_address, schema)
    yield schema
    with connect(pg_address, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def pg_env(pg_address: DatabaseAddress, pg_schema: str) -> dict[str, str]:
    return eventsourcing_env(pg_address, pg_schema, pool_size=10)


@pytest.fixture
def pg_app(pg_env: dict[str, str]) -> Iterator[HeatersApplication]:
    app = HeatersApplication(env=pg_env)
    yield app
    app.close()


@pytest.fixture
def web(
    pg_address: DatabaseAddress, pg_schema: str, pg_app: HeatersApplication, tmp_path: Path
) -> Iterator[Any]:
    """The web app on the test's schema, a client, users and a projection daemon
    (``tests.integration.test_web_app.open_web``)."""
    from tests.integration.test_web_app import open_web

    with open_web(pg_address, pg_schema, pg_app, tmp_path) as opened:
        yield opened
