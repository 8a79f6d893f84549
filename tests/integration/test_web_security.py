"""Sessions, roles, CSRF, escaping and the login rate limit of the web app."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from psycopg import sql

from infra.database import connect
from tests.helpers import PIPELINE, clipped_video
from tests.integration.test_web_app import PASSWORD, Web
from web.auth import hash_password

pytestmark = pytest.mark.integration


ZERO = "00000000-0000-0000-0000-000000000000"
HTML_ROUTES = [
    "/", "/review", f"/review?clip={ZERO}", "/search", "/videos", f"/videos/{ZERO}/history",
    f"/clips/{ZERO}/history", "/ops", "/media/videos/x.jpg",
]  # fmt: skip
API_GETS = [
    "/api/review/next",
    "/api/review/pending",
    f"/api/clips/{ZERO}",
    f"/api/clips/{ZERO}/siblings",
    "/api/projections",
    "/api/search",
]
API_POSTS = [
    *(f"/api/clips/{ZERO}/{a}" for a in ("approve", "skip", "archive", "undo", "split", "merge", "group")),
    f"/api/retry/{ZERO}", "/api/projections/clips/rebuild", "/api/review/leases/renew",
]  # fmt: skip


def test_without_a_session_pages_redirect_and_the_api_says_401(web: Web) -> None:
    for url in HTML_ROUTES:
        r = web.client.get(url, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next="), url
    for url in API_GETS:
        assert web.client.get(url).status_code == 401, url
    web.client.get("/login")
    for url in API_POSTS:
        r = web.post(url, {"frame": 5} if url.endswith("split") else None)
        assert r.status_code == 401 and r.json()["error"], url
    for url in ("/ops/retry/" + ZERO, "/ops/rebuild/clips"):
        r = web.client.post(url, data={"_csrf_token": web.token}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), url


@pytest.mark.parametrize(
    ("who", "allowed", "refused"),
    [
        ("rita", ["/review", "/search", "/api/review/pending"], ["/ops", "/videos", f"/videos/{ZERO}/history", "/api/projections"]),
        ("aldo", ["/videos", "/search"], ["/review", "/ops", "/api/review/next", "/api/projections"]),
        ("olga", ["/review", "/videos", "/ops", "/search", "/api/projections"], []),
    ],
)  # fmt: skip
def test_roles(web: Web, who: str, allowed: list[str], refused: list[str]) -> None:
    assert web.login(who).status_code == 303
    for url in allowed:
        assert web.client.get(url).status_code == 200, url
    for url in refused:
        assert web.client.get(url).status_code == 403, url
    if who == "aldo":
        assert web.post(f"/api/clips/{ZERO}/approve").status_code == 403
    if who == "rita":
        assert web.post(f"/api/retry/{ZERO}").status_code == 403
        assert web.post("/api/projections/clips/rebuild").status_code == 403


def test_csrf_is_required_on_every_state_change(web: Web) -> None:
    _video_id, clips = clipped_video(web.heaters)
    web.client.get("/login")
    no_token = web.client.post("/login", data={"name": "rita", "password": PASSWORD})
    assert no_token.status_code == 403
    assert web.login("rita").status_code == 303
    url = f"/api/clips/{clips[0]}/approve"
    assert web.client.post(url).status_code == 403
    assert web.client.post(url, headers={"x-csrftoken": "forged"}).status_code == 403
    assert web.client.post("/logout").status_code == 403
    assert web.heaters.get_clip(clips[0]).state == "pending_review"
    assert web.post(url).status_code == 200


def test_titles_and_user_names_are_escaped(web: Web) -> None:
    evil = "<script>alert('x')</script>"
    video_id = web.heaters.submit("/videos/evil.mp4", f"user:{evil}")
    attempt = web.heaters.start_video_stage(video_id, "download", PIPELINE)
    web.heaters.record_downloaded(
        video_id, attempt, PIPELINE, media_key=f"videos/{video_id}/source.mp4", title=evil,
        original_url=None, checksum="0" * 64, duration=12.0, fps=25.0, frame_count=300, width=320,
        height=240, codec="h264",
    )  # fmt: skip
    attempt = web.heaters.start_video_stage(video_id, "proxy", PIPELINE)
    web.heaters.record_proxy(video_id, attempt, "p.mp4", 320, 240, PIPELINE)
    attempt = web.heaters.start_video_stage(video_id, "sprites", PIPELINE)
    web.heaters.record_sprites(video_id, attempt, f"videos/{video_id}/sprites/manifest.json", PIPELINE)
    attempt = web.heaters.start_video_stage(video_id, "shots", PIPELINE)
    web.heaters.record_shots(video_id, attempt, [100], "test", {}, PIPELINE)
    with connect(web.address, autocommit=True) as conn:
        conn.execute(
            sql.SQL("INSERT INTO {} (name, role, password_hash) VALUES (%s, 'ops', %s)").format(
                sql.Identifier(web.schema, "users")
            ),
            (evil, hash_password(PASSWORD)),
        )
    assert web.login(evil).status_code == 303
    from projections.runner import catch_up

    catch_up(web.heaters, web.address)
    for url in ("/review", "/videos", f"/videos/{video_id}/history", "/ops", "/search"):
        page = web.client.get(url)
        assert page.status_code == 200, url
        assert evil not in page.text, url
    assert (
        "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"
        in web.client.get(f"/videos/{video_id}/history").text
    )
    review = web.client.get("/review").text
    assert "\\u003cscript\\u003e" in review  # the queue's JSON is HTML-safe too


def test_login_is_rate_limited(web: Web) -> None:
    for _ in range(5):
        assert web.login("rita", "wrong password").status_code == 401
    limited = web.login("rita", "wrong password")
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
    assert web.login("rita").status_code == 429  # even the right password waits
    assert web.login("aldo").status_code == 303  # other users are not locked out


def test_sessions_live_in_postgres_shared_by_processes_and_kept_across_restarts(
    web: Web, tmp_path: Path
) -> None:
    from litestar.testing import TestClient

    from infra.config import Settings
    from web.app import create_app

    def rows() -> list[tuple[bytes, bool]]:
        with connect(web.address, autocommit=True) as conn:
            return [
                (bytes(r[0]), bool(r[1]))
                for r in conn.execute(
                    sql.SQL("SELECT key_digest, expires_at > now() FROM {}").format(
                        sql.Identifier(web.schema, "web_sessions")
                    )
                ).fetchall()
            ]

    web.client.get("/login")
    assert rows() == []  # an anonymous visit stores no session
    assert web.login("rita").status_code == 303
    cookie = str(web.client.cookies.get("session"))
    assert len(rows()) == 1 and rows()[0][1]
    assert rows()[0][0] == hashlib.sha256(cookie.encode()).digest()  # the id itself is not stored
    assert web.login("rita").status_code == 303  # a new login rotates the id and drops the old row
    assert str(web.client.cookies.get("session")) != cookie and len(rows()) == 1

    # a second web process on the same schema (or this one after a restart) knows the session
    settings = Settings(database_schema=web.schema, home=tmp_path, media_dir=tmp_path / "media")
    other = create_app(settings, web.heaters, web.address, web.storage, secret="test-secret")
    with TestClient(other, base_url="http://testserver.local") as second:
        second.cookies.update(web.client.cookies)
        assert second.get("/api/review/pending").status_code == 200
        assert second.get("/review").status_code == 200
        out = second.post("/logout", headers={"x-csrftoken": web.token}, follow_redirects=False)
        assert out.status_code == 303
        assert rows() == []
        assert second.get("/api/review/pending").status_code == 401
    assert web.client.get("/api/review/pending").status_code == 401  # logged out everywhere


def test_the_session_store_expires_renews_and_purges(web: Web) -> None:
    import asyncio

    from web.sessions import PostgresSessionStore

    store = PostgresSessionStore(web.address, web.schema)
    store.open()
    try:

        async def scenario() -> None:
            await store.set("a", b"one", expires_in=60)
            await store.set("b", "two")
            assert await store.get("a") == b"one" and await store.exists("b")
            assert 55 <= (await store.expires_in("a") or 0) <= 60 and await store.expires_in("b") is None
            assert await store.get("a", renew_for=3600) == b"one"
            assert (await store.expires_in("a") or 0) > 3500
            with connect(web.address, autocommit=True) as conn:
                conn.execute(
                    sql.SQL(
                        "UPDATE {} SET expires_at = now() - interval '1 second' WHERE expires_at IS NOT NULL"
                    ).format(sql.Identifier(web.schema, "web_sessions"))
                )
            assert await store.get("a") is None and not await store.exists("a")
            assert await store.get("a", renew_for=60) is None  # an expired session is not revived
            assert await store.get("b") == b"two"  # no expiry
            await store.delete("b")
            assert not await store.exists("b")

        asyncio.run(scenario())
        assert store.purge() == 1 and store.count() == 0
    finally:
        store.close()


def test_session_reads_share_a_few_connections_of_their_event_loop(web: Web) -> None:
    """Every request reads its session, on the request's own event loop: many at once share at most
    ``max_size`` connections (the others wait for one), and closing the store closes them."""
    import asyncio
    import time

    from web.sessions import PostgresSessionStore

    store = PostgresSessionStore(web.address, web.schema, max_size=2)
    store.open()

    def reading() -> int:
        with connect(web.address, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT data FROM%%web_sessions%%'"
            ).fetchone()
        assert row is not None
        return int(row[0])

    try:

        async def scenario() -> None:
            await store.set("k", b"value", expires_in=600)
            found = await asyncio.gather(*(store.get("k") for _ in range(40)))
            assert found == [b"value"] * 40
            assert reading() <= 2
            assert await store.get("missing") is None

        asyncio.run(scenario())
        store.close()
        deadline = time.monotonic() + 5  # a backend leaves pg_stat_activity once it has exited
        while reading() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert reading() == 0
        store.open()  # and opens again, on a new loop
        assert asyncio.run(store.get("k")) == b"value"
    finally:
        store.close()


def test_a_session_read_on_every_request_is_renewed_about_once_a_minute(web: Web) -> None:
    """Reading a session renews it (the idle timeout counts from the last request), but the row is
    written only once its expiry has fallen behind by the slack: requests in a burst only read."""
    import asyncio

    from web.sessions import RENEW_SLACK, PostgresSessionStore

    store = PostgresSessionStore(web.address, web.schema)
    store.open()
    table = sql.Identifier(web.schema, "web_sessions")

    def stored() -> tuple[object, object]:
        """The row's expiry and its row version (``xmin`` changes whenever the row is written)."""
        with connect(web.address, autocommit=True) as conn:
            row = conn.execute(
                sql.SQL("SELECT expires_at, xmin::text FROM {} WHERE key_digest = %s").format(table),
                (hashlib.sha256(b"s").digest(),),
            ).fetchone()
        assert row is not None
        return row[0], row[1]

    try:

        async def scenario() -> None:
            await store.set("s", b"data", expires_in=3600)
            written = stored()
            for _ in range(5):  # within the slack: read, not written
                assert await store.get("s", renew_for=3600) == b"data"
            assert stored() == written
            with connect(web.address, autocommit=True) as conn:  # the expiry fell behind
                conn.execute(
                    sql.SQL("UPDATE {} SET expires_at = now() + make_interval(secs => %s)").format(table),
                    (3600 - RENEW_SLACK - 5,),
                )
            assert await store.get("s", renew_for=3600) == b"data"
            assert (await store.expires_in("s") or 0) >= 3600 - 2
            once = stored()
            assert await store.get("s", renew_for=3600) == b"data"
            assert stored() == once

        asyncio.run(scenario())
    finally:
        store.close()
