"""Issue 9, item 3: forwarded headers are believed only from configured proxies, and the login
limiter counts per client, per account and across web processes (in PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from commands.service import HeatersApplication
from infra.database import DatabaseAddress
from tests.security.web_support import PASSWORD, USERS, login, make_app, serve, settings_for
from web.auth import add_user

pytestmark = pytest.mark.integration


@pytest.fixture
def users(pg_address: DatabaseAddress, pg_schema: str) -> None:
    for name, role in USERS:
        add_user(pg_address, pg_schema, name, role, PASSWORD)


def test_forged_forwarded_for_does_not_dodge_the_limiter_by_default(
    pg_address: DatabaseAddress, pg_schema: str, pg_app: HeatersApplication, tmp_path: Path, users: None
) -> None:
    settings = settings_for(pg_schema, tmp_path)
    app = make_app(settings, pg_app, pg_address, tmp_path)
    with serve(app, settings) as base, httpx.Client(base_url=base) as client:
        codes = [
            login(client, "rita", "wrong password", **{"x-forwarded-for": f"203.0.113.{i}"}).status_code
            for i in range(8)
        ]
    assert codes[:5] == [401] * 5
    assert codes[5:] == [429] * 3, codes


def test_a_trusted_proxy_names_the_client_and_the_account_limit_still_holds(
    pg_address: DatabaseAddress, pg_schema: str, pg_app: HeatersApplication, tmp_path: Path, users: None
) -> None:
    settings = settings_for(pg_schema, tmp_path, trusted_proxies="127.0.0.1")
    app = make_app(settings, pg_app, pg_address, tmp_path)
    with serve(app, settings) as base, httpx.Client(base_url=base) as client:
        # the same client behind the proxy: limited at 5 like any client
        one = [
            login(client, "aldo", "wrong", **{"x-forwarded-for": "198.51.100.7"}).status_code
            for _ in range(6)
        ]
        assert one == [401] * 5 + [429]
        # another client behind the proxy is not that one
        assert login(client, "aldo", PASSWORD, **{"x-forwarded-for": "198.51.100.8"}).status_code == 303
        # many clients guessing one account: at most 2 x 5 failures a minute for the account
        spread = [
            login(client, "rita", "wrong", **{"x-forwarded-for": f"198.51.100.{20 + i}"}).status_code
            for i in range(12)
        ]
    assert spread == [401] * 10 + [429] * 2, spread


def test_the_limit_is_shared_by_every_web_process(
    pg_address: DatabaseAddress, pg_schema: str, pg_app: HeatersApplication, tmp_path: Path, users: None
) -> None:
    settings = settings_for(pg_schema, tmp_path)
    first = make_app(settings, pg_app, pg_address, tmp_path)
    second = make_app(settings, pg_app, pg_address, tmp_path)
    with (
        serve(first, settings) as base1,
        serve(second, settings) as base2,
        httpx.Client(base_url=base1) as one,
        httpx.Client(base_url=base2) as two,
    ):
        codes = [login(one if i % 2 else two, "olga", "wrong").status_code for i in range(6)]
        assert codes == [401] * 5 + [429]
        assert login(one, "olga").status_code == 429  # even the right password waits
        assert login(two, "rita").status_code == 303  # other accounts are not locked


@pytest.mark.parametrize("trusted", ["", "127.0.0.1"])
def test_heaters_up_believes_forwarded_for_only_from_trusted_proxies(
    pg_address: DatabaseAddress, pg_schema: str, tmp_path: Path, users: None, trusted: str
) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from bench.harness import free_port

    env = {k: v for k, v in os.environ.items() if not k.startswith("HEATERS_")}
    a = pg_address
    env["HEATERS_DATABASE_URL"] = f"postgresql://{a.user}:@/{a.dbname}?host={a.host}&port={a.port}"
    env["HEATERS_DATABASE_SCHEMA"] = pg_schema
    env["HEATERS_HOME"] = str(tmp_path / "home")
    env["HEATERS_TRUSTED_PROXIES"] = trusted
    port = free_port()
    heaters = str(Path(sys.executable).with_name("heaters"))
    command = [heaters, "up", "--port", str(port), "--no-pipeline", "--no-worker", "--no-projections"]
    log = (tmp_path / "up.log").open("wb")
    up = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/login", timeout=2)
                break
            except httpx.TransportError:
                assert up.poll() is None, (tmp_path / "up.log").read_text()
                assert time.monotonic() < deadline, "heaters up did not start serving"
                time.sleep(0.2)
        with httpx.Client(base_url=base) as client:
            codes = [
                login(client, "rita", "wrong", **{"x-forwarded-for": f"192.0.2.{i}"}).status_code
                for i in range(7)
            ]
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(30)
    if trusted:  # seven clients behind the proxy, each failing once: under every limit
        assert codes == [401] * 7, codes
    else:  # one client (the peer) whatever the header says
        assert codes == [401] * 5 + [429] * 2, codes
