"""The web app for the security tests: in a TestClient, or served by uvicorn on loopback the way
``heaters up`` serves it (same server options)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from litestar import Litestar

from bench import harness
from commands.service import HeatersApplication
from infra.config import Settings
from infra.database import DatabaseAddress
from infra.object_storage import LocalObjectStorage
from web.app import create_app
from web.security import server_options

PASSWORD = "correct horse battery"
USERS = (("rita", "reviewer"), ("aldo", "auditor"), ("olga", "ops"))


def settings_for(schema: str, tmp_path: Path, **extra: Any) -> Settings:
    return Settings(database_schema=schema, home=tmp_path, media_dir=tmp_path / "media", **extra)


def make_app(
    settings: Settings, heaters: HeatersApplication, address: DatabaseAddress, tmp_path: Path
) -> Litestar:
    storage = LocalObjectStorage(tmp_path / "media")
    return create_app(settings, heaters, address, storage, secret="test-secret")


@contextmanager
def serve(app: Litestar, settings: Settings) -> Iterator[str]:
    """``app`` under uvicorn on a free loopback port, configured like ``heaters up``; yields its URL."""
    with harness.serve(app, **server_options(settings)) as base:
        yield base


def login(client: httpx.Client, name: str, password: str = PASSWORD, **headers: str) -> httpx.Response:
    """Log in through the form (GET for the CSRF cookie, then POST); the response is not followed."""
    client.get("/login")
    token = client.cookies.get("csrftoken") or ""
    return client.post(
        "/login",
        data={"name": name, "password": password, "_csrf_token": token, "next": "/"},
        headers=headers,
        follow_redirects=False,
    )
