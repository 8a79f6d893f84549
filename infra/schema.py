"""Every table of the Heaters schema that is not a read model, in one place, applied in one step.

``prepare_schema`` creates the schema and these tables (and brings older ones up to date) in one
transaction; ``entrypoints.bootstrap`` calls it once per process, before anything uses the database,
so no constructor creates tables. The event store's own table is eventsourcing's; the read models
(``rm_*``) and the projections' bookkeeping are created by their projections
(``projections/schema.py``), because a rebuild makes them again under another name.

| table | written by |
| --- | --- |
| ``users``, ``login_failures`` | ``web.auth`` (``heaters user``, logins) |
| ``web_sessions`` | ``web.sessions`` |
| ``review_leases``, ``review_undo`` | the review service (``web.review``, ``web.readmodels``) |
| ``pipeline_tracking``, ``pipeline_work`` | the process manager (through ``infra.log_follower``) and the work ledger (``processors/``) |

Change a statement or add one: bump ``SCHEMA_VERSION`` so running databases apply it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from infra.database import DatabaseAddress, connect

#: The version of the statements below; a database whose ``heaters_schema`` row says so skips them.
SCHEMA_VERSION = 2

#: ``{s}`` is the schema. Statements for tables older versions made stay (idempotent), in order.
STATEMENTS: tuple[str, ...] = (
    # -- accounts (web.auth) --
    """CREATE TABLE IF NOT EXISTS {s}.users (
           name text PRIMARY KEY,
           role text NOT NULL CHECK (role IN ('reviewer', 'auditor', 'ops')),
           password_hash text NOT NULL,
           created_at timestamptz NOT NULL DEFAULT now(),
           disabled_at timestamptz
       )""",
    "ALTER TABLE {s}.users ADD COLUMN IF NOT EXISTS disabled_at timestamptz",
    # One row per failed login; rows older than the limiter's window are purged as new ones come.
    """CREATE TABLE IF NOT EXISTS {s}.login_failures (
           client text NOT NULL,
           account text NOT NULL,
           failed_at timestamptz NOT NULL DEFAULT now()
       )""",
    "CREATE INDEX IF NOT EXISTS login_failures_client_idx ON {s}.login_failures (client, failed_at)",
    "CREATE INDEX IF NOT EXISTS login_failures_account_idx ON {s}.login_failures (account, failed_at)",
    "CREATE INDEX IF NOT EXISTS login_failures_time_idx ON {s}.login_failures (failed_at)",
    # -- web sessions (web.sessions) --
    """CREATE TABLE IF NOT EXISTS {s}.web_sessions (
           key_digest bytea PRIMARY KEY,
           data bytea NOT NULL,
           expires_at timestamptz,
           updated_at timestamptz NOT NULL DEFAULT now(),
           user_name text
       )""",
    "ALTER TABLE {s}.web_sessions ADD COLUMN IF NOT EXISTS user_name text",
    "CREATE INDEX IF NOT EXISTS web_sessions_expires_idx ON {s}.web_sessions (expires_at)"
    " WHERE expires_at IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS web_sessions_user_idx ON {s}.web_sessions (user_name)"
    " WHERE user_name IS NOT NULL",
    # -- review: a clip held in one reviewer's queue (``opened``: on their screen), undo stacks --
    """CREATE TABLE IF NOT EXISTS {s}.review_leases (
           clip_id uuid PRIMARY KEY,
           reviewer text NOT NULL,
           expires_at timestamptz NOT NULL,
           opened boolean NOT NULL DEFAULT false
       )""",
    "ALTER TABLE {s}.review_leases ADD COLUMN IF NOT EXISTS opened boolean NOT NULL DEFAULT false",
    """CREATE TABLE IF NOT EXISTS {s}.review_undo (
           id bigserial PRIMARY KEY,
           reviewer text NOT NULL,
           clip_id uuid NOT NULL,
           action text NOT NULL,
           at timestamptz NOT NULL DEFAULT now()
       )""",
    "CREATE INDEX IF NOT EXISTS review_undo_reviewer ON {s}.review_undo (reviewer, id)",
    # -- the pipeline's position in the log and its outbox (processors/) --
    """CREATE TABLE IF NOT EXISTS {s}.pipeline_tracking (
           name text PRIMARY KEY,
           position bigint NOT NULL
       )""",
    # Version 2: the log follower's tracking shape, that of projection_positions (positions kept).
    """ALTER TABLE {s}.pipeline_tracking
           ADD COLUMN IF NOT EXISTS state text NOT NULL DEFAULT 'running',
           ADD COLUMN IF NOT EXISTS updated_at timestamptz NOT NULL DEFAULT now()
    """,
    """CREATE TABLE IF NOT EXISTS {s}.pipeline_work (
           aggregate_id uuid NOT NULL,
           stage text NOT NULL,
           state text NOT NULL,                 -- dispatched, done, failed, cancelled
           due_at timestamptz NOT NULL,         -- when the work is due (now, or after a grace period)
           dispatched_at timestamptz,           -- when an event last asked for it
           dispatch_count integer NOT NULL DEFAULT 0,
           event_position bigint NOT NULL,      -- the event that asked for it
           PRIMARY KEY (aggregate_id, stage)
       )""",
    """ALTER TABLE {s}.pipeline_work
           ADD COLUMN IF NOT EXISTS sent_at timestamptz,        -- NULL while dispatched: in the outbox
           ADD COLUMN IF NOT EXISTS start_by timestamptz,       -- sent and not claimed by then: resend
           ADD COLUMN IF NOT EXISTS run_token uuid,             -- the attempt that holds the work now
           ADD COLUMN IF NOT EXISTS started_at timestamptz,
           ADD COLUMN IF NOT EXISTS heartbeat_at timestamptz,   -- NULL when no worker runs it
           ADD COLUMN IF NOT EXISTS resends integer NOT NULL DEFAULT 0,
           ADD COLUMN IF NOT EXISTS runs integer NOT NULL DEFAULT 0,
           ADD COLUMN IF NOT EXISTS last_error text,
           ADD COLUMN IF NOT EXISTS worker text                 -- host:pid of the worker that claimed it
    """,
)

#: An advisory lock of its own, so that processes starting at once do not create the same table twice.
_LOCK = 0x6865617465727301


@contextmanager
def schema_lock(address: DatabaseAddress) -> Iterator[None]:
    """Hold the schema lock: processes starting at once take turns at ``CREATE ... IF NOT EXISTS``
    (not safe under concurrency: the loser fails on a duplicate catalogue row or "tuple concurrently
    updated"), ours and eventsourcing's alike."""
    with connect(address, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK,))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK,))


def _at_version(conn: psycopg.Connection[tuple[object, ...]], schema: str) -> bool:
    if conn.execute("SELECT to_regclass(%s)", (f'"{schema}".heaters_schema',)).fetchone() == (None,):
        return False
    version = sql.SQL("{}.heaters_schema").format(sql.Identifier(schema))
    row = conn.execute(sql.SQL("SELECT max(version) FROM {}").format(version)).fetchone()
    return row is not None and row[0] == SCHEMA_VERSION


def prepare_schema(address: DatabaseAddress, schema: str) -> None:
    """Create ``schema`` and its tables if missing, in one transaction (idempotent), under the schema
    lock. Skips the DDL (whose locks would wait behind running transactions) when the schema is
    already at ``SCHEMA_VERSION``."""
    s = sql.Identifier(schema)
    version = sql.SQL("{}.heaters_schema").format(s)
    with connect(address, autocommit=True) as conn:
        if _at_version(conn, schema):
            return
    with schema_lock(address), connect(address, autocommit=True) as conn:
        if _at_version(conn, schema):  # another process did it while we waited
            return
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(s))
        with conn.transaction():
            for statement in STATEMENTS:
                conn.execute(sql.SQL(statement).format(s=s))  # type: ignore[arg-type]
            conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (version integer NOT NULL)").format(version))
            conn.execute(sql.SQL("DELETE FROM {}").format(version))
            conn.execute(sql.SQL("INSERT INTO {} VALUES (%s)").format(version), (SCHEMA_VERSION,))
