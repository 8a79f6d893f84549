"""Decoding a video in time ranges side by side gives exactly the frames of one whole decode."""

from __future__ import annotations

import logging
import subprocess
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from bench.corpus import Shot, make_video
from infra.media import ffmpeg, range_decode, shot_detection
from infra.media.ffmpeg import (
    MediaError,
    PacketTimes,
    VideoInfo,
    decode_batches,
    ffmpeg_exe,
    packet_times,
    probe_with_packets,
)
from infra.media.range_decode import (
    AHEAD,
    WHOLE,
    DecodeRange,
    decode_in_ranges,
    plan_ranges,
    seek_time,
    video_ranges,
)
from infra.media.shot_detection import HeatersDetector, detect_shots, run_detector

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ranges") / "source.mp4"
    shots = [
        Shot("landscape", 90, "pan", speed=5, scene=1),
        Shot("shapes", 80, speed=4),
        Shot("city", 90, scene=2),
    ]
    make_video(path, shots, fps=30, size=(320, 180), seed=7, noise=2.0)
    return path


def _reencode(source: Path, out: Path, *options: str, late: float = 0.0) -> Path:
    """``source`` encoded again with x264 ``options``; ``late``: the video starts that many seconds
    after the file, which has an audio track from 0."""
    inputs = (
        ["-itsoffset", str(late), "-i", str(source), "-f", "lavfi", "-i", "sine=duration=10"] if late else []
    )
    cmd = [
        ffmpeg_exe(), "-hide_banner", "-v", "error", "-y", *(inputs or ["-i", str(source), "-an"]),
        *(["-map", "0:v", "-map", "1:a", "-c:a", "aac"] if late else []),
        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", *options, str(out),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True)
    return out


def _whole(path: Path) -> np.ndarray:
    return np.concatenate(list(decode_batches(path, 64, 36, "rgb24", batch_size=50)))


def _in_ranges(path: Path, ranges: tuple[DecodeRange, ...], parallel: int = 2) -> np.ndarray:
    batches = list(decode_in_ranges(path, 64, 36, "rgb24", ranges, parallel=parallel, batch_size=50))
    assert all(1 <= len(b) <= 50 for b in batches)
    return np.concatenate(batches)


@pytest.mark.parametrize(
    ("name", "options", "late"),
    [
        # B-frames, a keyframe every 40 frames, timestamps the microsecond cannot hold (1/30000 s units)
        ("ntsc.mp4", ("-r", "30000/1001", "-g", "40", "-bf", "3"), 0.0),
        ("no-b-frames.mp4", ("-g", "30", "-bf", "0"), 0.0),
        # the video starting 0.7 s after the file (an audio track from 0), in MP4 and in Matroska
        ("late.mp4", ("-g", "30", "-bf", "2"), 0.7),
        ("late.mkv", ("-g", "30", "-bf", "2"), 0.7),
    ],
)
def test_ranges_give_the_frames_of_one_whole_decode(
    source: Path,
    tmp_path: Path,
    name: str,
    options: tuple[str, ...],
    late: float,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = _reencode(source, tmp_path / name, *options, late=late)
    info, _, packets = probe_with_packets(path)
    assert packets is not None and len(packets.pts) == info.frame_count == 260
    whole = _whole(path)
    for parts in (2, 3, 5):
        ranges = plan_ranges(packets, parts, min_frames=40)
        assert len(ranges) >= 2
        with caplog.at_level(logging.WARNING, logger="infra.media.range_decode"):
            got = _in_ranges(path, ranges, parallel=2)
        assert not caplog.records, "the ranges agreed, nothing was decoded twice"
        assert got.shape == whole.shape and np.array_equal(got, whole), (name, parts)


def _encode(source: Path, out: Path, *options: str, before: tuple[str, ...] = ()) -> Path:
    """``source`` (its video only) encoded with the ffmpeg output ``options`` (``before``: input options)."""
    cmd = [
        ffmpeg_exe(),
        "-hide_banner",
        "-v",
        "error",
        "-y",
        *before,
        "-i",
        str(source),
        "-an",
        *options,
        str(out),
    ]
    subprocess.run(cmd, check=True, capture_output=True)
    return out


X264 = ("-c:v", "libx264", "-preset", "veryfast")


@pytest.mark.parametrize(
    ("name", "options", "before"),
    [
        # all-intra: every frame a clean start (the last one too: decoded whole before stop 23's ranges2)
        ("intra.mov", ("-c:v", "mjpeg", "-q:v", "4"), ()),
        (
            "hevc.mkv",
            (
                "-c:v",
                "libx265",
                "-preset",
                "veryfast",
                "-x265-params",
                "keyint=40:open-gop=0:bframes=4:log-level=none",
            ),
            (),
        ),
        (
            "vp9.webm",
            ("-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-g", "40", "-b:v", "300k"),
            (),
        ),
        (
            "av1.mkv",
            ("-c:v", "libsvtav1", "-preset", "12", "-g", "40", "-svtav1-params", "irefresh-type=2"),
            (),
        ),
        ("10bit.mp4", (*X264, "-pix_fmt", "yuv420p10le", "-g", "40", "-bf", "3"), ()),
        ("mbaff.mp4", (*X264, "-flags", "+ildct+ilme", "-g", "40", "-bf", "3"), ()),
        # a fifth of the frames dropped, the rest at their times: a variable frame rate
        (
            "vfr.mp4",
            ("-vf", "select='not(eq(mod(n\\,5)\\,0))'", "-fps_mode", "vfr", *X264, "-g", "40", "-bf", "3"),
            (),
        ),
        ("rotated.mp4", (*X264, "-g", "40", "-bf", "3"), ("-display_rotation", "90")),
        ("fragmented.mp4", (*X264, "-g", "40", "-bf", "3", "-movflags", "frag_keyframe+empty_moov"), ()),
        # 1/90000 s units, a B-pyramid eight deep and 16 references
        ("90k.mp4", (*X264, "-g", "40", "-bf", "8", "-refs", "16", "-video_track_timescale", "90000"), ()),
    ],
)
def test_other_codecs_and_containers_split_and_agree(
    source: Path,
    tmp_path: Path,
    name: str,
    options: tuple[str, ...],
    before: tuple[str, ...],
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = _encode(source, tmp_path / name, *options, before=before)
    info, _, packets = probe_with_packets(path)
    assert packets is not None and len(packets.pts) == info.frame_count and packets.hidden == 0
    whole = _whole(path)
    assert len(whole) == info.frame_count
    for parts in (2, 3, 5):
        ranges = plan_ranges(packets, parts, min_frames=40)
        assert len(ranges) >= 2, (name, parts)
        with caplog.at_level(logging.WARNING, logger="infra.media.range_decode"):
            got = _in_ranges(path, ranges)
        assert not caplog.records, (name, parts, caplog.text)
        assert got.shape == whole.shape and np.array_equal(got, whole), (name, parts)


@pytest.mark.parametrize("name", ["cut.mp4", "cut.mov"])
def test_a_video_an_edit_list_starts_between_keyframes(
    source: Path, tmp_path: Path, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A stream copy cut between keyframes keeps the GOP's first packets and an edit list hides
    them (ffmpeg flags them "discard"): a decode's frame ``i`` is packet ``hidden + i``. Taken for
    frame ``i`` they started every range 15 frames early and the ranges fell back every time."""
    full = _encode(source, tmp_path / "full.mp4", *X264, "-g", "40", "-bf", "3")
    path = tmp_path / name
    cmd = [
        ffmpeg_exe(),
        "-hide_banner",
        "-v",
        "error",
        "-ss",
        "0.5",
        "-i",
        str(full),
        "-c",
        "copy",
        str(path),
    ]
    subprocess.run(cmd, check=True, capture_output=True)
    packets = packet_times(path)
    whole = _whole(path)
    assert packets.hidden == 15 and len(packets.pts) - packets.hidden == len(whole) == 245
    ranges = plan_ranges(packets, 3, min_frames=40)
    assert [r.first for r in ranges] == [0, 75, 155]  # packets 90 and 170: the cuts, keyframes
    with caplog.at_level(logging.WARNING, logger="infra.media.range_decode"):
        got = _in_ranges(path, ranges)
    assert not caplog.records and np.array_equal(got, whole)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        (
            "open.mp4",
            ("-c:v", "libx265", "-preset", "veryfast", "-x265-params", "keyint=40:open-gop=1:log-level=none"),
        ),
        ("bframes.mov", ("-c:v", "mpeg4", "-g", "40", "-bf", "2", "-q:v", "4")),  # open GOPs unless +cgop
        # forward keyframes: not flagged as keyframes in the container, nowhere to start
        (
            "forward-key.webm",
            ("-c:v", "libsvtav1", "-preset", "12", "-g", "40", "-svtav1-params", "irefresh-type=1"),
        ),
    ],
)
def test_other_open_gop_streams_are_decoded_whole(
    source: Path, tmp_path: Path, name: str, options: tuple[str, ...]
) -> None:
    packets = packet_times(_encode(source, tmp_path / name, *options))
    assert plan_ranges(packets, 2, min_frames=40) == WHOLE


def test_an_intra_refresh_stream_agrees_where_it_falls_back(
    source: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """x264's periodic intra refresh flags recovery points, not IDR frames, as keyframes: a decode
    started there shows its frames only once the refresh has swept the picture, so some ranges
    start late and the rest is decoded again (correct, at a cost)."""
    path = _encode(
        source, tmp_path / "refresh.mp4", *X264, "-g", "40", "-bf", "0", "-x264-params", "intra-refresh=1"
    )
    packets = packet_times(path)
    whole = _whole(path)
    with caplog.at_level(logging.WARNING, logger="infra.media.range_decode"):
        for parts in (2, 5):
            assert np.array_equal(_in_ranges(path, plan_ranges(packets, parts, min_frames=40)), whole)
    assert "does not start with that frame" in caplog.text


def test_an_open_gop_stream_is_decoded_whole(
    source: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An open-GOP keyframe's leading frames show before it: no place to start a range; and a decode
    started even at such a stream's IDR frames complains of missing references (x264's open-gop:
    "mmco: unref short failure"), so the stream is decoded in one range."""
    path = _reencode(source, tmp_path / "open.mp4", "-g", "45", "-bf", "2", "-x264-params", "open-gop=1")
    packets = packet_times(path)
    assert 45 not in packets.clean_starts and 90 in packets.clean_starts  # an I frame, then the cut's IDR
    assert plan_ranges(packets, 2, min_frames=40) == WHOLE
    started_at_the_idr = plan_ranges(
        replace(packets, keyframes=len(packets.clean_starts) + 1), 2, min_frames=40
    )
    assert started_at_the_idr[1].first == 90
    with caplog.at_level(logging.WARNING, logger="infra.media.range_decode"):
        got = _in_ranges(path, started_at_the_idr)
    assert "mmco" in caplog.text and np.array_equal(got, _whole(path))  # decoded again, in one pass
    closed = packet_times(_reencode(source, tmp_path / "closed.mp4", "-g", "45", "-bf", "2"))
    assert closed.keyframes - 1 == len(closed.clean_starts)  # all but the first frame
    assert len(plan_ranges(closed, 2, min_frames=40)) == 2


def test_a_stream_without_an_index_is_decoded_whole(source: Path, tmp_path: Path) -> None:
    """MPEG-TS has no index: its seek landed frames before the keyframe asked for."""
    packets = packet_times(_reencode(source, tmp_path / "late.ts", "-g", "30", "-bf", "2", late=0.7))
    assert packets.container == "mpegts" and len(packets.clean_starts) >= 2
    assert plan_ranges(packets, 2, min_frames=40) == WHOLE


def test_ranges_that_disagree_fall_back_to_one_decode_from_there(
    source: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A range started one frame late (as a lying container's index would): its first frame is not
    the frame the range before it decoded there, so the rest comes from one whole decode."""
    path = _reencode(source, tmp_path / "plain.mp4", "-g", "30")
    packets = packet_times(path)
    good = plan_ranges(packets, 3, min_frames=40)
    late = list(good)
    late[1] = replace(good[1], start=seek_time(packets.pts[good[1].first + 1], packets.time_base))
    with caplog.at_level(logging.WARNING, logger="infra.media.range_decode"):
        got = _in_ranges(path, tuple(late))
    assert np.array_equal(got, _whole(path))
    assert f"the range from frame {good[1].first} does not start with that frame" in caplog.text


def test_a_range_cut_short_falls_back_too(
    source: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _reencode(source, tmp_path / "plain.mp4", "-g", "30")
    good = plan_ranges(packet_times(path), 2, min_frames=40)
    past_the_end = (good[0], DecodeRange(good[1].first, "999.000000", None))
    with caplog.at_level(logging.WARNING, logger="infra.media.range_decode"):
        got = _in_ranges(path, past_the_end)
    assert np.array_equal(got, _whole(path)) and "failed" in caplog.text


def test_a_corrupt_video_fails_as_the_whole_decode_does(source: Path, tmp_path: Path) -> None:
    path = _reencode(source, tmp_path / "plain.mp4", "-g", "30")
    ranges = plan_ranges(packet_times(path), 2, min_frames=40)
    data = bytearray(path.read_bytes())
    for at in range(len(data) * 3 // 4, len(data) * 3 // 4 + 4000, 97):  # garble the second half's packets
        data[at] ^= 0x5A
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(bytes(data))
    with pytest.raises(MediaError) as whole:
        _whole(broken)
    with pytest.raises(MediaError) as split:
        _in_ranges(broken, ranges)
    assert split.value.reason.split(" (")[0] == whole.value.reason.split(" (")[0]  # after the same frames


def test_the_plan_starts_ranges_at_clean_keyframes_near_equal_shares() -> None:
    base = Fraction(1, 12800)
    pts = [512 * i for i in range(1000)]
    packets = PacketTimes("High", base, pts, 6, [100, 240, 480, 700, 990], "mov,mp4,m4a,3gp,3g2,mj2")
    ranges = plan_ranges(packets, 2, min_frames=100)
    assert [(r.first, r.frames) for r in ranges] == [(0, 480), (480, None)]
    assert ranges[1].start == seek_time(512 * 480, base) == "19.200000"
    assert [r.first for r in plan_ranges(packets, 4, min_frames=100)] == [0, 240, 480, 700]
    assert plan_ranges(packets, 4, min_frames=600) == WHOLE  # too short for two ranges
    assert plan_ranges(replace(packets, clean_starts=[]), 2) == WHOLE  # nowhere to start one
    # more ranges than cores where a range would be too long to wait in memory
    assert len(plan_ranges(packets, 2, min_frames=100, max_frames=300)) == 4
    # by default at most AHEAD frames wait in memory: ranges shorter the more run side by side
    long = PacketTimes(
        "High", base, range(0, 512 * 20_000, 512), 400, list(range(50, 20_000, 50)), packets.container
    )
    assert AHEAD == 16_000
    assert [r.first for r in plan_ranges(long, 2)][:4] == [0, 6650, 13350]
    by_16 = plan_ranges(long, 16)
    assert len(by_16) == 20 and max(r.frames or 20_000 - r.first for r in by_16) <= 1_000


def test_seek_times_round_down_to_the_microsecond() -> None:
    assert seek_time(1001 * 7, Fraction(1, 30000)) == "0.233566"  # 0.2335666...
    assert seek_time(0, Fraction(1, 90000)) == "0.000000"
    assert seek_time(90000 * 3661, Fraction(1, 90000)) == "3661.000000"


def test_detect_shots_decodes_in_ranges_with_the_same_cuts(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _reencode(source, tmp_path / "plain.mp4", "-g", "30")
    planned: list[tuple[DecodeRange, ...]] = []

    def plan(packets: PacketTimes, parts: int) -> tuple[DecodeRange, ...]:
        planned.append(plan_ranges(packets, parts, min_frames=40))
        return planned[-1]

    monkeypatch.setattr(shot_detection, "usable_cores", lambda: 2)
    monkeypatch.setattr(range_decode, "plan_ranges", plan)  # what video_ranges plans with
    by_ranges = detect_shots(path, HeatersDetector())
    assert len(planned) == 1 and len(planned[0]) == 2
    whole = run_detector(HeatersDetector(), decode_batches(path, 64, 36, HeatersDetector.pix_fmt))
    assert whole == (by_ranges.cuts, by_ranges.frame_count) and {90, 170} <= set(by_ranges.cuts)


def test_a_decode_given_up_midway_leaves_no_ffmpeg_running(source: Path, tmp_path: Path) -> None:
    path = _reencode(source, tmp_path / "plain.mp4", "-g", "30")
    started: list[subprocess.Popen[bytes]] = []
    decoder = ffmpeg.start_decoder

    def recorded(*args: object, **kwargs: object) -> subprocess.Popen[bytes]:
        started.append(decoder(*args, **kwargs))  # type: ignore[arg-type]
        return started[-1]

    batches = decode_in_ranges(
        path, 64, 36, "rgb24", plan_ranges(packet_times(path), 3, min_frames=40), batch_size=8
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(range_decode, "start_decoder", recorded)
        next(batches)
        batches.close()
    assert len(started) == 2 and all(proc.poll() is not None for proc in started)


def test_a_video_is_planned_whole_where_its_packets_do_not_account_for_its_frames() -> None:
    base = Fraction(1, 12800)
    packets = PacketTimes(
        "High", base, range(0, 512 * 1000, 512), 6, [100, 240, 480, 700, 990], "mov,mp4,m4a,3gp,3g2,mj2"
    )
    info = VideoInfo(40.0, 25.0, 1000, 320, 180, "h264")
    assert len(video_ranges(info, packets, 2)) == 2
    assert video_ranges(info, packets, 1) == WHOLE  # one core decodes
    assert video_ranges(info, None, 2) == WHOLE  # no packets read
    assert video_ranges(replace(info, frame_count=999), packets, 2) == WHOLE  # a frame unaccounted for
    assert video_ranges(replace(info, timing_repaired=True), packets, 2) == WHOLE  # timing repaired
    # packets an edit list hides are no frames of the video
    assert len(video_ranges(replace(info, frame_count=990), replace(packets, hidden=10), 2)) == 2
