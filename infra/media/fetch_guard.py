"""What keeps one URL download inside its bounds: the address guard and the transfer watchdog.

Address guard (SSRF): yt-dlp gets a single request handler whose connections are made here. Each
connection, the first and every redirect, resolves its host once, refuses unless every address is
public, and connects to exactly the address it checked (no second lookup, so no DNS rebinding
between check and connect). No proxy is used. Only yt-dlp's native downloaders run (HTTP, HLS, DASH,
all fetching through that handler); a format that would need ffmpeg or another external program to
fetch it (live streams, SAMPLE-AES or DRM encryption, RTMP...) is refused with the reason, and
ffmpeg only ever reads local files (``-protocol_whitelist file,pipe``).

Watchdog: an overall deadline, a minimum average rate over a window while bytes are being
transferred, and a ``should_stop`` callback (a person cancelled the download). When one of them
trips, the watchdog shuts down every open socket of the download, so even a read blocked on a
server that trickles a byte at a time returns at once, and no new connection is made.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import ipaddress
import logging
import re
import socket
import ssl
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from infra.config import Settings
from infra.media.ffmpeg import LOCAL_INPUT

logger = logging.getLogger(__name__)

__all__ = [
    "FFMPEG_LOCAL_INPUT",
    "Refused",
    "Transfer",
    "address_problem",
    "guarded_handler_class",
    "guarded_ydl_class",
    "hls_problem",
    "resolve_public",
]

FFMPEG_LOCAL_INPUT = LOCAL_INPUT  # for yt-dlp's merger: ffmpeg reads local files only

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Refused(Exception):
    """A connection the guard will not make, or a transfer the watchdog stopped; ``reason`` is for people."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def address_problem(ip: IPAddress) -> str | None:
    """Why ``ip`` may not be fetched from (loopback, private...), or ``None`` for a public address."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for label, flag in (
        ("loopback", ip.is_loopback),
        ("unspecified", ip.is_unspecified),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
        ("not globally routable", not ip.is_global),
    ):
        if flag:
            return label
    return None


def _treated_as_public(ip: IPAddress, port: int, settings: Settings) -> bool:
    if not settings.download_test_public_endpoints:
        return False
    endpoints = {e.strip() for e in settings.download_test_public_endpoints.split(",")}
    return f"{ip}:{port}" in endpoints or f"[{ip}]:{port}" in endpoints


def resolve_public(host: str, port: int, settings: Settings) -> list[tuple[socket.AddressFamily, IPAddress]]:
    """Resolve ``host`` once; raise :class:`Refused` unless every address may be fetched from.

    Returns the checked addresses: connect to these, never to ``host`` again.
    """
    try:
        literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
        addresses: list[tuple[socket.AddressFamily, IPAddress]] = [(family, literal)]
    else:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise Refused(f"cannot resolve host '{host}' ({exc})") from exc
        addresses = []
        for family, *_rest, sockaddr in infos:
            ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            if (family, ip) not in addresses:
                addresses.append((family, ip))
        if not addresses:
            raise Refused(f"host '{host}' has no addresses")
    if not settings.allow_private_hosts:
        for _family, ip in addresses:
            problem = address_problem(ip)
            if problem is not None and not _treated_as_public(ip, port, settings):
                raise Refused(
                    f"host '{host}' resolves to {ip} ({problem}), which is not allowed; "
                    "only public addresses can be fetched (HEATERS_ALLOW_PRIVATE_HOSTS=true allows others)"
                )
    return addresses


class Transfer:
    """One download's bounds and its open sockets; :meth:`watch` runs the watchdog thread."""

    def __init__(
        self,
        settings: Settings,
        source: str,
        should_stop: Callable[[], str | None] | None = None,
        *,
        poll_seconds: float = 0.25,
        stop_check_seconds: float = 2.0,
    ) -> None:
        self.settings = settings
        self.source = source
        self.should_stop = should_stop
        self.started = time.monotonic()
        self.deadline = self.started + settings.download_deadline
        self.stopped: str | None = None  # why the watchdog stopped the transfer
        self.refused: str | None = None  # the first connection the guard refused
        self._lock = threading.Lock()
        self._sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self._bytes: dict[str, int] = {}
        self._samples: deque[tuple[float, int]] = deque()
        self._receiving_since: float | None = None
        self._done = threading.Event()
        self._poll = poll_seconds
        self._stop_check = stop_check_seconds
        self._thread: threading.Thread | None = None

    # -- the watchdog ------------------------------------------------------------------------------

    def __enter__(self) -> Transfer:
        self._thread = threading.Thread(target=self._watch, name="download-watchdog", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    def _watch(self) -> None:
        next_stop_check = time.monotonic() + self._stop_check
        while not self._done.wait(self._poll):
            now = time.monotonic()
            if now >= self.deadline:
                self.stop(
                    f"download did not finish within {self.settings.download_deadline:.0f} s "
                    "(HEATERS_DOWNLOAD_DEADLINE)"
                )
            slow = self._too_slow(now)
            if slow is not None:
                self.stop(slow)
            if self.should_stop is not None and now >= next_stop_check:
                next_stop_check = now + self._stop_check
                try:
                    reason = self.should_stop()
                except Exception:  # a database hiccup must not kill the watchdog
                    logger.exception("download of %s: checking for a cancellation failed", self.source)
                    reason = None
                if reason is not None:
                    self.stop(reason)
            if self.stopped is not None:
                self._shutdown_sockets()

    def _too_slow(self, now: float) -> str | None:
        floor, window = self.settings.download_min_rate, self.settings.download_min_rate_window
        with self._lock:
            since = self._receiving_since
            if floor <= 0 or since is None or now - since < window:
                return None
            total = sum(self._bytes.values())
            # keep one sample at or before the window's start: the bytes received since are the rate's
            while len(self._samples) > 1 and self._samples[1][0] <= now - window:
                self._samples.popleft()
            if not self._samples or self._samples[0][0] > now - window:
                return None
            rate = (total - self._samples[0][1]) / window
        if rate < floor:
            return (
                f"download too slow: {rate:.0f} bytes/s over the last {window:.0f} s, under the minimum of "
                f"{floor:.0f} bytes/s (HEATERS_DOWNLOAD_MIN_RATE)"
            )
        return None

    def stop(self, reason: str) -> None:
        """Stop the transfer: every open socket is shut down and no new connection is made."""
        with self._lock:
            if self.stopped is None:
                self.stopped = reason
                logger.warning("download of %s stopped: %s", self.source, reason)
        self._shutdown_sockets()

    def _shutdown_sockets(self) -> None:
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def check(self) -> None:
        """Raise :class:`Refused` once the transfer was stopped."""
        if self.stopped is not None:
            raise Refused(self.stopped)

    # -- bytes received (yt-dlp progress hooks) ----------------------------------------------------

    def receiving(self, active: bool) -> None:
        """Media bytes are being transferred (the minimum rate applies) or not."""
        with self._lock:
            now = time.monotonic()
            self._receiving_since = now if active else None
            self._samples.clear()
            if active:
                self._samples.append((now, sum(self._bytes.values())))

    def progress(self, name: str, downloaded: int) -> None:
        with self._lock:
            self._bytes[name] = max(self._bytes.get(name, 0), downloaded)
            self._samples.append((time.monotonic(), sum(self._bytes.values())))

    # -- connections -------------------------------------------------------------------------------

    def refuse(self, reason: str) -> Refused:
        with self._lock:
            if self.refused is None:
                self.refused = reason
        logger.warning("download of %s: refused a connection: %s", self.source, reason)
        return Refused(reason)

    def connect(
        self,
        address: tuple[str, int],
        timeout: object,
    ) -> socket.socket:
        """``socket.create_connection`` that checks the addresses it connects to (see module doc)."""
        self.check()
        host, port = address
        try:
            addresses = resolve_public(host, port, self.settings)
        except Refused as exc:
            raise self.refuse(exc.reason) from None
        remaining = self.deadline - time.monotonic()
        error: OSError | None = None
        for family, ip in addresses:
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                limit = float(timeout) if isinstance(timeout, int | float) else remaining
                sock.settimeout(max(min(limit, remaining), 0.1))
                self.track(sock)
                sock.connect((str(ip), port))
                self.check()
                return sock
            except OSError as exc:
                sock.close()
                error = exc
        assert error is not None
        raise error

    def track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)
        if self.stopped is not None:
            self._shutdown_sockets()


def guarded_handler_class(transfer: Transfer) -> type[Any]:
    """A yt-dlp request handler (urllib based) whose every connection goes through ``transfer``."""
    import urllib.request

    from yt_dlp.networking._urllib import HTTPHandler, ProxyHandler, RedirectHandler, UrllibRH

    class _HTTPConnection(http.client.HTTPConnection):
        def connect(self) -> None:  # no proxy, so no tunnel: the socket goes to the checked address
            self.sock = transfer.connect((self.host, self.port), self.timeout)

    class _HTTPSConnection(http.client.HTTPSConnection):
        def connect(self) -> None:
            sock = transfer.connect((self.host, self.port), self.timeout)
            context: ssl.SSLContext = self._context  # type: ignore[attr-defined]
            self.sock = context.wrap_socket(sock, server_hostname=self.host)
            transfer.track(self.sock)

    class _GuardedHTTPHandler(HTTPHandler):  # type: ignore[misc]
        def http_open(self, req: urllib.request.Request) -> Any:
            return self.do_open(_HTTPConnection, req)

        def https_open(self, req: urllib.request.Request) -> Any:
            return self.do_open(_HTTPSConnection, req, context=self._context)

    class GuardedUrllibRH(UrllibRH):  # type: ignore[misc]
        _SUPPORTED_URL_SCHEMES = ("http", "https", "data")
        RH_NAME = "guarded-urllib"

        def _get_proxies(self, request: Any) -> dict[str, str]:
            return {}  # a proxy would connect on our behalf, past the guard

        def _create_instance(self, proxies: Any, cookiejar: Any, legacy_ssl_support: Any = None) -> Any:
            # yt-dlp's own opener, less FTP, proxies and its connection factory.
            opener = urllib.request.OpenerDirector()
            for handler in (
                ProxyHandler({}),
                _GuardedHTTPHandler(context=self._make_sslcontext(legacy_ssl_support=legacy_ssl_support)),
                urllib.request.HTTPCookieProcessor(cookiejar),
                urllib.request.DataHandler(),
                urllib.request.UnknownHandler(),
                urllib.request.HTTPDefaultErrorHandler(),
                urllib.request.HTTPErrorProcessor(),
                RedirectHandler(),
            ):
                opener.add_handler(handler)
            opener.addheaders = []
            return opener

    return GuardedUrllibRH


_OTHER_ENCRYPTION_RE = re.compile(
    r"#EXT-X-(?:SESSION-)?KEY:[^\n]*?METHOD=(?!NONE\b|AES-128\b)(?P<method>[A-Za-z0-9-]+)"
)


def hls_problem(manifest: str, info: dict[str, Any]) -> str | None:
    """Why an HLS media playlist cannot be fetched by the native downloader (yt-dlp would hand it to
    ffmpeg, past the address guard), or ``None``."""
    from yt_dlp.downloader.hls import HlsFD

    if HlsFD._has_drm(manifest):
        return "the stream is DRM-protected"
    other = _OTHER_ENCRYPTION_RE.search(manifest)
    if other is not None:
        return (
            f"the stream is encrypted with {other['method']}, which only ffmpeg can fetch; ffmpeg is not "
            "allowed to fetch (it would bypass the address guard)"
        )
    if info.get("is_live") or ("#EXTINF" in manifest and "#EXT-X-ENDLIST" not in manifest):
        return "it is a live stream (its HLS playlist has no end); live streams are not accepted"
    return None


def guarded_ydl_class(transfer: Transfer) -> type[Any]:
    """A ``YoutubeDL`` whose requests all go through :func:`guarded_handler_class` and whose
    downloads use native downloaders only (refusing, with the reason, what needs an external one)."""
    import yt_dlp
    from yt_dlp.downloader import get_suitable_downloader
    from yt_dlp.downloader.dash import DashSegmentsFD
    from yt_dlp.downloader.hls import HlsFD
    from yt_dlp.downloader.http import HttpFD

    handler = guarded_handler_class(transfer)

    class GuardedHlsFD(HlsFD):  # type: ignore[misc]
        """Reads the playlist once, refuses what the native downloader would delegate to ffmpeg,
        and hands the very playlist it checked to the native downloader."""

        def real_download(self, filename: str, info_dict: dict[str, Any]) -> Any:
            url = info_dict["url"]
            manifest = info_dict.get("hls_media_playlist_data")
            if not manifest:
                response = self.ydl.urlopen(self._prepare_url(info_dict, url))
                url = response.url
                manifest = response.read().decode("utf-8", "ignore")
            problem = hls_problem(manifest, info_dict)
            if problem is not None:
                raise transfer.refuse(problem)
            return super().real_download(
                filename, {**info_dict, "url": url, "hls_media_playlist_data": manifest}
            )

    def native(fd_class: Any, info: dict[str, Any]) -> Any:
        if fd_class is HttpFD or fd_class is DashSegmentsFD:
            return fd_class
        if fd_class is HlsFD:
            return GuardedHlsFD
        if info.get("is_live"):
            raise transfer.refuse("it is a live stream; live streams are not accepted")
        name = fd_class.get_basename() if fd_class is not None else "none"
        raise transfer.refuse(
            f"its format ({info.get('protocol') or 'unknown protocol'}) needs the external downloader {name}, "
            "which is not allowed to fetch (it would bypass the address guard)"
        )

    class GuardedYoutubeDL(yt_dlp.YoutubeDL):  # type: ignore[misc]
        @functools.cached_property
        def _request_director(self) -> Any:
            return self.build_request_director([handler])

        def urlopen(self, req: Any) -> Any:
            transfer.check()
            return super().urlopen(req)

        def dl(self, name: str, info: dict[str, Any], subtitle: bool = False, test: bool = False) -> Any:
            if not info.get("url"):
                self.raise_no_formats(info, True)
            params = dict(self.params)
            if test:
                params.update(
                    test=True, quiet=True, noprogress=True, nopart=True, skip_unavailable_fragments=False,
                    keep_fragments=False, overwrites=True, _no_ytdl_file=True,
                )  # fmt: skip
            fd = native(get_suitable_downloader(info, params, to_stdout=(name == "-")), info)(self, params)
            if not test:
                for hook in self._progress_hooks:
                    fd.add_progress_hook(hook)
            new_info = self._copy_infodict(info)
            if new_info.get("http_headers") is None:
                new_info["http_headers"] = self._calc_headers(new_info)
            transfer.receiving(True)
            try:
                return fd.download(name, new_info, subtitle)
            finally:
                transfer.receiving(False)

    return GuardedYoutubeDL
