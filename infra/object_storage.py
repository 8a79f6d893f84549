"""Object storage for media artefacts: a local directory or an S3-compatible bucket.

Keys are ``/``-separated relative names such as ``videos/12/proxy.mp4``. Both backends refuse the
same unsafe keys (see :func:`validate_key`), so code tested against :class:`LocalObjectStorage`
behaves the same on :class:`S3ObjectStorage`. Writes are atomic: a reader sees the old object or
the complete new one, never a partial file.
"""

from __future__ import annotations

import contextlib
import logging
import mimetypes
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol, runtime_checkable
from urllib.parse import quote

from infra.config import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger(__name__)

__all__ = [
    "LocalObjectStorage",
    "ObjectNotFoundError",
    "ObjectStorage",
    "S3ObjectStorage",
    "storage_from_settings",
    "validate_key",
    "validate_prefix",
]

_MAX_KEY_LENGTH = 1024
_TMP_PREFIX = ".heaters-tmp-"
_CHUNK = 1024 * 1024


class ObjectNotFoundError(LookupError):
    """The requested key does not exist."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"object not found: {key}")


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe relative object key, else raise ``ValueError`` saying why.

    Refused: empty keys, keys longer than 1024 characters, NUL or other control characters,
    backslashes, absolute paths (leading ``/``), empty segments (``a//b``, trailing ``/``) and
    ``.``/``..`` segments.
    """
    if not isinstance(key, str) or not key:
        raise ValueError("object key must be a non-empty string")
    if len(key) > _MAX_KEY_LENGTH:
        raise ValueError(f"object key is longer than {_MAX_KEY_LENGTH} characters")
    if "\x00" in key:
        raise ValueError(f"object key contains a NUL character: {key!r}")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in key):
        raise ValueError(f"object key contains a control character: {key!r}")
    if "\\" in key:
        raise ValueError(f"object key contains a backslash (use '/' as separator): {key!r}")
    if key.startswith("/"):
        raise ValueError(f"object key must be relative, not an absolute path: {key!r}")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise ValueError(f"object key has an empty, '.' or '..' segment: {key!r}")
        if segment.startswith(_TMP_PREFIX):
            raise ValueError(f"object key segment may not start with {_TMP_PREFIX!r}: {key!r}")
    return key


def validate_prefix(prefix: str) -> str:
    """A prefix for :meth:`ObjectStorage.delete_prefix`: a valid key ending in ``/``.

    The trailing slash is required so that ``videos/1/`` can never also match ``videos/10/``.
    """
    if not prefix.endswith("/"):
        raise ValueError(f"prefix must end with '/' (e.g. 'videos/12/'): {prefix!r}")
    validate_key(prefix[:-1])
    return prefix


def _guess_type(key: str) -> str:
    return mimetypes.guess_type(key)[0] or "application/octet-stream"


@runtime_checkable
class ObjectStorage(Protocol):
    """What pipeline actors need from storage. Missing keys raise :class:`ObjectNotFoundError`;
    invalid keys raise ``ValueError``."""

    def put_file(self, key: str, path: Path, content_type: str | None = None, *, move: bool = False) -> None:
        """Upload the file at ``path`` as ``key`` (content type guessed from the key if None).
        ``move``: the caller is done with the file, which is gone afterwards (local storage then
        takes it by a hard link where it can, instead of copying it)."""
        ...

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None: ...

    def get_to_path(self, key: str, path: Path) -> Path:
        """Download ``key`` to ``path`` atomically (parents created); return ``path``."""
        ...

    def get_bytes(self, key: str) -> bytes: ...

    def open(self, key: str) -> contextlib.AbstractContextManager[BinaryIO]:
        """A readable binary stream of ``key``; use as a context manager."""
        ...

    def exists(self, key: str) -> bool: ...

    def size(self, key: str) -> int: ...

    def delete(self, key: str) -> None:
        """Delete ``key``; deleting a missing key is not an error (idempotent)."""
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Delete every key under ``prefix`` (which must end with ``/``); return how many."""
        ...

    def list(self, prefix: str = "") -> list[str]:
        """Keys starting with ``prefix`` (plain string prefix), sorted."""
        ...

    def url(self, key: str, expires_in: int = 3600) -> str:
        """A URL a browser can fetch ``key`` from (presigned for S3)."""
        ...

    def local_path(self, key: str) -> Path | None:
        """The file backing ``key`` when storage is local (for serving directly), else None."""
        ...


class LocalObjectStorage:
    """Objects as files under ``root``. ``base_url`` (e.g. ``/media``) makes :meth:`url` return
    ``<base_url>/<key>``; without it :meth:`url` returns a ``file://`` URI."""

    def __init__(self, root: Path, base_url: str | None = None) -> None:
        self.root = Path(root).expanduser().resolve()
        self.base_url = base_url.rstrip("/") if base_url is not None else None

    def __repr__(self) -> str:
        return f"LocalObjectStorage({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        validate_key(key)
        path = self.root.joinpath(*key.split("/"))
        # Refuse keys that resolve outside the root through symlinks placed inside it.
        resolved = path.resolve()
        if not resolved.is_relative_to(self.root):
            raise ValueError(f"object key resolves outside the storage root: {key!r}")
        return path

    def _existing(self, key: str) -> Path:
        path = self._path(key)
        if not path.is_file():
            raise ObjectNotFoundError(key)
        return path

    def _write_atomic(self, path: Path, writer_from: Path | bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=path.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                if isinstance(writer_from, bytes):
                    out.write(writer_from)
                else:
                    with writer_from.open("rb") as src:
                        shutil.copyfileobj(src, out, _CHUNK)
                out.flush()
                os.fsync(out.fileno())
            tmp.chmod(0o644)
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)

    def put_file(self, key: str, path: Path, content_type: str | None = None, *, move: bool = False) -> None:
        target = self._path(key)
        source = Path(path)
        if not source.is_file():
            raise FileNotFoundError(f"cannot store {key!r}: no such file {source}")
        if not (move and self._link_atomic(target, source)):
            self._write_atomic(target, source)
            if move:
                source.unlink(missing_ok=True)
        logger.debug("stored %s (%d bytes) at %s", key, target.stat().st_size, target)

    def _link_atomic(self, path: Path, source: Path) -> bool:
        """Put ``source`` in place as ``path`` by a hard link (its data synced, as a copy's is), then
        remove the name ``source``; False, nothing done, where no link can be made (another file
        system)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{_TMP_PREFIX}{uuid.uuid4().hex[:8]}-{path.name}")
        try:
            os.link(source, tmp)
        except OSError:
            return False
        try:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            tmp.chmod(0o644)
            tmp.replace(path)
            source.unlink()
        finally:
            tmp.unlink(missing_ok=True)
        return True

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        self._write_atomic(self._path(key), bytes(data))

    def get_to_path(self, key: str, path: Path) -> Path:
        source = self._existing(key)
        dest = Path(path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f"{_TMP_PREFIX}{uuid.uuid4().hex[:8]}-{dest.name}")
        try:
            shutil.copyfile(source, tmp)
            tmp.replace(dest)
        finally:
            tmp.unlink(missing_ok=True)
        return dest

    def get_bytes(self, key: str) -> bytes:
        return self._existing(key).read_bytes()

    def open(self, key: str) -> contextlib.AbstractContextManager[BinaryIO]:
        return self._existing(key).open("rb")

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        return self._existing(key).stat().st_size

    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        self._prune_empty_dirs(path.parent)

    def delete_prefix(self, prefix: str) -> int:
        validate_prefix(prefix)
        keys = self.list(prefix)
        for key in keys:
            self._path(key).unlink(missing_ok=True)
        directory = self._path(prefix[:-1])
        if directory.is_dir():
            shutil.rmtree(directory, ignore_errors=True)  # also stray temp files
        self._prune_empty_dirs(directory.parent)
        logger.info("deleted %d objects under %s in %s", len(keys), prefix, self.root)
        return len(keys)

    def _prune_empty_dirs(self, directory: Path) -> None:
        while directory != self.root and directory.is_relative_to(self.root):
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent

    def list(self, prefix: str = "") -> list[str]:
        if "\x00" in prefix or "\\" in prefix or prefix.startswith("/"):
            raise ValueError(f"invalid prefix: {prefix!r}")
        # Walk only the deepest directory the prefix names, then filter by string prefix.
        head = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self._path(head) if head else self.root
        if not start.is_dir():
            return []
        keys: list[str] = []
        for dirpath, _dirnames, filenames in os.walk(start):
            for name in filenames:
                if name.startswith(_TMP_PREFIX):
                    continue
                key = (Path(dirpath) / name).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def url(self, key: str, expires_in: int = 3600) -> str:
        path = self._path(key)
        if self.base_url is not None:
            return f"{self.base_url}/{quote(key)}"
        return path.as_uri()

    def local_path(self, key: str) -> Path | None:
        return self._path(key)


class S3ObjectStorage:
    """Objects in an S3-compatible bucket (AWS, MinIO, moto...). Path-style addressing, so any
    endpoint works. :meth:`ensure_bucket` creates the bucket when asked to; nothing else does."""

    def __init__(self, client: S3Client, bucket: str) -> None:
        self.client = client
        self.bucket = bucket

    def __repr__(self) -> str:
        return f"S3ObjectStorage(bucket={self.bucket!r})"

    @classmethod
    def from_settings(cls, settings: Settings) -> S3ObjectStorage:
        """A client for ``settings.s3_*`` (keys may be None: boto3's default credential chain)."""
        if settings.s3_bucket is None:
            raise ValueError("HEATERS_S3_BUCKET is not set")
        import boto3
        from botocore.config import Config

        client = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint,
            region_name=settings.s3_region,
            aws_access_key_id=settings.s3_access_key_id,
            aws_secret_access_key=settings.s3_secret_access_key,
            config=Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 5, "mode": "standard"},
                connect_timeout=10,
                read_timeout=60,
            ),
        )
        return cls(client, settings.s3_bucket)

    @staticmethod
    def _is_missing(exc: Exception) -> bool:
        from botocore.exceptions import ClientError

        if not isinstance(exc, ClientError):
            return False
        code = str(exc.response.get("Error", {}).get("Code", ""))
        return code in ("404", "NoSuchKey", "NotFound")

    def ensure_bucket(self) -> bool:
        """Create the bucket if it does not exist; return True if it was created."""
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
            return False
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code not in ("404", "NoSuchBucket", "NotFound"):
                raise
        region = self.client.meta.region_name
        if region and region != "us-east-1":
            self.client.create_bucket(
                Bucket=self.bucket,
                CreateBucketConfiguration={"LocationConstraint": region},  # type: ignore[typeddict-item]
            )
        else:
            self.client.create_bucket(Bucket=self.bucket)
        logger.info("created bucket %s", self.bucket)
        return True

    def put_file(self, key: str, path: Path, content_type: str | None = None, *, move: bool = False) -> None:
        validate_key(key)
        source = Path(path)
        if not source.is_file():
            raise FileNotFoundError(f"cannot store {key!r}: no such file {source}")
        # upload_file switches to multipart for large files; the object appears only when complete.
        self.client.upload_file(
            str(source),
            self.bucket,
            key,
            ExtraArgs={"ContentType": content_type or _guess_type(key)},
        )
        if move:
            source.unlink(missing_ok=True)
        logger.debug("uploaded %s to s3://%s/%s", source, self.bucket, key)

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        validate_key(key)
        self.client.put_object(
            Bucket=self.bucket, Key=key, Body=bytes(data), ContentType=content_type or _guess_type(key)
        )

    def get_to_path(self, key: str, path: Path) -> Path:
        validate_key(key)
        dest = Path(path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f"{_TMP_PREFIX}{uuid.uuid4().hex[:8]}-{dest.name}")
        try:
            self.client.download_file(self.bucket, key, str(tmp))
            tmp.replace(dest)
        except Exception as exc:
            if self._is_missing(exc):
                raise ObjectNotFoundError(key) from exc
            raise
        finally:
            tmp.unlink(missing_ok=True)
        return dest

    def _get_body(self, key: str) -> BinaryIO:
        validate_key(key)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if self._is_missing(exc):
                raise ObjectNotFoundError(key) from exc
            raise
        body: BinaryIO = response["Body"]  # type: ignore[assignment]
        return body

    def get_bytes(self, key: str) -> bytes:
        body = self._get_body(key)
        try:
            return body.read()
        finally:
            body.close()

    def open(self, key: str) -> contextlib.AbstractContextManager[BinaryIO]:
        return contextlib.closing(self._get_body(key))

    def exists(self, key: str) -> bool:
        validate_key(key)
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if self._is_missing(exc):
                return False
            raise
        return True

    def size(self, key: str) -> int:
        validate_key(key)
        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"])
        except Exception as exc:
            if self._is_missing(exc):
                raise ObjectNotFoundError(key) from exc
            raise

    def delete(self, key: str) -> None:
        validate_key(key)
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def delete_prefix(self, prefix: str) -> int:
        validate_prefix(prefix)
        deleted = 0
        batch: list[str] = []
        for key in self._iter_keys(prefix):
            batch.append(key)
            if len(batch) == 1000:
                deleted += self._delete_batch(batch)
                batch = []
        if batch:
            deleted += self._delete_batch(batch)
        logger.info("deleted %d objects under s3://%s/%s", deleted, self.bucket, prefix)
        return deleted

    def _delete_batch(self, keys: list[str]) -> int:
        response = self.client.delete_objects(
            Bucket=self.bucket,
            Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True},
        )
        errors = response.get("Errors", [])
        if errors:
            first = errors[0]
            raise OSError(
                f"S3 refused to delete {len(errors)} of {len(keys)} objects, "
                f"e.g. {first.get('Key')}: {first.get('Code')} {first.get('Message')}"
            )
        return len(keys)

    def _iter_keys(self, prefix: str) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield item["Key"]

    def list(self, prefix: str = "") -> list[str]:
        return sorted(self._iter_keys(prefix))

    def url(self, key: str, expires_in: int = 3600) -> str:
        validate_key(key)
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_in
        )

    def local_path(self, key: str) -> Path | None:
        validate_key(key)
        return None


def storage_from_settings(settings: Settings, *, base_url: str | None = None) -> ObjectStorage:
    """S3 when ``HEATERS_S3_BUCKET`` is set, else a local directory (``settings.resolved_media_dir``).
    ``base_url`` is the URL path the web app serves the local directory under."""
    if settings.uses_s3:
        return S3ObjectStorage.from_settings(settings)
    return LocalObjectStorage(settings.resolved_media_dir, base_url=base_url)
