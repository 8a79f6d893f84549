"""What the browser tests share: a video with real sprite sheets, the web app with its projection daemon
served on loopback, and Debian's chromium driven by Playwright."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from bench.harness import serve
from commands.service import HeatersApplication
from infra.config import Settings
from infra.database import DatabaseAddress
from infra.media.sprites import SpriteFormat, make_sprites
from infra.object_storage import LocalObjectStorage
from projections.runner import ProjectionDaemon
from tests.helpers import clipped_video
from web.app import create_app
from web.auth import add_user

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "correct horse battery"
ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]  # fmt: skip

#: Playwright's ``wait_for_function`` evaluates its predicate with ``eval``, which the app's CSP forbids;
#: tests/security/test_web_browser_csp.py drives the same pages with the CSP enforced.
PLAYWRIGHT_EVAL = True


def video_with_sprites(
    app: HeatersApplication,
    storage: LocalObjectStorage,
    work: Path,
    cuts: Sequence[int] = (40, 70),
    sprite_format: SpriteFormat | None = None,
) -> tuple[UUID, list[UUID]]:
    """A real 4 s testsrc2 video (100 frames at 25 fps) with sprite sheets in ``sprite_format`` (the
    default's when None), clipped at ``cuts``."""
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
    prefix = "videos/testsrc/sprites"
    manifest = make_sprites(
        src, storage.root / prefix, fps=25.0, tile_width=320, columns=5, rows=5,
        image_format=sprite_format or Settings().sprite_format,
    )  # fmt: skip
    return clipped_video(
        app, manifest.source_frame_count, cuts, source=str(src), title="Test <b>pattern</b>",
        sprites_key=f"{prefix}/manifest.json",
    )  # fmt: skip


@contextmanager
def review_site(
    pg_address: DatabaseAddress,
    pg_schema: str,
    pg_app: HeatersApplication,
    tmp_path: Path,
    cuts: Sequence[int] = (40, 70),
    daemon: ProjectionDaemon | None = None,
    sprite_format: SpriteFormat | None = None,
    **app_options: Any,
) -> Iterator[tuple[str, list[UUID]]]:
    """The web app (``app_options`` go to ``create_app``) and a projection daemon (``daemon``, for a
    test that stops it) over a video with sprites (in ``sprite_format``, the default's when None)
    clipped at ``cuts``; reviewers rita and rob, auditor aldo. Yields the base URL and the clips."""
    if not Path(CHROMIUM).exists():
        pytest.fail(
            "Debian's chromium is not installed: `./run test` installs it (apt-get install -y chromium)"
        )
    storage = LocalObjectStorage(tmp_path / "media")
    settings = Settings(database_schema=pg_schema, home=tmp_path, media_dir=tmp_path / "media")
    _video_id, clips = video_with_sprites(pg_app, storage, tmp_path, cuts, sprite_format)
    add_user(pg_address, pg_schema, "rita", "reviewer", PASSWORD)
    add_user(pg_address, pg_schema, "rob", "reviewer", PASSWORD)
    add_user(pg_address, pg_schema, "aldo", "auditor", PASSWORD)
    daemon = daemon or ProjectionDaemon(pg_app, pg_address)
    daemon.start()
    try:
        with serve(create_app(settings, pg_app, pg_address, storage, **app_options)) as base:
            yield base, clips
    finally:
        daemon.stop()


@contextmanager
def chromium() -> Iterator[Any]:
    """Debian's chromium, headless, closed on leaving."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser: Any, timeout: float = 10_000, *, bypass_csp: bool = False) -> Any:
    """A 1200x900 page whose waits give up after ``timeout`` ms."""
    page = browser.new_page(viewport={"width": 1200, "height": 900}, bypass_csp=bypass_csp)
    page.set_default_timeout(timeout)
    return page


def login(page: Any, base: str, name: str, target: str = "/review") -> None:
    """Log ``name`` in through the login form, going on to ``target``."""
    page.goto(f"{base}/login?next={target}")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")


def decide(page: Any, key: str) -> None:
    """A decision the way a reviewer keys it: hold the action's key and press Enter."""
    page.keyboard.down(key)
    page.keyboard.press("Enter")
    page.keyboard.up(key)
