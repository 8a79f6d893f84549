"""The review page tells the reviewer when the read models could not show a decision in time."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import uvicorn

from commands.service import HeatersApplication
from infra.config import Settings
from infra.database import DatabaseAddress
from infra.object_storage import LocalObjectStorage
from projections.runner import ProjectionDaemon
from tests.browser.test_review_page import ARGS, CHROMIUM, PASSWORD, _free_port, _video_with_sprites
from web.app import create_app
from web.auth import add_user

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def test_an_approval_the_read_models_lag_behind_is_flagged_on_the_page(
    pg_address: DatabaseAddress, pg_schema: str, pg_app: HeatersApplication, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is not installed (apt-get install -y chromium)")
    storage = LocalObjectStorage(tmp_path / "media")
    settings = Settings(database_schema=pg_schema, home=tmp_path, media_dir=tmp_path / "media")
    _video_with_sprites(pg_app, storage, tmp_path)
    add_user(pg_address, pg_schema, "rita", "reviewer", PASSWORD)
    daemon = ProjectionDaemon(pg_app, pg_address)
    daemon.start()
    app = create_app(settings, pg_app, pg_address, storage, settle_timeout=0.5)
    port = _free_port()
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            try:
                page = browser.new_page(viewport={"width": 1200, "height": 900})
                page.set_default_timeout(10_000)
                page.goto(f"http://127.0.0.1:{port}/review")
                page.fill("input[name=name]", "rita")
                page.fill("input[name=password]", PASSWORD)
                page.click("button[type=submit]")
                expect(page.locator("#pending-badge")).to_have_text("3")
                daemon.stop()  # the projection daemons die
                page.keyboard.down("a")
                page.keyboard.press("Enter")
                page.keyboard.up("a")
                flash = page.locator("#flash")
                expect(flash).to_contain_text("still catching up")
                expect(flash).to_have_class("flash err")  # the warning style, shown longer
            finally:
                browser.close()
    finally:
        uv.should_exit = True
        thread.join(10)
        daemon.stop()
