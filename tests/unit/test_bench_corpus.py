"""The benchmark corpora (bench/corpus.py): what makes a held-out corpus held out, edits the
generator can render, and corpus folders two processes may build at once."""

from __future__ import annotations

import fcntl
import threading
from pathlib import Path

import numpy as np
import pytest

from bench.corpus import CORPORA, FILM_SEGMENTS, VideoSpec, build_corpus, load_truth, random_program


def test_the_corpora_share_no_seed_and_no_name() -> None:
    """A held-out corpus is only held out if no other corpus renders the same pictures."""
    seeds = [spec.seed for specs in CORPORA.values() for spec in specs]
    assert len(seeds) == len(set(seeds))
    for specs in CORPORA.values():
        assert len({spec.name for spec in specs}) == len(specs)


def test_every_generated_edit_has_a_shot_after_each_transition() -> None:
    """A fade's hold can fill the video after its transition is drawn (dev-1301's synthetic_720p30):
    that transition is dropped, not left without a shot after it."""
    for specs in CORPORA.values():
        for spec in specs:
            if spec.style not in ("real", "film"):
                shots, transitions = random_program(spec)
                assert len(transitions) == len(shots) - 1, spec.name


def test_the_film_pieces_stay_inside_single_shots_of_the_film() -> None:
    """bikes.mp4 cuts after frames 29, 75, 136, 186 and 241 (looked at frame by frame): no piece
    spans one, and each keeps 2 frames away from it."""
    cuts = (29, 75, 136, 186, 241)
    for a, b in FILM_SEGMENTS:
        assert a <= b
        assert not any(a - 2 <= cut + 0.5 <= b + 2 for cut in cuts), (a, b)


def test_a_second_corpus_builder_waits_for_the_first(tmp_path: Path) -> None:
    """Two processes writing the same corpus at once left undecodable videos: the second waits
    for the folder's lock, then finds the video fresh and leaves it alone."""
    spec = VideoSpec("tiny", 64, 36, 25, 1, 99_001, "synthetic")
    built: list[Path] = []
    with (tmp_path / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as a first builder holds it
        second = threading.Thread(target=lambda: built.extend(build_corpus(tmp_path, [spec])))
        second.start()
        second.join(0.5)
        assert second.is_alive() and not (tmp_path / "tiny.mp4").exists()
    second.join(60)
    assert built == [tmp_path / "tiny.mp4"] and built[0].stat().st_size > 0
    stamp = (tmp_path / "tiny.stamp").stat().st_mtime_ns
    assert build_corpus(tmp_path, [spec]) == built
    assert (tmp_path / "tiny.stamp").stat().st_mtime_ns == stamp  # fresh: not written again


def test_a_film_edit_is_letterboxed_and_its_truth_counts_its_frames(tmp_path: Path) -> None:
    """The film's 2.35:1 picture is delivered in 16:9 with black bars that no fade or flash lights."""
    from infra.media.ffmpeg import decode_batches

    spec = VideoSpec("film", 320, 180, 25, 4, 99_003, "film")
    (video,) = build_corpus(tmp_path, [spec])
    truth = load_truth(video)
    frames = np.concatenate(list(decode_batches(video, 320, 180, "rgb24")))
    assert len(frames) == truth.frame_count >= 100  # the last piece is whole
    assert truth.transitions  # an edit, not one shot
    bars = np.concatenate([frames[:, :18], frames[:, -18:]], axis=1)
    assert bars.max() <= 24  # black in every frame (x264's ringing at the edge stays dark)
    assert frames[:, 40:140].mean() > 40


def test_a_corpus_drawn_by_another_opencv_is_drawn_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenCV 5 draws other pixels than 4.x: a video whose stamp names another version is stale."""
    import bench.corpus

    spec = VideoSpec("tiny", 64, 36, 25, 1, 99_004, "synthetic")
    (video,) = build_corpus(tmp_path, [spec])
    stamp = video.with_suffix(".stamp")
    written = stamp.stat().st_mtime_ns
    assert build_corpus(tmp_path, [spec]) == [video] and stamp.stat().st_mtime_ns == written
    monkeypatch.setattr(bench.corpus.cv2, "__version__", "4.14.0")
    build_corpus(tmp_path, [spec])
    assert stamp.stat().st_mtime_ns != written and '"4.14.0"' in stamp.read_text()
