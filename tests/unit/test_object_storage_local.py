"""LocalObjectStorage: key validation (no escaping the root) and round trips."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from infra.config import Settings
from infra.object_storage import (
    LocalObjectStorage,
    ObjectNotFoundError,
    ObjectStorage,
    S3ObjectStorage,
    storage_from_settings,
    validate_key,
)


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStorage:
    return LocalObjectStorage(tmp_path / "root")


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("", "non-empty"),
        ("../escape.txt", "'..'"),
        ("videos/../../escape.txt", "'..'"),
        ("videos/..", "'..'"),
        ("/etc/passwd", "absolute"),
        ("videos\\..\\x", "backslash"),
        ("videos/a\x00b", "NUL"),
        ("videos//a", "empty"),
        ("videos/a/", "empty"),
        ("./a", "'.'"),
        ("a\nb", "control"),
        ("x" * 1025, "longer"),
    ],
)
def test_unsafe_keys_are_refused_with_a_reason(store: LocalObjectStorage, key: str, why: str) -> None:
    with pytest.raises(ValueError, match=re.escape(why)):
        validate_key(key)
    with pytest.raises(ValueError, match=re.escape(why)):
        store.put_bytes(key, b"x")
    with pytest.raises(ValueError):
        store.exists(key)
    with pytest.raises(ValueError):
        store.delete(key)
    assert not (store.root.parent / "escape.txt").exists()


def test_symlink_out_of_root_is_refused(store: LocalObjectStorage, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    store.root.mkdir(parents=True)
    (store.root / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError, match="outside the storage root"):
        store.put_bytes("link/x.bin", b"x")
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("same_file_system", [True, False])
def test_a_moved_file_is_stored_whole_and_leaves_its_old_name(
    store: LocalObjectStorage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, same_file_system: bool
) -> None:
    if not same_file_system:

        def cross_device(src: object, dst: object) -> None:
            raise OSError(18, "Invalid cross-device link")

        monkeypatch.setattr(os, "link", cross_device)
    work = tmp_path / "work" / "proxy.mp4"
    work.parent.mkdir()
    payload = os.urandom(300_000)
    work.write_bytes(payload)
    store.put_file("videos/1/proxy.mp4", work, "video/mp4", move=True)
    assert store.get_bytes("videos/1/proxy.mp4") == payload
    assert not work.exists() and list(work.parent.iterdir()) == []
    work.write_bytes(b"the stage's next file")  # a new file at the old name is another object
    assert store.get_bytes("videos/1/proxy.mp4") == payload
    assert [p.name for p in (store.root / "videos" / "1").iterdir()] == ["proxy.mp4"]  # no temporary names
    assert (store.root / "videos" / "1" / "proxy.mp4").stat().st_mode & 0o777 == 0o644


def test_round_trip_bytes_file_and_stream(store: LocalObjectStorage, tmp_path: Path) -> None:
    src = tmp_path / "in.bin"
    payload = os.urandom(300_000)
    src.write_bytes(payload)
    store.put_file("videos/1/source.mp4", src, "video/mp4")
    store.put_bytes("videos/1/sprites/manifest.json", b'{"a": 1}')

    assert store.exists("videos/1/source.mp4")
    assert store.size("videos/1/source.mp4") == len(payload)
    assert store.get_bytes("videos/1/sprites/manifest.json") == b'{"a": 1}'
    with store.open("videos/1/source.mp4") as f:
        assert f.read() == payload
    out = store.get_to_path("videos/1/source.mp4", tmp_path / "dl" / "copy.mp4")
    assert out.read_bytes() == payload
    assert store.local_path("videos/1/source.mp4") == store.root / "videos" / "1" / "source.mp4"
    assert store.url("videos/1/source.mp4").startswith("file://")
    assert (
        LocalObjectStorage(store.root, base_url="/media/").url("videos/1/a b.mp4")
        == "/media/videos/1/a%20b.mp4"
    )
    assert store.list() == ["videos/1/source.mp4", "videos/1/sprites/manifest.json"]
    assert store.list("videos/1/sp") == ["videos/1/sprites/manifest.json"]
    assert store.list("nothing/") == []

    # Overwrite replaces atomically and leaves no temporary files behind.
    store.put_bytes("videos/1/sprites/manifest.json", b"{}")
    assert store.get_bytes("videos/1/sprites/manifest.json") == b"{}"
    leftovers = [p for p in store.root.rglob("*") if p.name.startswith(".heaters-tmp-")]
    assert leftovers == []


def test_missing_keys_and_idempotent_delete(store: LocalObjectStorage, tmp_path: Path) -> None:
    with pytest.raises(ObjectNotFoundError) as info:
        store.get_bytes("videos/9/none.mp4")
    assert info.value.key == "videos/9/none.mp4"
    with pytest.raises(ObjectNotFoundError):
        store.get_to_path("videos/9/none.mp4", tmp_path / "x")
    with pytest.raises(ObjectNotFoundError):
        store.open("videos/9/none.mp4")
    assert not (tmp_path / "x").exists()
    assert not store.exists("videos/9/none.mp4")
    store.delete("videos/9/none.mp4")  # no error
    with pytest.raises(FileNotFoundError):
        store.put_file("videos/9/a.mp4", tmp_path / "does-not-exist.mp4")


def test_delete_prefix_is_scoped(store: LocalObjectStorage) -> None:
    for key in ("videos/1/a.mp4", "videos/1/sprites/s0.jpg", "videos/10/a.mp4", "videos/2/a.mp4"):
        store.put_bytes(key, b"data")
    with pytest.raises(ValueError, match="must end with '/'"):
        store.delete_prefix("videos/1")
    with pytest.raises(ValueError):
        store.delete_prefix("../")
    assert store.delete_prefix("videos/1/") == 2
    assert store.list() == ["videos/10/a.mp4", "videos/2/a.mp4"]
    assert not (store.root / "videos" / "1").exists()
    assert store.delete_prefix("videos/1/") == 0
    store.delete("videos/2/a.mp4")
    assert not (store.root / "videos" / "2").exists()  # empty directories are pruned


def test_storage_from_settings(tmp_path: Path) -> None:
    local = storage_from_settings(Settings(home=tmp_path / "home"))
    assert isinstance(local, LocalObjectStorage)
    assert isinstance(local, ObjectStorage)
    assert local.root == (tmp_path / "home" / "media").resolve()
    s3 = storage_from_settings(
        Settings(
            s3_bucket="b",
            s3_endpoint="http://127.0.0.1:9",
            s3_access_key_id="k",
            s3_secret_access_key="s",
        )
    )
    assert isinstance(s3, S3ObjectStorage)
    assert s3.bucket == "b"
