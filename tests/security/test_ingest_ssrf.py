"""Every byte an ingest fetches goes through the address guard (issue 9, item 1).

Loopback stands in for the internet: ``download_test_public_endpoints`` makes one loopback server
"public"; a second one plays the internal service an attacker wants to reach. It counts every
connection it gets, and it serves real media, so a guard that let a request through would make the
download succeed and the count non-zero.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from commands.service import HeatersApplication
from infra.config import Settings
from infra.media.download import DownloadError, fetch_source
from infra.media.ffmpeg import MediaError
from infra.media.inspect import inspect_media
from infra.object_storage import LocalObjectStorage
from processors import stages
from processors.stages import PipelineContext
from tests.security.servers import LoopbackServer, make_video, serving

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def segment(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = make_video(tmp_path_factory.mktemp("hls") / "seg0.ts", fmt="mpegts")
    return path.read_bytes()


@pytest.fixture
def internal(segment: bytes) -> Iterator[LoopbackServer]:
    """The internal service: it must never see a connection."""
    with serving({"/seg0.ts": segment, "/key": b"0123456789abcdef", "/secret.mp4": segment}) as server:
        yield server


@pytest.fixture
def public(segment: bytes) -> Iterator[LoopbackServer]:
    with serving({"/seg0.ts": segment}) as server:
        yield server


def _settings(public: LoopbackServer, tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", download_test_public_endpoints=public.endpoint)


def _playlist(*lines: str, end: bool = True) -> bytes:
    head = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:2", "#EXT-X-MEDIA-SEQUENCE:0"]
    return "\n".join([*head, *lines, *(["#EXT-X-ENDLIST"] if end else []), ""]).encode()


def test_public_hls_playlist_is_fetched_natively(public: LoopbackServer, tmp_path: Path) -> None:
    """The control: a playlist whose segments stay on the public server downloads fine."""
    public.routes["/video.m3u8"] = _playlist("#EXTINF:2.0,", public.url("/seg0.ts"))
    got = fetch_source(public.url("/video.m3u8"), tmp_path / "dl", _settings(public, tmp_path))
    assert got.info.frame_count == 48
    assert "/seg0.ts" in public.paths


def test_public_aes_128_hls_is_decrypted_natively(
    public: LoopbackServer, segment: bytes, tmp_path: Path
) -> None:
    """AES-128 with its key on the public server: yt-dlp decrypts it itself, ffmpeg fetches nothing."""
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    key, iv = b"0123456789abcdef", (0).to_bytes(16, "big")  # IV = media sequence number
    padder = padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    public.routes["/enc0.ts"] = (
        encryptor.update(padder.update(segment) + padder.finalize()) + encryptor.finalize()
    )
    public.routes["/key"] = key
    public.routes["/video.m3u8"] = _playlist(
        f'#EXT-X-KEY:METHOD=AES-128,URI="{public.url("/key")}"', "#EXTINF:2.0,", public.url("/enc0.ts")
    )
    got = fetch_source(public.url("/video.m3u8"), tmp_path / "dl", _settings(public, tmp_path))
    assert got.info.frame_count == 48
    assert {"/key", "/enc0.ts"} <= set(public.paths)


@pytest.mark.parametrize(
    ("lines", "end", "reason"),
    [
        (
            ["#EXTINF:2.0,", "{internal}/seg0.ts"],
            True,
            "resolves to 127.0.0.1 (loopback), which is not allowed",
        ),
        (
            ['#EXT-X-KEY:METHOD=AES-128,URI="{internal}/key"', "#EXTINF:2.0,", "{public}/seg0.ts"],
            True,
            "resolves to 127.0.0.1 (loopback), which is not allowed",
        ),
        (
            ['#EXT-X-KEY:METHOD=SAMPLE-AES,URI="{internal}/key"', "#EXTINF:2.0,", "{internal}/seg0.ts"],
            True,
            "encrypted with SAMPLE-AES, which only ffmpeg can fetch",
        ),
        (["#EXTINF:2.0,", "{internal}/seg0.ts"], False, "live stream"),
    ],
    ids=["segment", "aes-128-key", "sample-aes", "live"],
)
def test_hls_segments_and_keys_never_reach_an_internal_address(
    lines: list[str],
    end: bool,
    reason: str,
    public: LoopbackServer,
    internal: LoopbackServer,
    tmp_path: Path,
) -> None:
    urls = {"internal": internal.url(""), "public": public.url("")}
    public.routes["/video.m3u8"] = _playlist(*(line.format(**urls) for line in lines), end=end)
    with pytest.raises(DownloadError) as info:
        fetch_source(public.url("/video.m3u8"), tmp_path / "dl", _settings(public, tmp_path))
    assert reason in info.value.reason
    assert internal.connections == 0, internal.paths
    assert [p.name for p in (tmp_path / "dl").iterdir()] == []


def test_redirect_to_an_internal_address_is_refused_before_connecting(
    public: LoopbackServer, internal: LoopbackServer, tmp_path: Path
) -> None:
    def redirect(handler: object) -> None:
        from http.server import BaseHTTPRequestHandler

        assert isinstance(handler, BaseHTTPRequestHandler)
        handler.send_response(302)
        handler.send_header("Location", internal.url("/secret.mp4"))
        handler.end_headers()

    public.routes["/video.mp4"] = redirect
    with pytest.raises(DownloadError) as info:
        fetch_source(public.url("/video.mp4"), tmp_path / "dl", _settings(public, tmp_path))
    assert "resolves to 127.0.0.1 (loopback), which is not allowed" in info.value.reason
    assert internal.connections == 0
    assert public.paths == ["/video.mp4"]


def _mpd(segment_url: str) -> bytes:
    return f"""<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT2S" minBufferTime="PT1S"
     profiles="urn:mpeg:dash:profile:isoff-on-demand:2011"><Period><AdaptationSet mimeType="video/mp4">
<Representation id="1" bandwidth="100000" width="160" height="120" codecs="avc1.42c00d">
<BaseURL>{segment_url}</BaseURL></Representation></AdaptationSet></Period></MPD>
""".encode()


@pytest.mark.parametrize("kind", ["hls", "dash"])
def test_a_playlist_disguised_as_a_video_reaches_nothing(
    kind: str, public: LoopbackServer, internal: LoopbackServer, tmp_path: Path
) -> None:
    """Served as video/mp4 but really a playlist of internal URLs: neither yt-dlp nor ffmpeg (which
    probes every fetched file, and every local one) opens them."""
    body = (
        _playlist("#EXTINF:2.0,", internal.url("/seg0.ts"))
        if kind == "hls"
        else _mpd(internal.url("/secret.mp4"))
    )
    public.routes["/video.mp4"] = body
    with pytest.raises(DownloadError):
        fetch_source(public.url("/video.mp4"), tmp_path / "dl", _settings(public, tmp_path))
    local = tmp_path / "local.mp4"
    local.write_bytes(body)
    with pytest.raises(MediaError):
        inspect_media(local)
    with pytest.raises(DownloadError):
        fetch_source(str(local), tmp_path / "dl-local", _settings(public, tmp_path))
    assert internal.connections == 0


def test_the_video_ends_download_failed_with_the_reason(
    memory_app: HeatersApplication, public: LoopbackServer, internal: LoopbackServer, tmp_path: Path
) -> None:
    public.routes["/video.m3u8"] = _playlist("#EXTINF:2.0,", internal.url("/seg0.ts"))
    settings = _settings(public, tmp_path)
    ctx = PipelineContext(memory_app, LocalObjectStorage(tmp_path / "media"), settings)
    video_id = memory_app.submit(public.url("/video.m3u8"), "user:alice")
    with pytest.raises(stages.PermanentFailure):  # recorded, and not retried (the actor's throws)
        stages.download(ctx, video_id)
    video = memory_app.get_video(video_id)
    assert video.state == "download_failed"
    assert "127.0.0.1 (loopback), which is not allowed" in (video.stages["download"].last_error or "")
    assert [e.event for e in memory_app.history(video_id)] == [
        "Submitted",
        "DownloadStarted",
        "DownloadFailed",
    ]
    assert internal.connections == 0


def test_dns_rebinding_cannot_move_a_checked_host_to_an_internal_address(
    segment: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hostile DNS server answers the public address to one lookup and an internal one to the
    next. Every connection connects to the very address it checked, so whatever the order of the
    answers, the internal server (127.0.0.2, same port) sees no connection."""
    video = make_video(tmp_path / "v.mp4").read_bytes()
    with (
        serving({"/video.mp4": video}) as public,
        serving({"/video.mp4": segment}, host="127.0.0.2", port=public.port) as internal,
    ):
        real = socket.getaddrinfo
        lookups: list[str] = []

        def rebinding(host: str, port: object, *args: object, **kwargs: object) -> Any:
            if host != "rebind.example":
                return real(host, port, *args, **kwargs)  # type: ignore[arg-type]
            lookups.append(host)
            address = "127.0.0.1" if len(lookups) % 2 == 1 else "127.0.0.2"
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

        monkeypatch.setattr(socket, "getaddrinfo", rebinding)
        with pytest.raises(DownloadError) as info:
            fetch_source(
                f"http://rebind.example:{public.port}/video.mp4", tmp_path / "dl", _settings(public, tmp_path)
            )
    assert "resolves to 127.0.0.2 (loopback), which is not allowed" in info.value.reason
    assert len(lookups) >= 2  # the early check and the connection's own lookup
    assert internal.connections == 0
