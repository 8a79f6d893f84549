"""Issue 9, item 4: a role or password change, disabling or removing a user ends that user's
sessions; sessions have an absolute lifetime; cookies are Secure when the site is served over TLS."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from litestar.testing import TestClient
from psycopg import sql

from commands.service import HeatersApplication
from infra.database import DatabaseAddress, connect
from tests.integration.test_web_app import Web
from tests.security.web_support import PASSWORD, make_app, settings_for
from web.auth import add_user

pytestmark = pytest.mark.integration

HEATERS = str(Path(sys.executable).with_name("heaters"))


def cli(web: Web, *args: str) -> subprocess.CompletedProcess[str]:
    """``heaters`` in a real process on the test's database and schema."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEATERS_")}
    a = web.address
    env["HEATERS_DATABASE_URL"] = f"postgresql://{a.user}:@/{a.dbname}?host={a.host}&port={a.port}"
    env["HEATERS_DATABASE_SCHEMA"] = web.schema
    return subprocess.run([HEATERS, *args], capture_output=True, text=True, env=env, timeout=120)


def test_a_role_change_ends_the_users_sessions(web: Web) -> None:
    assert web.login("olga").status_code == 303
    assert web.client.get("/ops").status_code == 200
    add_user(web.address, web.schema, "olga", "reviewer", "a new long passphrase")
    assert web.client.get("/ops", follow_redirects=False).status_code == 303  # to the login page
    assert web.client.get("/api/review/pending").status_code == 401
    assert web.login("olga", "a new long passphrase").status_code == 303
    assert web.client.get("/ops").status_code == 403  # now a reviewer


def test_a_password_change_through_the_cli_ends_the_users_sessions(web: Web) -> None:
    assert web.login("rita").status_code == 303
    changed = cli(web, "user", "add", "rita", "--role", "reviewer", "--password", "another long passphrase")
    assert changed.returncode == 0, changed.stderr
    assert web.client.get("/api/review/pending").status_code == 401
    assert web.login("rita").status_code == 401  # the old password is gone
    assert web.login("rita", "another long passphrase").status_code == 303


def test_user_disable_and_remove(web: Web) -> None:
    assert web.login("rita").status_code == 303
    disabled = cli(web, "user", "disable", "rita")
    assert disabled.returncode == 0, disabled.stderr
    assert "1 session(s) ended" in disabled.stdout
    assert web.client.get("/api/review/pending").status_code == 401
    assert web.login("rita").status_code == 401  # the right password no longer opens it
    add_user(web.address, web.schema, "rita", "reviewer", "rita's fresh passphrase")
    assert web.login("rita", "rita's fresh passphrase").status_code == 303  # enabled again

    assert web.login("aldo").status_code == 303
    removed = cli(web, "user", "remove", "aldo")
    assert removed.returncode == 0, removed.stderr
    assert web.client.get("/videos", follow_redirects=False).status_code == 303
    assert web.login("aldo").status_code == 401
    missing = cli(web, "user", "remove", "nobody")
    assert missing.returncode != 0 and "no user named 'nobody'" in missing.stderr
    assert "Traceback" not in missing.stderr
    assert cli(web, "user", "disable", "nobody").returncode != 0


def _age_session(web: Web, seconds: float) -> None:
    """Move every session's absolute end ``seconds`` into the past (as if logged in long ago)."""
    with connect(web.address, autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "UPDATE {} SET data = convert_to(jsonb_set(convert_from(data, 'UTF8')::jsonb, '{{until}}', "
                "to_jsonb(extract(epoch FROM now()) - %s))::text, 'UTF8')"
            ).format(sql.Identifier(web.schema, "web_sessions")),
            (seconds,),
        )


def test_sessions_end_after_their_absolute_lifetime_however_busy(web: Web) -> None:
    assert web.login("rita").status_code == 303
    for _ in range(3):  # use renews the idle timeout...
        assert web.client.get("/api/review/pending").status_code == 200
    _age_session(web, 1)
    # ...but not the absolute end
    assert web.client.get("/api/review/pending").status_code == 401
    assert web.client.get("/review", follow_redirects=False).status_code == 303
    with connect(web.address, autocommit=True) as conn:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(web.schema, "web_sessions"))
        ).fetchone()
    assert row == (0,)  # the ended session was deleted
    assert web.login("rita").status_code == 303


def test_the_lifetime_is_a_setting(
    pg_address: DatabaseAddress, pg_schema: str, pg_app: HeatersApplication, tmp_path: Path
) -> None:
    import time

    add_user(pg_address, pg_schema, "rita", "reviewer", PASSWORD)
    settings = settings_for(pg_schema, tmp_path, session_lifetime_seconds=3600)
    with TestClient(
        make_app(settings, pg_app, pg_address, tmp_path), base_url="http://testserver.local"
    ) as c:
        c.get("/login")
        c.post("/login", data={"name": "rita", "password": PASSWORD, "_csrf_token": c.cookies["csrftoken"]})
        with connect(pg_address, autocommit=True) as conn:
            (data,) = conn.execute(
                sql.SQL("SELECT convert_from(data, 'UTF8')::jsonb->>'until' FROM {}").format(
                    sql.Identifier(pg_schema, "web_sessions")
                )
            ).fetchone() or (None,)
        assert data is not None and abs(float(data) - (time.time() + 3600)) < 60


@pytest.mark.parametrize("tls", [False, True])
def test_cookies_are_secure_when_served_over_tls(
    pg_address: DatabaseAddress, pg_schema: str, pg_app: HeatersApplication, tmp_path: Path, tls: bool
) -> None:
    add_user(pg_address, pg_schema, "rita", "reviewer", PASSWORD)
    settings = settings_for(pg_schema, tmp_path, web_tls=tls)
    scheme = "https" if tls else "http"
    with TestClient(
        make_app(settings, pg_app, pg_address, tmp_path), base_url=f"{scheme}://testserver.local"
    ) as c:
        first = c.get("/login")
        logged_in = c.post(
            "/login",
            data={"name": "rita", "password": PASSWORD, "_csrf_token": c.cookies["csrftoken"]},
            follow_redirects=False,
        )
        assert logged_in.status_code == 303
        cookies = first.headers.get_list("set-cookie") + logged_in.headers.get_list("set-cookie")
        assert {c.split("=", 1)[0] for c in cookies} >= {"csrftoken", "session"}
        for cookie in cookies:
            assert ("; Secure" in cookie or "; secure" in cookie) is tls, cookie
        assert ("strict-transport-security" in logged_in.headers) is tls
        # each later request sends the session cookie again (its Max-Age counts from the last
        # request), the same cookie as at login
        at_login = [c for c in logged_in.headers.get_list("set-cookie") if c.startswith("session=")]
        for _ in range(2):
            later = c.get("/healthz")
            assert later.status_code == 200
            assert [c for c in later.headers.get_list("set-cookie") if c.startswith("session=")] == at_login
        assert "Max-Age=" in at_login[0] and "HttpOnly" in at_login[0]
