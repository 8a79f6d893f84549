"""S3ObjectStorage against a real HTTP endpoint: moto in server mode on loopback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from infra.config import Settings
from infra.object_storage import ObjectNotFoundError, S3ObjectStorage

pytestmark = pytest.mark.integration


@pytest.fixture
def endpoint(s3_endpoint: str) -> str:
    return s3_endpoint


@pytest.fixture
def store(endpoint: str, request: pytest.FixtureRequest) -> S3ObjectStorage:
    bucket = "heaters-" + request.node.name.replace("_", "-").lower()[:40]
    settings = Settings(
        s3_endpoint=endpoint,
        s3_bucket=bucket,
        s3_region="eu-west-1",
        s3_access_key_id="testing",
        s3_secret_access_key="testing",
    )
    storage = S3ObjectStorage.from_settings(settings)
    assert storage.ensure_bucket() is True
    assert storage.ensure_bucket() is False
    return storage


def test_round_trip(store: S3ObjectStorage, tmp_path: Path) -> None:
    payload = os.urandom(200_000)
    src = tmp_path / "proxy.mp4"
    src.write_bytes(payload)
    store.put_file("videos/1/proxy.mp4", src)
    store.put_bytes("videos/1/sprites/manifest.json", b'{"v": 1}', "application/json")

    assert store.exists("videos/1/proxy.mp4")
    assert store.size("videos/1/proxy.mp4") == len(payload)
    head = store.client.head_object(Bucket=store.bucket, Key="videos/1/proxy.mp4")
    assert head["ContentType"] == "video/mp4"
    assert store.get_bytes("videos/1/sprites/manifest.json") == b'{"v": 1}'
    with store.open("videos/1/proxy.mp4") as body:
        assert body.read() == payload
    out = store.get_to_path("videos/1/proxy.mp4", tmp_path / "dl" / "p.mp4")
    assert out.read_bytes() == payload
    assert store.list("videos/") == ["videos/1/proxy.mp4", "videos/1/sprites/manifest.json"]
    assert store.local_path("videos/1/proxy.mp4") is None
    url = store.url("videos/1/proxy.mp4", expires_in=60)
    assert url.startswith(store.client.meta.endpoint_url) and "Signature" in url


def test_delete_prefix(store: S3ObjectStorage) -> None:
    keys = [f"videos/1/sprites/sheet_{i:05d}.jpg" for i in range(7)] + ["videos/1/a.mp4"]
    for key in [*keys, "videos/10/a.mp4", "videos/2/a.mp4"]:
        store.put_bytes(key, b"x")
    with pytest.raises(ValueError, match="must end with '/'"):
        store.delete_prefix("videos/1")
    assert store.delete_prefix("videos/1/") == len(keys)
    assert store.list() == ["videos/10/a.mp4", "videos/2/a.mp4"]
    assert store.delete_prefix("videos/1/") == 0


def test_missing_key_errors(store: S3ObjectStorage, tmp_path: Path) -> None:
    assert not store.exists("videos/404.mp4")
    with pytest.raises(ObjectNotFoundError, match=r"videos/404\.mp4"):
        store.get_bytes("videos/404.mp4")
    with pytest.raises(ObjectNotFoundError):
        store.size("videos/404.mp4")
    with pytest.raises(ObjectNotFoundError):
        store.open("videos/404.mp4")
    with pytest.raises(ObjectNotFoundError):
        store.get_to_path("videos/404.mp4", tmp_path / "x.mp4")
    assert list(tmp_path.iterdir()) == []  # no partial download left behind
    store.delete("videos/404.mp4")  # idempotent
    with pytest.raises(ValueError, match=r"'\.\.'"):
        store.put_bytes("../x", b"x")
