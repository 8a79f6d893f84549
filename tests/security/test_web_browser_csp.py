"""Issue 9, item 6 in a browser: the review, search and schema pages work with the Content-Security-
Policy enforced (no violation reported), and a framed page is refused."""

from __future__ import annotations

import re
from uuid import UUID

import pytest

from tests.browser.support import chromium, decide, login, new_page
from tests.browser.test_review_page import server  # noqa: F401 (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.integration]

WATCH = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(e.violatedDirective + " " + e.blockedURI);
});
"""


def test_pages_work_under_the_csp(server: tuple[str, list[UUID]]) -> None:  # noqa: F811
    from playwright.sync_api import expect

    base, clips = server
    with chromium() as browser:
        page = new_page(browser)  # CSP enforced
        page.add_init_script(WATCH)
        console: list[str] = []
        page.on("console", lambda m: console.append(m.text))
        login(page, base, "rita")
        expect(page.locator("#clip-link")).to_have_text(str(clips[0]))  # review.js ran
        player = page.locator("#player")
        expect(player).to_have_attribute("style", re.compile("sheet_"))  # sprites load from /media
        page.keyboard.press("Space")  # play...
        expect(player).not_to_have_attribute("data-frame", "0")
        page.keyboard.press("Space")
        decide(page, "a")  # approve with the keyboard: a fetch with the session's CSRF token
        expect(page.locator("#clip-link")).to_have_text(str(clips[1]))
        assert page.evaluate("window.__csp") == []

        page.goto(f"{base}/schema")
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("Heaters")
        assert page.evaluate("window.__csp") == []
        assert not [m for m in console if "Content Security Policy" in m], console

        # another site framing the app gets nothing
        framed = browser.new_page()
        framed.set_content(f'<iframe id="f" src="{base}/login"></iframe>')
        framed.wait_for_timeout(1000)
        frame = framed.frame_locator("#f")
        assert frame.locator("input[name=name]").count() == 0
