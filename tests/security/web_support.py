"""The web app for the security tests: in a TestClient, or served by uvicorn on loopback the way
``heaters up`` serves it (same server options)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from litestar import Litestar

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(app: Litestar, settings: Settings) -> Iterator[str]:
    """``app`` under uvicorn on a free loopback port, configured like ``heaters up``; yields its URL."""
    port = _free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", **server_options(settings)
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


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
