"""The web app in the production shape's bad moments: a database that dropped every connection, and
projections that cannot catch up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from commands.service import HeatersApplication
from infra.database import DatabaseAddress, connect
from tests.helpers import clipped_video
from tests.integration.test_web_app import Web, open_web

pytestmark = pytest.mark.integration


@pytest.fixture
def web(
    pg_address: DatabaseAddress, pg_schema: str, pg_app: HeatersApplication, tmp_path: Path
) -> Iterator[Web]:
    with open_web(pg_address, pg_schema, pg_app, tmp_path) as opened:
        yield opened


def terminate_every_other_backend(address: DatabaseAddress) -> int:
    """What a PostgreSQL restart or failover does to every pooled connection."""
    with connect(address, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        ).fetchone()
    return int(row[0]) if row else 0


def test_no_500_after_the_database_dropped_every_connection(web: Web) -> None:
    _, clips = clipped_video(web.heaters, cuts=(100, 200))
    assert web.login("rita").status_code == 303
    # warm every pool: sessions, read models, the event store
    assert web.client.get("/review").status_code == 200
    assert web.post(f"/api/clips/{clips[0]}/approve").status_code == 200

    assert terminate_every_other_backend(web.address) >= 3

    for url in ("/review", "/api/review/next?count=2", f"/api/clips/{clips[1]}", "/api/review/pending"):
        r = web.client.get(url)
        assert r.status_code == 200, (url, r.status_code, r.text[:300])
    r = web.post(f"/api/clips/{clips[1]}/approve")
    assert r.status_code == 200, r.text[:300]
    assert web.heaters.get_clip(clips[1]).state == "approved"
