"""The review page tells the reviewer when the read models could not show a decision in time."""

from __future__ import annotations

from pathlib import Path

import pytest

from commands.service import HeatersApplication
from infra.database import DatabaseAddress
from projections.runner import ProjectionDaemon
from tests.browser.support import chromium, decide, login, new_page, review_site

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def test_an_approval_the_read_models_lag_behind_is_flagged_on_the_page(
    pg_address: DatabaseAddress, pg_schema: str, pg_app: HeatersApplication, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    daemon = ProjectionDaemon(pg_app, pg_address)
    with (
        review_site(pg_address, pg_schema, pg_app, tmp_path, daemon=daemon, settle_timeout=0.5) as (base, _),
        chromium() as browser,
    ):
        page = new_page(browser)
        login(page, base, "rita")
        expect(page.locator("#pending-badge")).to_have_text("3")
        daemon.stop()  # the projection daemons die
        decide(page, "a")
        flash = page.locator("#flash")
        expect(flash).to_contain_text("still catching up")
        expect(flash).to_have_class("flash err")  # the warning style, shown longer
