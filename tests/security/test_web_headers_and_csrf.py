"""Issue 9, item 6: CSRF tokens bound to the session, security headers on every response, media not
cached past logout, strong passwords, and ``/schema`` served without a CDN."""

from __future__ import annotations

import re

import pytest
from litestar.middleware.csrf import generate_csrf_token

from tests.helpers import clipped_video
from tests.integration.test_web_app import Web
from web.auth import add_user, check_password

pytestmark = pytest.mark.integration


def test_a_csrf_token_from_outside_the_session_is_refused(web: Web) -> None:
    _video_id, clips = clipped_video(web.heaters)
    # an attacker gets a valid token of their own (a signed one, as any anonymous visit gets)...
    planted = generate_csrf_token(secret="test-secret")
    # ...and plants it in the victim's browser before the victim logs in (cookie tossing)
    web.client.get("/login")
    web.client.cookies.set("csrftoken", planted, domain="testserver.local")
    assert web.login("rita").status_code == 303
    own = web.token
    assert own != planted  # login issued the session its own token
    url = f"/api/clips/{clips[0]}/approve"
    # the planted token, sent as cookie and header alike, passes the double-submit check but is
    # not the session's: refused
    web.client.cookies.set("csrftoken", planted, domain="testserver.local")
    refused = web.client.post(url, headers={"x-csrftoken": planted})
    assert refused.status_code == 403 and "does not belong to this session" in refused.json()["error"]
    assert web.heaters.get_clip(clips[0]).state == "pending_review"
    web.client.cookies.set("csrftoken", own, domain="testserver.local")
    assert web.client.post(url, headers={"x-csrftoken": own}).status_code == 200


def test_pages_and_errors_send_the_security_headers(web: Web) -> None:
    assert web.login("olga").status_code == 303
    for url in ("/review", "/ops", "/videos", "/search", "/login", "/nope", "/api/projections", "/schema"):
        response = web.client.get(url)
        csp = response.headers.get("content-security-policy", "")
        assert "frame-ancestors 'none'" in csp, url
        script = re.search(r"script-src ([^;]*)", csp)
        assert script and "'unsafe-inline'" not in script.group(1), url
        assert response.headers["x-frame-options"] == "DENY", url
        assert response.headers["referrer-policy"] == "same-origin", url
        assert response.headers["x-content-type-options"] == "nosniff", url
    assert web.client.get("/review").headers["cache-control"] == "no-store"


def test_no_page_has_inline_script(web: Web) -> None:
    clipped_video(web.heaters)
    assert web.login("olga").status_code == 303
    for url in ("/review", "/ops", "/videos", "/search", "/schema", "/schema/swagger"):
        page = web.client.get(url)
        assert page.status_code == 200, url
        for tag in re.findall(r"<script\b[^>]*>", page.text):
            assert "src=" in tag or 'type="application/json"' in tag, (url, tag)
        assert not re.search(r"\son[a-z]+\s*=", page.text), url  # no inline event handlers


def test_media_is_revalidated_and_logout_clears_the_cache(web: Web) -> None:
    key = "videos/v1/sprites/sheet_0.jpg"
    web.storage.put_bytes(key, b"\xff\xd8\xff\xe0 jpeg", "image/jpeg")
    assert web.login("rita").status_code == 303
    media = web.client.get(f"/media/{key}")
    assert media.status_code == 200
    cache = media.headers["cache-control"]
    assert "private" in cache and ("no-store" in cache or "no-cache" in cache) and "max-age=3600" not in cache
    etag = media.headers["etag"]
    unchanged = web.client.get(f"/media/{key}", headers={"if-none-match": etag})
    assert unchanged.status_code == 304 and unchanged.content == b""  # revalidation is cheap
    out = web.client.post("/logout", headers={"x-csrftoken": web.token}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["clear-site-data"] == '"cache"'
    again = web.client.get(f"/media/{key}", headers={"if-none-match": etag}, follow_redirects=False)
    assert again.status_code == 303  # revalidating after logout gets the login page, not the image


@pytest.mark.parametrize(
    "password", ["        ", "password1", "short pass", "passwordpassword", "qwerty123456", "aaaaaaaaaaaaaaa"]
)
def test_weak_passwords_are_refused(password: str) -> None:
    with pytest.raises(ValueError, match=r"at least 12 characters|too common or too easy"):
        check_password(password)


def test_weak_passwords_are_refused_by_the_cli(web: Web) -> None:
    from tests.security.test_web_sessions_end import cli

    weak = cli(web, "user", "add", "ops2", "--role", "ops", "--password", "password1234")
    assert weak.returncode != 0 and "too common" in weak.stderr and "Traceback" not in weak.stderr
    spaces = cli(web, "user", "add", "ops2", "--role", "ops", "--password", " " * 8)
    assert spaces.returncode != 0 and "at least 12 characters" in spaces.stderr
    with pytest.raises(ValueError):
        add_user(web.address, web.schema, "ops2", "ops", "ops2ops2ops2")
    assert (
        cli(web, "user", "add", "ops2", "--role", "ops", "--password", "violet mango kestrel").returncode == 0
    )


def test_the_schema_page_serves_its_assets_itself(web: Web) -> None:
    page = web.client.get("/schema")
    assert page.status_code == 200
    assert not re.search(r"(src|href)=[\"']?(https?:)?//", page.text), page.text  # no CDN
    assets = re.findall(r"(?:src|href)=\"(/[^\"]+)\"", page.text)
    assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets)
    for asset in assets:
        response = web.client.get(asset)
        assert response.status_code == 200 and len(response.content) > 100, asset
    spec = web.client.get("/schema/openapi.json")
    assert spec.status_code == 200 and "/api/review/next" in spec.json()["paths"]


def test_a_lost_or_stale_csrf_cookie_is_restored_by_reading_a_page(web: Web) -> None:
    _video_id, clips = clipped_video(web.heaters)
    assert web.login("rita").status_code == 303
    own = web.token
    web.client.cookies.delete("csrftoken")
    page = web.client.get("/review")
    assert page.status_code == 200 and f'content="{own}"' in page.text  # the session's token
    assert web.token == own  # and the cookie is back
    web.client.cookies.set("csrftoken", generate_csrf_token(secret="test-secret"), domain="testserver.local")
    assert web.client.get("/search").status_code == 200
    assert web.token == own
    assert web.post(f"/api/clips/{clips[0]}/approve").status_code == 200
