"""The review page in Debian's chromium: a reviewer scrubs, splits with the keyboard, merges, undoes,
approves and groups; the audit page then shows those events."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest

from commands.service import HeatersApplication
from infra.database import DatabaseAddress
from tests.browser.support import (
    PASSWORD,
    PLAYWRIGHT_EVAL,
    chromium,
    decide,
    login,
    new_page,
    review_site,
)
from tests.helpers import PIPELINE

pytestmark = [pytest.mark.browser, pytest.mark.integration]

log = logging.getLogger(__name__)


@pytest.fixture
def server(
    pg_address: DatabaseAddress, pg_schema: str, pg_app: HeatersApplication, tmp_path: Path
) -> Iterator[tuple[str, list[UUID]]]:
    with review_site(pg_address, pg_schema, pg_app, tmp_path) as served:
        yield served


def test_review_with_the_keyboard(server: tuple[str, list[UUID]], tmp_path: Path) -> None:
    from playwright.sync_api import expect

    base, clips = server
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with chromium() as browser:
        page = new_page(browser, bypass_csp=PLAYWRIGHT_EVAL)
        page.goto(f"{base}/review")
        expect(page).to_have_url(f"{base}/login?next=%2Freview")
        page.fill("input[name=name]", "rita")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        expect(page.locator("#clip-link")).to_have_text(str(clips[0]))
        expect(page.locator("#clip-title")).to_have_text("Test <b>pattern</b>")  # shown as text
        expect(page.locator("#pending-badge")).to_have_text("3")
        player = page.locator("#player")
        page.wait_for_function("document.getElementById('player').style.backgroundImage.includes('sheet_')")
        page.screenshot(path=str(shots / "01-review.png"))
        # sheets in the default format (JPEG), shown at the size they were rendered (320 px tiles, not upscaled)
        assert player.evaluate("p => [p.style.width, p.style.height]") == ["320px", "240px"]
        loaded = player.evaluate(
            """p => new Promise(done => {
                const img = new Image();
                img.onload = () => done([img.naturalWidth, img.naturalHeight]);
                img.onerror = () => done(null);
                img.src = getComputedStyle(p).backgroundImage.slice(5, -2);
            })"""
        )
        assert loaded == [1600, 1200]  # a 5x5 sheet of 320x240 tiles, decoded by the browser
        assert ".jpg" in player.evaluate("p => p.style.backgroundImage")

        # play / pause with Space, then scrub with the slider
        page.keyboard.press("Space")
        page.wait_for_function("Number(document.getElementById('player').dataset.frame) > 3")
        page.keyboard.press("Space")
        page.locator("#scrub").fill("30")
        expect(player).to_have_attribute("data-frame", "30")
        expect(page.locator("#frame-counter")).to_contain_text("frame 31 / 40")
        assert player.get_attribute("data-sheet") == "1"  # sprite 30 is on the second sheet

        # split mode with the arrows: back to 15, Enter splits there
        for _ in range(15):
            page.keyboard.press("ArrowLeft")
        expect(player).to_have_attribute("data-frame", "15")
        expect(page.locator("#split-marker")).to_be_visible()
        page.screenshot(path=str(shots / "02-split-mode.png"))
        page.keyboard.press("Enter")
        expect(page.locator("#flash")).to_contain_text(f"Split clip {str(clips[0])[:8]} at frame 15")
        expect(page.locator("#clip-pos")).to_contain_text("frames 0-15")
        left = page.locator("#clip-link").inner_text()
        flash_box, link_box = (
            page.locator("#flash").bounding_box(),
            page.locator("#clip-link").bounding_box(),
        )
        assert flash_box and link_box
        assert (
            flash_box["y"] >= link_box["y"] + link_box["height"]
            or flash_box["x"] >= link_box["x"] + link_box["width"]
            or flash_box["x"] + flash_box["width"] <= link_box["x"]
        ), "the flash covers the clip id"

        # skip the left part (hold S, Enter): the right part comes next
        decide(page, "s")
        expect(page.locator("#clip-pos")).to_contain_text("frames 15-40")
        right = page.locator("#clip-link").inner_text()
        expect(page.locator("#flash")).to_contain_text(f"Skipped clip {left[:8]}")

        # merge it with the previous clip, skipped so still awaiting review (hold F, Enter), then undo
        decide(page, "f")
        expect(page.locator("#flash")).to_contain_text(f"Merged clip {right[:8]} with the previous clip")
        expect(page.locator("#clip-pos")).to_contain_text("frames 0-40")
        page.keyboard.press("Control+z")
        expect(page.locator("#flash")).to_contain_text(f"Undid the merge of clip {right[:8]}")
        expect(page.locator("#clip-link")).to_have_text(right)

        # approve it, then group the next clip with it
        decide(page, "a")
        expect(page.locator("#clip-link")).to_have_text(str(clips[1]))
        page.keyboard.press("Shift+Space")  # ID mode shows the sibling grid
        expect(page.locator("#siblings .sibling")).to_have_count(4)
        page.screenshot(path=str(shots / "03-id-mode.png"))
        page.locator(f'#siblings .sibling[data-id="{right}"]').click()
        expect(page.locator("#target-id")).to_have_value(right)
        decide(page, "g")
        expect(page.locator("#flash")).to_contain_text(
            f"Grouped clip {str(clips[1])[:8]} with clip {right[:8]}"
        )
        expect(page.locator("#clip-link")).to_have_text(str(clips[2]))
        expect(page.locator("#pending-badge")).to_have_text("1")
        page.screenshot(path=str(shots / "04-after-group.png"))

        # the auditor sees it all
        auditor = new_page(browser, bypass_csp=PLAYWRIGHT_EVAL)
        auditor.goto(f"{base}/clips/{clips[0]}/history")
        auditor.fill("input[name=name]", "aldo")
        auditor.fill("input[name=password]", PASSWORD)
        auditor.click("button[type=submit]")
        expect(auditor.locator('li[data-event="Split"] .actor')).to_have_text("user:rita")
        auditor.goto(f"{base}/clips/{right}/history")
        for event in ("Created", "Merged", "DecisionUndone", "Approved", "GroupJoined"):
            expect(auditor.locator(f'li[data-event="{event}"]')).to_have_count(1)
        auditor.locator('li[data-event="Merged"] a.asof').click()
        expect(auditor.locator(".as-of")).to_contain_text("merged")
        auditor.screenshot(path=str(shots / "05-audit.png"), full_page=True)
        assert left != right
    log.info("screenshots in %s", shots)


@pytest.fixture
def webp_server(
    pg_address: DatabaseAddress, pg_schema: str, pg_app: HeatersApplication, tmp_path: Path
) -> Iterator[tuple[str, list[UUID]]]:
    """A video whose sheets are WebP (the default before JPEG): older videos keep theirs."""
    with review_site(pg_address, pg_schema, pg_app, tmp_path, sprite_format="webp") as served:
        yield served


def test_search_thumbnails_play_on_hover(
    webp_server: tuple[str, list[UUID]],
    pg_app: HeatersApplication,
    pg_address: DatabaseAddress,
    pg_schema: str,
) -> None:
    from playwright.sync_api import expect

    from projections.runner import catch_up

    base, clips = webp_server
    for i, clip in enumerate(clips):
        pg_app.approve(clip, "user:rita")
        start = pg_app.get_clip(clip).start
        frames = [start + 1, start + 2, start + 3]
        pg_app.record_keyframes(clip, "multi", [f"k/{clip}/{f}.jpg" for f in frames], frames, PIPELINE)
        vector = [1.0, float(i), 0.5] + [0.0] * 509
        pg_app.record_embedding(clip, "ViT-B-32", "openai", "keyframe_multi_avg", [vector], PIPELINE)
    catch_up(pg_app, pg_address)
    with chromium() as browser:
        page = new_page(browser, bypass_csp=PLAYWRIGHT_EVAL)
        page.goto(f"{base}/search?clip={clips[0]}&sort=asc")
        page.fill("input[name=name]", "aldo")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        cards = page.locator("#results .card.result")
        expect(cards).to_have_count(2)
        assert cards.first.get_attribute("data-id") == str(clips[2])  # least similar first
        thumb = cards.first.locator(".thumb")
        resting = thumb.get_attribute("style")
        cards.first.hover()
        expect(thumb).to_have_class("thumb playable playing")
        seen = set()
        deadline = time.monotonic() + 5
        while len(seen) < 3 and time.monotonic() < deadline:
            seen.add(thumb.get_attribute("data-sprite"))
            time.sleep(0.03)
        assert len(seen - {None}) >= 3, seen  # it steps through the clip's sprites (70-100)
        assert ".webp" in (thumb.get_attribute("style") or "")  # an older video's WebP sheets
        assert all(70 <= int(k) < 100 for k in seen if k is not None)
        page.mouse.move(5, 5)
        expect(thumb).to_have_class("thumb playable")
        assert thumb.get_attribute("style") == resting


DECISION_EVENTS = {"Approved": "approve", "Skipped": "skip", "Archived": "archive", "Grouped": "group"}


def test_fast_keys_act_on_the_clip_shown(
    pg_address: DatabaseAddress, pg_schema: str, pg_app: HeatersApplication, tmp_path: Path
) -> None:
    """A reviewer keys 50 clips, a key every 40 ms (hold A/S/D, Enter): every clip's history holds
    exactly the one decision whose key was pressed while it was on screen."""
    cuts = list(range(2, 100, 2))  # 50 clips of 2 frames
    keys = {"a": "approve", "s": "skip", "d": "archive"}
    with review_site(pg_address, pg_schema, pg_app, tmp_path, cuts) as (base, clips), chromium() as browser:
        assert len(clips) == 50
        page = new_page(browser, 20_000)
        login(page, base, "rita")
        pressed: dict[str, list[str]] = {}
        for i in range(50):
            page.wait_for_function("() => !!document.getElementById('review').dataset.clip")
            shown = str(page.evaluate("document.getElementById('review').dataset.clip"))
            key = "asd"[i % 3]
            decide(page, key)
            pressed.setdefault(shown, []).append(keys[key])
            time.sleep(0.04)
        page.wait_for_function(
            "() => window.heatersReview.state.inflight.size === 0 && !window.heatersReview.state.busy"
        )
        page.wait_for_timeout(300)  # the last answer's flash
        errors = page.evaluate("document.getElementById('flash').className")
        assert "err" not in errors, page.locator("#flash").inner_text()
    assert len(pressed) == 50 and all(len(v) == 1 for v in pressed.values()), pressed
    for clip in clips:
        decided = [DECISION_EVENTS[e.event] for e in pg_app.history(clip) if e.event in DECISION_EVENTS]
        assert decided == pressed[str(clip)], (clip, decided, pressed[str(clip)])


def test_two_reviewers_leases_follow_the_tabs(
    pg_address: DatabaseAddress, pg_schema: str, pg_app: HeatersApplication, tmp_path: Path
) -> None:
    """Rita's tab prefetches every clip. Rob opens one she only prefetched and merges it with another
    she only prefetched: allowed. Rita's page drops the merged clips and sends nothing for them. When
    her tab closes, Rob gets her clips at once; when a tab dies without a word, within the lease time."""
    from playwright.sync_api import expect

    cuts = (20, 40, 60, 80)  # 5 clips
    with (
        review_site(pg_address, pg_schema, pg_app, tmp_path, cuts, lease_seconds=3) as (base, clips),
        chromium() as browser,
    ):
        rita = browser.new_context(viewport={"width": 1200, "height": 900}).new_page()
        rob = browser.new_context(viewport={"width": 1200, "height": 900}).new_page()
        for page in (rita, rob):
            page.set_default_timeout(10_000)
        login(rita, base, "rita")
        expect(rita.locator("#clip-link")).to_have_text(str(clips[0]))
        rita.wait_for_timeout(600)  # the heartbeat marks clip 0 as on her screen
        login(rob, base, "rob")
        expect(rob.locator("#done")).to_be_visible()  # rita holds every clip

        # Rob opens clip 2 by its link and merges it with clip 1: both only prefetched by rita
        rob.goto(f"{base}/review?clip={clips[2]}")
        expect(rob.locator("#clip-link")).to_have_text(str(clips[2]))
        expect(rob.locator("#lease-warning")).to_be_hidden()
        decide(rob, "f")
        expect(rob.locator("#flash")).to_contain_text(f"Merged clip {str(clips[2])[:8]}")
        # the flash can show a moment before the page swaps in the merged clip: wait for the swap
        expect(rob.locator("#clip-link")).not_to_have_text(str(clips[2]))
        merged = rob.locator("#clip-link").inner_text()
        assert merged not in {str(c) for c in clips}
        # clip 0 is on rita's screen: Rob's merge of clip 1 with it would be refused; rita approves it
        decide(rita, "a")
        expect(rita.locator("#lease-warning")).to_contain_text("no longer yours to review")
        expect(rita.locator("#clip-link")).to_have_text(str(clips[1]))
        decide(rita, "a")  # moves on, sends nothing for the merged-away clip
        expect(rita.locator("#clip-link")).to_have_text(str(clips[3]))
        assert [e.actor for e in pg_app.history(clips[1]) if e.event == "Approved"] == []

        # rita closes her tab (pagehide → sendBeacon): Rob gets clips 3 and 4 at once
        rita.close()
        rob.goto(f"{base}/review")
        expect(rob.locator("#clip-link")).to_have_text(merged)
        decide(rob, "s")
        expect(rob.locator("#clip-link")).to_have_text(str(clips[3]))

        # Rob's tab goes without a word (his network dropped, so no beacon reaches the server):
        # rita's new tab gets his clips once the lease ran out
        rob.context.set_offline(True)
        rob.close()
        again = browser.new_context(viewport={"width": 1200, "height": 900}).new_page()
        queue = "() => window.heatersReview.state.queue.map((c) => c.id)"
        login(again, base, "rita")
        again.wait_for_function("() => !!window.heatersReview")
        held_by_rob = {str(clips[3]), str(clips[4])}
        assert not held_by_rob & set(again.evaluate(queue))
        again.wait_for_timeout(3500)
        again.goto(f"{base}/review")
        again.wait_for_function("() => !!window.heatersReview")
        assert held_by_rob <= set(again.evaluate(queue))
