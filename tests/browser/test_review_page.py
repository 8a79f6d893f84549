"""The review page in Debian's chromium: a reviewer scrubs, splits with the keyboard, merges, undoes,
approves and groups; the audit page then shows those events."""

from __future__ import annotations

import logging
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
import uvicorn

from commands.service import HeatersApplication
from infra.config import Settings
from infra.database import DatabaseAddress
from infra.media.sprites import make_sprites
from infra.object_storage import LocalObjectStorage
from projections.runner import ProjectionDaemon
from tests.helpers import PIPELINE
from web.app import create_app
from web.auth import add_user

pytestmark = [pytest.mark.browser, pytest.mark.integration]

log = logging.getLogger(__name__)

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "correct horse battery"
ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]  # fmt: skip


#: Playwright's ``wait_for_function`` evaluates its predicate with ``eval``, which the app's CSP forbids;
#: tests/security/test_web_browser_csp.py drives the same pages with the CSP enforced.
PLAYWRIGHT_EVAL = True


def _video_with_sprites(
    app: HeatersApplication, storage: LocalObjectStorage, work: Path
) -> tuple[UUID, list[UUID]]:
    """A real 4 s testsrc2 video (100 frames at 25 fps) with sprite sheets, clipped at 40 and 70."""
    import imageio_ffmpeg

    src = work / "testsrc.mp4"
    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi",
            "-i", "testsrc2=size=320x240:rate=25:duration=4", "-pix_fmt", "yuv420p", "-c:v", "libx264",
            "-g", "1", str(src),
        ],
        check=True,
        timeout=120,
    )  # fmt: skip
    video_id = app.submit(str(src), "user:tester")
    prefix = f"videos/{video_id}/sprites"
    sprites_dir = storage.root / prefix
    manifest = make_sprites(
        src, sprites_dir, fps=25.0, tile_width=320, columns=5, rows=5, image_format="webp"
    )
    attempt = app.start_video_stage(video_id, "download", PIPELINE)
    app.record_downloaded(
        video_id, attempt, PIPELINE, media_key=f"videos/{video_id}/source.mp4",
        title="Test <b>pattern</b>", original_url=None, checksum="0" * 64, duration=4.0, fps=25.0,
        frame_count=manifest.source_frame_count, width=320, height=240, codec="h264",
    )  # fmt: skip
    attempt = app.start_video_stage(video_id, "proxy", PIPELINE)
    app.record_proxy(video_id, attempt, f"videos/{video_id}/proxy.mp4", 320, 240, PIPELINE)
    attempt = app.start_video_stage(video_id, "sprites", PIPELINE)
    app.record_sprites(video_id, attempt, f"{prefix}/manifest.json", PIPELINE)
    attempt = app.start_video_stage(video_id, "shots", PIPELINE)
    return video_id, app.record_shots(video_id, attempt, [40, 70], "test", {}, PIPELINE)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(
    pg_address: DatabaseAddress, pg_schema: str, pg_app: HeatersApplication, tmp_path: Path
) -> Iterator[tuple[str, list[UUID]]]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            "Debian's chromium is not installed: `./run test` installs it (apt-get install -y chromium)"
        )
    storage = LocalObjectStorage(tmp_path / "media")
    settings = Settings(database_schema=pg_schema, home=tmp_path, media_dir=tmp_path / "media")
    _video_id, clips = _video_with_sprites(pg_app, storage, tmp_path)
    add_user(pg_address, pg_schema, "rita", "reviewer", PASSWORD)
    add_user(pg_address, pg_schema, "aldo", "auditor", PASSWORD)
    daemon = ProjectionDaemon(pg_address, pg_schema)
    daemon.start()
    app = create_app(settings, pg_app, pg_address, storage)
    port = _free_port()
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert uv.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}", clips
    finally:
        uv.should_exit = True
        thread.join(10)
        daemon.stop()


def test_review_with_the_keyboard(server: tuple[str, list[UUID]], tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, clips = server
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900}, bypass_csp=PLAYWRIGHT_EVAL)
            page.set_default_timeout(10_000)
            page.goto(f"{base}/review")
            expect(page).to_have_url(f"{base}/login?next=%2Freview")
            page.fill("input[name=name]", "rita")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            expect(page.locator("#clip-link")).to_have_text(str(clips[0]))
            expect(page.locator("#clip-title")).to_have_text("Test <b>pattern</b>")  # shown as text
            expect(page.locator("#pending-badge")).to_have_text("3")
            player = page.locator("#player")
            page.wait_for_function(
                "document.getElementById('player').style.backgroundImage.includes('sheet_')"
            )
            page.screenshot(path=str(shots / "01-review.png"))
            # WebP sheets, shown at the size they were rendered (320 px tiles, not upscaled)
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
            assert ".webp" in player.evaluate("p => p.style.backgroundImage")

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
            expect(page.locator("#flash")).to_contain_text("Split at frame 15")
            expect(page.locator("#clip-pos")).to_contain_text("frames 0-15")
            left = page.locator("#clip-link").inner_text()

            # approve the left part (hold A, Enter): the right part comes next
            page.keyboard.down("a")
            page.keyboard.press("Enter")
            page.keyboard.up("a")
            expect(page.locator("#clip-pos")).to_contain_text("frames 15-40")
            right = page.locator("#clip-link").inner_text()
            expect(page.locator("#flash")).to_contain_text("Approved")

            # merge it with the previous clip (hold F, Enter), then undo the merge
            page.keyboard.down("f")
            page.keyboard.press("Enter")
            page.keyboard.up("f")
            expect(page.locator("#flash")).to_contain_text("Merged with the previous clip")
            expect(page.locator("#clip-pos")).to_contain_text("frames 0-40")
            page.keyboard.press("Control+z")
            expect(page.locator("#flash")).to_contain_text("Undid merge")
            expect(page.locator("#clip-link")).to_have_text(right)

            # approve it, then group the next clip with it
            page.keyboard.down("a")
            page.keyboard.press("Enter")
            page.keyboard.up("a")
            expect(page.locator("#clip-link")).to_have_text(str(clips[1]))
            page.keyboard.press("Shift+Space")  # ID mode shows the sibling grid
            expect(page.locator("#siblings .sibling")).to_have_count(4)
            page.screenshot(path=str(shots / "03-id-mode.png"))
            page.locator(f'#siblings .sibling[data-id="{right}"]').click()
            expect(page.locator("#target-id")).to_have_value(right)
            page.keyboard.down("g")
            page.keyboard.press("Enter")
            page.keyboard.up("g")
            expect(page.locator("#flash")).to_contain_text(f"Grouped with clip {right}")
            expect(page.locator("#clip-link")).to_have_text(str(clips[2]))
            expect(page.locator("#pending-badge")).to_have_text("1")
            page.screenshot(path=str(shots / "04-after-group.png"))

            # the auditor sees it all
            auditor = browser.new_page(viewport={"width": 1200, "height": 900}, bypass_csp=PLAYWRIGHT_EVAL)
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
        finally:
            browser.close()
    log.info("screenshots in %s", shots)


def test_search_thumbnails_play_on_hover(
    server: tuple[str, list[UUID]], pg_app: HeatersApplication, pg_address: DatabaseAddress, pg_schema: str
) -> None:
    from playwright.sync_api import expect, sync_playwright

    from projections.runner import catch_up

    base, clips = server
    for i, clip in enumerate(clips):
        pg_app.approve(clip, "user:rita")
        start = pg_app.get_clip(clip).start
        frames = [start + 1, start + 2, start + 3]
        pg_app.record_keyframes(clip, "multi", [f"k/{clip}/{f}.jpg" for f in frames], frames, PIPELINE)
        vector = [1.0, float(i), 0.5] + [0.0] * 509
        pg_app.record_embedding(clip, "ViT-B-32", "openai", "keyframe_multi_avg", [vector], PIPELINE)
    catch_up(pg_address, pg_schema)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900}, bypass_csp=PLAYWRIGHT_EVAL)
            page.set_default_timeout(10_000)
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
            assert all(70 <= int(k) < 100 for k in seen if k is not None)
            page.mouse.move(5, 5)
            expect(thumb).to_have_class("thumb playable")
            assert thumb.get_attribute("style") == resting
        finally:
            browser.close()
