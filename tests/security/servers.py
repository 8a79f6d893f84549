"""Loopback HTTP servers for the ingest security tests: one that counts every connection it gets,
and one that serves whatever a test puts in its ``routes`` (bytes, or a callable that writes)."""

from __future__ import annotations

import http.server
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from infra.media.ffmpeg import ffmpeg_exe

Route = bytes | Callable[[http.server.BaseHTTPRequestHandler], None]


class LoopbackServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, routes: dict[str, Route], host: str = "127.0.0.1", port: int = 0) -> None:
        self.routes = routes
        self.host = host
        self.connections = 0
        self.paths: list[str] = []
        self.lock = threading.Lock()
        super().__init__((host, port), _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        request = super().get_request()
        with self.lock:
            self.connections += 1
        return request

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: LoopbackServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.paths.append(self.path)
        route = self.server.routes.get(self.path.split("?", 1)[0])
        if route is None:
            self.send_error(404)
            return
        if callable(route):
            route(self)
            return
        self.send_response(200)
        content_type = "application/vnd.apple.mpegurl" if self.path.endswith(".m3u8") else "video/mp4"
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(route)))
        self.end_headers()
        self.wfile.write(route)


@contextmanager
def serving(
    routes: dict[str, Route] | None = None, host: str = "127.0.0.1", port: int = 0
) -> Iterator[LoopbackServer]:
    server = LoopbackServer(routes or {}, host, port)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def make_video(
    path: Path,
    *args: str,
    size: str = "160x120",
    frames: int = 48,
    fmt: str = "mp4",
    inputs: tuple[str, ...] = (),
) -> Path:
    """A small 24 fps H.264 test video made with ffmpeg (``inputs`` are more inputs, such as audio;
    ``args`` are extra output options)."""
    subprocess.run(
        [
            ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-f", "lavfi",
            "-i", f"testsrc2=size={size}:rate=24", *inputs, "-frames:v", str(frames),
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", *args, "-f", fmt, str(path),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )  # fmt: skip
    return path
