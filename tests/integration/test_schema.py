"""One schema step: ``prepare_schema`` makes every table that is not a read model, once, and the
services built on the database do no DDL or I/O of their own."""

from __future__ import annotations

from uuid import uuid4

import pytest
from psycopg import sql

from commands.service import HeatersApplication
from infra.database import DatabaseAddress, connect
from infra.schema import SCHEMA_VERSION, prepare_schema
from processors.process_manager import PipelineProcessManager

pytestmark = pytest.mark.integration

TABLES = {
    "users",
    "login_failures",
    "web_sessions",
    "review_leases",
    "review_undo",
    "pipeline_tracking",
    "pipeline_work",
    "heaters_schema",
}


def _tables(address: DatabaseAddress, schema: str) -> set[str]:
    with connect(address) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
        ).fetchall()
    return {r[0] for r in rows}


def test_prepare_creates_every_table_once_and_upgrades_old_ones(pg_address: DatabaseAddress) -> None:
    schema = f"t_{uuid4().hex[:12]}"
    try:
        prepare_schema(pg_address, schema)
        assert _tables(pg_address, schema) == TABLES
        # A database of an older version: a lease table without ``opened``, no version row.
        with connect(pg_address, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP TABLE {}.review_leases").format(sql.Identifier(schema)))
            conn.execute(
                sql.SQL(
                    "CREATE TABLE {}.review_leases (clip_id uuid PRIMARY KEY, reviewer text NOT NULL,"
                    " expires_at timestamptz NOT NULL)"
                ).format(sql.Identifier(schema))
            )
            conn.execute(sql.SQL("DELETE FROM {}.heaters_schema").format(sql.Identifier(schema)))
        prepare_schema(pg_address, schema)
        prepare_schema(pg_address, schema)  # idempotent
        with connect(pg_address) as conn:
            columns = {
                r[0]
                for r in conn.execute(
                    "SELECT column_name FROM information_schema.columns"
                    " WHERE table_schema = %s AND table_name = 'review_leases'",
                    (schema,),
                ).fetchall()
            }
            versions = conn.execute(
                sql.SQL("SELECT version FROM {}.heaters_schema").format(sql.Identifier(schema))
            ).fetchall()
        assert "opened" in columns
        assert versions == [(SCHEMA_VERSION,)]
    finally:
        with connect(pg_address, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def test_building_the_process_manager_does_no_io(pg_app: HeatersApplication) -> None:
    """A manager on a database nobody listens on builds fine: it connects only when first used."""
    nowhere = DatabaseAddress(host="127.0.0.1", port=9, user="x", password="x", dbname="x")
    manager = PipelineProcessManager(pg_app, nowhere, "nowhere", lambda *_: None)
    manager.stop()


def test_a_version_one_pipeline_position_survives_the_upgrade(
    pg_app: HeatersApplication, pg_address: DatabaseAddress, pg_schema: str
) -> None:
    """Version 2 gives ``pipeline_tracking`` the log follower's shape; the process manager resumes from
    the position a version 1 database recorded, and reads nothing before it again."""
    first = pg_app.submit("/videos/a.mp4", "user:alice")
    second = pg_app.submit("/videos/b.mp4", "user:alice")
    done = int(pg_app.recorder.max_notification_id() or 0) - 1  # the first video's event handled
    s = sql.Identifier(pg_schema)
    with connect(pg_address, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP TABLE {}.pipeline_tracking").format(s))
        conn.execute(
            sql.SQL(
                "CREATE TABLE {}.pipeline_tracking (name text PRIMARY KEY, position bigint NOT NULL)"
            ).format(s)
        )
        conn.execute(sql.SQL("INSERT INTO {}.pipeline_tracking VALUES ('pipeline', %s)").format(s), (done,))
        conn.execute(sql.SQL("UPDATE {}.heaters_schema SET version = 1").format(s))
    prepare_schema(pg_address, pg_schema)
    prepare_schema(pg_address, pg_schema)  # idempotent
    sent: list[tuple[str, object]] = []
    manager = PipelineProcessManager(
        pg_app, pg_address, pg_schema, lambda stage, i, _: sent.append((stage, i))
    )
    try:
        assert manager.position() == done
        assert manager.catch_up() == 1
    finally:
        manager.stop()
    assert sent == [("download", second)] and first != second
