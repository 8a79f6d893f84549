"""Fetching a source video: an http(s) URL through yt-dlp, or a local file by path.

:func:`fetch_source` returns a verified file (probed: a readable, complete video within the size
and duration limits) or raises :class:`DownloadError` whose ``reason`` tells a person what to do.

URLs are fetched inside the bounds of :mod:`infra.media.fetch_guard`: unless
``settings.allow_private_hosts``, every connection (each redirect too) goes only to public addresses,
checked and pinned at connect time; only native downloaders run (a live stream or a format that needs
ffmpeg to fetch it is refused); an overall deadline, a minimum rate and a cancellation callback stop
a download that would never end.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from infra.config import Settings
from infra.media.fetch_guard import FFMPEG_LOCAL_INPUT, Refused, Transfer, guarded_ydl_class, resolve_public
from infra.media.ffmpeg import MediaError
from infra.media.inspect import MediaInfo, diagnose_unreadable, inspect_media

logger = logging.getLogger(__name__)

__all__ = [
    "FORMAT_FALLBACKS",
    "DownloadError",
    "DownloadedSource",
    "check_url_host",
    "fetch_source",
]

FORMAT_FALLBACKS: tuple[str, ...] = (
    "bv*[ext=mp4]+ba[ext=m4a]/b[ext=mp4]/bv*+ba/b",
    "best/bv*",
    "worst/wv*",
)
_SCHEME_RE = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]+):")
_CHUNK = 1024 * 1024
_PERMANENT_HTTP = frozenset({400, 401, 403, 404, 405, 410, 451})


class DownloadError(MediaError):
    """The source cannot be fetched or is not a usable video. ``reason`` is for people."""

    def __init__(self, reason: str, source: str | None = None) -> None:
        super().__init__(reason)
        self.source = source


@dataclass(frozen=True, slots=True)
class DownloadedSource:
    """A fetched, verified source video."""

    path: Path
    title: str
    original_url: str  # the URL as submitted, or the absolute path of a local file
    checksum: str  # sha256 hex digest of the file
    size_bytes: int
    info: MediaInfo
    extractor: str  # "local", "generic", "youtube", ...
    source_id: str | None = None  # the site's id of the video, when there is one

    @property
    def checksum_sha256(self) -> str:
        return self.checksum

    @property
    def duration(self) -> float:
        return self.info.duration


def fetch_source(
    source: str,
    dest_dir: Path,
    settings: Settings,
    *,
    allow_local_files: bool = True,
    should_stop: Callable[[], str | None] | None = None,
) -> DownloadedSource:
    """Fetch ``source`` (an http(s) URL or a local file path) into ``dest_dir`` and verify it.

    The file is written as ``dest_dir/source.<ext>``. ``allow_local_files=False`` refuses paths,
    for callers that take sources from untrusted users. ``should_stop`` is asked every few seconds
    during a URL download; a reason it returns stops the download with that reason (a cancellation).
    Raises :class:`DownloadError`.
    """
    source = source.strip()
    if not source:
        raise DownloadError("no source given; use an http(s) URL or a local file path")
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    match = _SCHEME_RE.match(source)
    if match is not None:
        scheme = match["scheme"].lower()
        if scheme not in ("http", "https"):
            raise DownloadError(
                f"scheme '{scheme}' is not allowed; use http(s) or a local path "
                "(write ./name for a file whose name contains ':')",
                source,
            )
        return _fetch_url(source, dest_dir, settings, should_stop)
    if not allow_local_files:
        raise DownloadError("local files are not accepted here; submit an http(s) URL", source)
    return _fetch_local(source, dest_dir, settings)


# ---------------------------------------------------------------------------------------------
# Local files


def _safe_suffix(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ".bin"


def _fetch_local(source: str, dest_dir: Path, settings: Settings) -> DownloadedSource:
    path = Path(source).expanduser()
    try:
        resolved = path.resolve(strict=True)
    except (FileNotFoundError, RuntimeError):
        raise DownloadError(f"source file does not exist: {path}", source) from None
    except OSError as exc:
        raise DownloadError(f"cannot read source file {path}: {exc.strerror or exc}", source) from exc
    if not resolved.is_file():
        raise DownloadError(f"source is not a regular file: {resolved}", source)
    size = resolved.stat().st_size
    if size == 0:
        raise DownloadError(f"source file is empty (0 bytes): {resolved}", source)
    if size > settings.max_download_bytes:
        raise DownloadError(
            f"source file is {size} bytes, over the limit of {settings.max_download_bytes} bytes "
            f"(HEATERS_MAX_DOWNLOAD_BYTES): {resolved}",
            source,
        )
    dest = dest_dir / f"source{_safe_suffix(resolved.name)}"
    if dest.resolve() == resolved:
        raise DownloadError(f"source file is already at the destination: {resolved}", source)
    digest = hashlib.sha256()
    tmp = dest.with_name(f".{uuid.uuid4().hex[:8]}.part{dest.suffix}")
    try:
        with resolved.open("rb") as src, tmp.open("wb") as out:
            while chunk := src.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
        info = _verify(tmp, str(resolved), settings, shown=resolved)
        tmp.replace(dest)
    except OSError as exc:
        raise DownloadError(f"cannot copy source file {resolved}: {exc.strerror or exc}", source) from exc
    finally:
        tmp.unlink(missing_ok=True)
    logger.info("copied local source %s to %s (%d bytes)", resolved, dest, size)
    return DownloadedSource(
        path=dest,
        title=resolved.stem,
        original_url=str(resolved),
        checksum=digest.hexdigest(),
        size_bytes=size,
        info=info,
        extractor="local",
    )


def _verify(path: Path, source: str, settings: Settings, *, shown: Path | str) -> MediaInfo:
    """Probe a fetched file; translate problems into actionable :class:`DownloadError`."""
    try:
        info = inspect_media(path)
    except MediaError as exc:
        reason = exc.reason
        if "empty" in reason:
            why = "file is empty (0 bytes)"
        elif "no video stream" in reason:
            why = "file has no video stream (audio only?)"
        elif "truncated or corrupt video data" in reason:
            why = "video data is truncated or corrupt (the file ends early); fetch it again"
        elif "not a readable video" in reason:
            why = diagnose_unreadable(path)
        else:
            why = f"not a usable video ({reason})"
        raise DownloadError(f"{why}: {shown}", source) from exc
    if info.frame_count < 2:
        raise DownloadError(f"not a video: it has {info.frame_count} frame (an image?): {shown}", source)
    if info.duration > settings.max_duration_seconds:
        raise DownloadError(
            f"video is {info.duration:.0f} s long, over the limit of {settings.max_duration_seconds:.0f} s "
            f"(HEATERS_MAX_DURATION_SECONDS): {shown}",
            source,
        )
    return info


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# SSRF guard


def check_url_host(url: str, settings: Settings) -> None:
    """Raise :class:`DownloadError` unless ``url`` is http(s) with a host whose every address is
    public (skipped when ``settings.allow_private_hosts``). Every connection is checked again when
    it is made (:mod:`infra.media.fetch_guard`); this early check gives the clearest message."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise DownloadError(f"malformed URL ({exc}): {url}", url) from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise DownloadError(f"scheme '{scheme}' is not allowed; use http(s) or a local path", url)
    host = parts.hostname
    if not host:
        raise DownloadError(f"URL has no host: {url}", url)
    try:
        resolve_public(host, port or (443 if scheme == "https" else 80), settings)
    except Refused as exc:
        raise DownloadError(f"{exc.reason}: {url}", url) from None


# ---------------------------------------------------------------------------------------------
# URLs through yt-dlp


class _TooLargeError(Exception):
    pass


class _YdlLogger:
    """Routes yt-dlp's messages to logging and remembers the ones that explain failures."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    def _note(self, msg: str) -> None:
        if "max-filesize" in msg or "does not pass filter" in msg:
            self.notes.append(msg.strip())

    def debug(self, msg: str) -> None:
        self._note(msg)
        logger.debug("yt-dlp: %s", msg)

    def info(self, msg: str) -> None:
        self._note(msg)
        logger.info("yt-dlp: %s", msg)

    def warning(self, msg: str) -> None:
        self._note(msg)
        logger.warning("yt-dlp: %s", msg)

    def error(self, msg: str) -> None:
        logger.warning("yt-dlp: %s", msg)  # fetch_source raises DownloadError with the reason


def _http_status(exc: BaseException) -> int | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        status = getattr(current, "status", None)
        if isinstance(status, int):
            return status
        exc_info = getattr(current, "exc_info", None)
        nested = exc_info[1] if isinstance(exc_info, tuple) and len(exc_info) > 1 else None
        current = nested if isinstance(nested, BaseException) else (current.__cause__ or current.__context__)
    match = re.search(r"HTTP Error (\d{3})", str(exc))
    return int(match.group(1)) if match else None


def _clean(msg: str) -> str:
    msg = re.sub(r"\x1b\[[0-9;]*m", "", msg)
    return msg.removeprefix("ERROR: ").strip()[:300]


def _fetch_url(
    url: str, dest_dir: Path, settings: Settings, should_stop: Callable[[], str | None] | None = None
) -> DownloadedSource:
    check_url_host(url, settings)
    work = Path(tempfile.mkdtemp(prefix=".download-", dir=dest_dir))
    try:
        with Transfer(settings, url, should_stop) as transfer:
            return _download_with_fallbacks(url, dest_dir, work, settings, transfer)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _too_large(exc: BaseException) -> bool:
    return (
        isinstance(exc, _TooLargeError)
        or isinstance(exc.__context__, _TooLargeError)
        or any(isinstance(e, _TooLargeError) for e in getattr(exc, "exc_info", None) or ())
    )


def _download_with_fallbacks(
    url: str, dest_dir: Path, work: Path, settings: Settings, transfer: Transfer
) -> DownloadedSource:
    from yt_dlp.utils import DownloadError as YtDlpDownloadError
    from yt_dlp.utils import YoutubeDLError

    from infra.media.ffmpeg import ffmpeg_exe

    max_bytes = settings.max_download_bytes
    too_large = f"download is larger than the limit of {max_bytes} bytes (HEATERS_MAX_DOWNLOAD_BYTES): {url}"
    last_reason = "no attempt made"
    ydl_class = guarded_ydl_class(transfer)
    for attempt, selector in enumerate(FORMAT_FALLBACKS, start=1):
        ylog = _YdlLogger()

        def progress(status: dict[str, Any]) -> None:
            done = status.get("downloaded_bytes") or 0
            transfer.progress(str(status.get("filename") or status.get("tmpfilename") or ""), int(done))
            transfer.check()
            if done > max_bytes:
                raise _TooLargeError(f"download passed {max_bytes} bytes")

        attempt_dir = work / f"attempt{attempt}"
        params: dict[str, Any] = {
            "format": selector,
            "noplaylist": True,
            "merge_output_format": "mp4",
            "outtmpl": {"default": "source.%(ext)s"},
            "paths": {"home": str(attempt_dir), "temp": str(attempt_dir)},
            "restrictfilenames": True,
            "max_filesize": max_bytes,
            "retries": 3,
            "fragment_retries": 3,
            "extractor_retries": 2,
            "file_access_retries": 2,
            "socket_timeout": 30,
            "ffmpeg_location": ffmpeg_exe(),
            # Native downloaders only: they fetch through the guarded connections. ffmpeg merges
            # local files and may not open anything else; yt-dlp's ffmpeg fixups are not run.
            "external_downloader": {"default": "native"},
            "hls_prefer_native": True,
            "fixup": "never",
            "postprocessor_args": {"merger+ffmpeg_i": list(FFMPEG_LOCAL_INPUT)},
            "logger": ylog,
            "quiet": True,
            "no_warnings": False,
            "noprogress": True,
            "cachedir": False,
            "updatetime": False,
            "overwrites": True,
            "progress_hooks": [progress],
        }
        try:
            with ydl_class(params) as ydl:
                meta = ydl.extract_info(url, download=False)
                if meta is None:
                    raise DownloadError(f"no video found at {url}", url)
                if meta.get("_type") in ("playlist", "multi_video"):
                    raise DownloadError(
                        f"URL is a playlist, not a single video; submit one video's URL: {url}", url
                    )
                if meta.get("is_live") or meta.get("live_status") in ("is_live", "is_upcoming"):
                    raise DownloadError(f"it is a live stream; live streams are not accepted: {url}", url)
                duration = meta.get("duration")
                if isinstance(duration, int | float) and duration > settings.max_duration_seconds:
                    raise DownloadError(
                        f"video is {duration:.0f} s long, over the limit of "
                        f"{settings.max_duration_seconds:.0f} s (HEATERS_MAX_DURATION_SECONDS): {url}",
                        url,
                    )
                result = ydl.process_ie_result(meta, download=True)
        except DownloadError:
            raise
        except Exception as exc:
            stopped = transfer.stopped or transfer.refused
            if stopped is not None:
                raise DownloadError(f"{stopped}: {url}", url) from None
            if _too_large(exc):
                raise DownloadError(too_large, url) from None
            if not isinstance(exc, YoutubeDLError):
                raise
            status = _http_status(exc)
            message = _clean(str(exc))
            if status is not None and status in _PERMANENT_HTTP:
                raise DownloadError(f"HTTP {status} from {url}", url) from None
            if "Unsupported URL" in message:
                raise DownloadError(f"no downloadable video found at {url} ({message})", url) from None
            last_reason = f"HTTP {status} from {url}" if status else message
            logger.warning("download attempt %d (%s) of %s failed: %s", attempt, selector, url, message)
            if not isinstance(exc, YtDlpDownloadError):
                break
            continue
        if transfer.stopped is not None:  # yt-dlp reported the failure and carried on
            raise DownloadError(f"{transfer.stopped}: {url}", url)
        if any("max-filesize" in note for note in ylog.notes):
            raise DownloadError(too_large, url)
        produced = _downloaded_file(result, attempt_dir)
        if produced is None and transfer.refused is not None:  # what the guard refused was the video
            raise DownloadError(f"{transfer.refused}: {url}", url)
        if produced is None:
            last_reason = "yt-dlp finished without producing a file" + (
                f" ({ylog.notes[-1]})" if ylog.notes else ""
            )
            logger.warning("download attempt %d (%s) of %s: %s", attempt, selector, url, last_reason)
            continue
        size = produced.stat().st_size
        if size == 0:
            raise DownloadError(f"downloaded file is empty (0 bytes) from {url}", url)
        if size > max_bytes:
            raise DownloadError(
                f"download is {size} bytes, over the limit of {max_bytes} bytes (HEATERS_MAX_DOWNLOAD_BYTES): {url}",
                url,
            )
        info = _verify(produced, url, settings, shown=url)
        dest = dest_dir / f"source{_safe_suffix(produced.name)}"
        produced.replace(dest)
        checksum = _sha256(dest)
        title = str(result.get("title") or meta.get("title") or dest.stem)
        logger.info("downloaded %s to %s (%d bytes, format %s)", url, dest, size, selector)
        return DownloadedSource(
            path=dest,
            title=title,
            original_url=url,
            checksum=checksum,
            size_bytes=size,
            info=info,
            extractor=str(result.get("extractor_key") or result.get("extractor") or "unknown").lower(),
            source_id=str(result["id"]) if result.get("id") is not None else None,
        )
    raise DownloadError(f"download failed after {len(FORMAT_FALLBACKS)} attempts: {last_reason}", url)


def _downloaded_file(result: dict[str, Any], attempt_dir: Path) -> Path | None:
    for item in result.get("requested_downloads") or []:
        candidate = item.get("filepath")
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    candidate = result.get("filepath")
    if candidate and Path(candidate).is_file():
        return Path(candidate)
    files = [p for p in attempt_dir.glob("source.*") if p.is_file() and not p.name.endswith(".part")]
    return max(files, key=lambda p: p.stat().st_size) if files else None
