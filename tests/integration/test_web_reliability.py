"""The web app in the production shape's bad moments: a database that dropped every connection, and
projections that cannot catch up."""

from __future__ import annotations

from pathlib import Path

import pytest
from litestar.testing import TestClient

from commands.service import HeatersApplication
from infra.config import Settings
from infra.database import DatabaseAddress, connect
from infra.object_storage import LocalObjectStorage
from projections.runner import ProjectionDaemon
from tests.helpers import clipped_video
from tests.integration.test_web_app import PASSWORD, Web
from web.app import create_app
from web.auth import add_user

pytestmark = pytest.mark.integration


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


def test_with_projections_stopped_an_action_says_so_and_the_queue_serves_no_retired_clip(
    pg_address: DatabaseAddress, pg_schema: str, pg_app: HeatersApplication, tmp_path: Path
) -> None:
    settings = Settings(database_schema=pg_schema, home=tmp_path, media_dir=tmp_path / "media")
    add_user(pg_address, pg_schema, "rita", "reviewer", PASSWORD)
    daemon = ProjectionDaemon(pg_app, pg_address)
    daemon.start()
    app = create_app(
        settings, pg_app, pg_address, LocalObjectStorage(tmp_path / "media"), secret="s", settle_timeout=0.5
    )
    with TestClient(app, base_url="http://testserver.local") as client:
        web = Web(pg_app, pg_address, pg_schema, LocalObjectStorage(tmp_path / "media"), client)
        _, clips = clipped_video(pg_app, cuts=(100, 200))
        assert web.login("rita").status_code == 303
        r = web.post(f"/api/clips/{clips[1]}/split", {"frame": 150})
        assert r.status_code == 200 and r.headers["x-heaters-caught-up"] == "true", r.text
        left, right = r.json()["new_clip_ids"]
        daemon.stop()  # the projection daemons die

        r = web.post(f"/api/clips/{right}/undo")  # the split is undone: left and right are retired
        assert r.status_code == 200, r.text
        assert r.json()["caught_up"] is False
        assert r.headers["x-heaters-caught-up"] == "false"
        assert "still catching up" in r.json()["message"]

        # the read models still list left and right as pending; the queue must not serve them
        served = [c["id"] for c in web.client.get("/api/review/next?count=5").json()["clips"]]
        assert str(left) not in served and str(right) not in served
        assert served == [str(clips[0]), str(clips[2])]
