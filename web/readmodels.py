"""The web app's pool on the read models: the queries themselves are ``projections.views`` (the read
side owns its SQL); ``ReadModels`` runs them on pooled connections whose ``search_path`` is the Heaters
schema, retrying once on a lost connection.

The web app never writes read models; review leases (``web/leases.py``), undo stacks
(``web/review.py``) and accounts (``web/auth.py``) are its own tables. Sprite manifests: ``web/media.py``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar
from uuid import UUID

import psycopg
from psycopg.rows import dict_row, tuple_row
from psycopg_pool import ConnectionPool

from infra.database import DatabaseAddress, check_idle_connection, retry_once_on_lost_connection
from projections import views

log = logging.getLogger(__name__)

_SCHEMA = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

Row = views.Row
T = TypeVar("T")


class ReadModels:
    """A connection pool on the Heaters schema and the queries of the web pages."""

    def __init__(
        self, address: DatabaseAddress, schema: str, *, min_size: int = 1, max_size: int = 8
    ) -> None:
        if not _SCHEMA.match(schema):
            raise ValueError(f"unsupported schema name {schema!r}")
        self.address = address
        self.schema = schema
        self.pool: ConnectionPool[psycopg.Connection[Row]] = ConnectionPool(
            address.conninfo(),
            min_size=min_size,
            max_size=max_size,
            kwargs={
                "autocommit": True,
                "options": f"-c search_path={schema},public",
                "row_factory": dict_row,
            },
            open=False,
            name="heaters-web",
            check=check_idle_connection,  # a connection the server closed is replaced
        )

    def open(self) -> None:
        self.pool.open(wait=False)

    def close(self) -> None:
        self.pool.close()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Row]]:
        with self.pool.connection(timeout=10.0) as conn:
            yield conn

    @contextmanager
    def tuple_connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection returning plain tuples (for ``projections.queries``)."""
        with self.connection() as conn:
            conn.row_factory = tuple_row  # type: ignore[assignment]
            try:
                yield conn
            finally:
                conn.row_factory = dict_row

    def all(self, query: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Row]:
        def read() -> list[Row]:
            with self.connection() as conn:
                return conn.execute(query, params).fetchall()  # type: ignore[arg-type]

        return retry_once_on_lost_connection("read model query", read)

    def one(self, query: str, params: Sequence[Any] | dict[str, Any] = ()) -> Row | None:
        def read() -> Row | None:
            with self.connection() as conn:
                return conn.execute(query, params).fetchone()  # type: ignore[arg-type]

        return retry_once_on_lost_connection("read model query", read)

    def read(self, query: Callable[..., T], *args: Any) -> T:
        """``query`` (one of ``projections.views``) on a pooled connection, retried once on a lost one."""

        def run() -> T:
            with self.connection() as conn:
                return query(conn, *args)

        return retry_once_on_lost_connection("read model query", run)

    # -- the queries of projections.views ----------------------------------------------------------

    def clip(self, clip_id: UUID) -> Row | None:
        return self.read(views.clip, clip_id)

    def video(self, video_id: UUID) -> Row | None:
        return self.read(views.video, video_id)

    def live_clips(self, video_id: UUID) -> list[Row]:
        return self.read(views.live_clips, video_id)

    def pending_count(self) -> int:
        return self.read(views.pending_count)

    def videos(self, limit: int = 200) -> list[Row]:
        return self.read(views.videos, limit)

    def skipped(self, limit: int = 500) -> list[Row]:
        return self.read(views.skipped, limit)

    def history(self, aggregate_id: UUID) -> list[Row]:
        return self.read(views.history, aggregate_id)

    def stage_stats(self) -> list[Row]:
        return self.read(views.stage_stats)

    def failed_videos(self) -> list[Row]:
        return self.read(views.failed_videos)

    def waiting_downloads(self) -> list[Row]:
        return self.read(views.waiting_downloads)

    def failed_clips(self) -> list[Row]:
        return self.read(views.failed_clips)

    def embedding_options(self) -> tuple[list[str], list[str]]:
        return self.read(views.embedding_options)

    def embeddings_of(self, clip_id: UUID) -> list[tuple[str, str]]:
        return self.read(views.embeddings_of, clip_id)

    def clips_by_id(self, ids: Sequence[UUID]) -> dict[UUID, Row]:
        return self.read(views.clips_by_id, ids)
