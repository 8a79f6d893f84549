#!/usr/bin/env bash
# The GPU checks of issues #10 and #11 in one run on the device machine (after bench/device/prepare.sh
# here): the shot-detection bench with TransNetV2 on every frame (target: >= 3,000 frames/s end to end
# on 720p), the embeddings bench (target: end to end >= 0.5 of the forward pass) and the decode rates
# that say whether ffmpeg keeps up. Reports land in $OUT (the device tool brings them back).
#   run(command="bash bench/device/run.sh", carry=[".dev"], timeout_s=560)
# EMBEDDINGS=0 leaves the embeddings out. Locally, as a dry run of everything but the GPU: PY=.venv/bin/python LOCAL=1 bash bench/device/run.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-bench/results/device}
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
export PYTHONUNBUFFERED=1
PY=${PY:-python3}
started=$(date +%s)
step() { echo "== $(($(date +%s) - started)) s: $*"; }

step setup
if [ -z "${LOCAL:-}" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .dev/whl/*.whl || exit 1
  tar -C /tmp/site -xJf .dev/site.tar.xz || exit 1
  xz -dc .dev/ffmpeg.xz >/tmp/ffmpeg && chmod +x /tmp/ffmpeg || exit 1
  export PYTHONPATH=$PWD:/tmp/site IMAGEIO_FFMPEG_EXE=/tmp/ffmpeg
  # this checkout's own ffmpeg (9.0.2, with NVIDIA's decoder) is too large to travel with the rest:
  # an earlier call on the same machine unpacks it to /tmp/ffmpeg9 (see bench/device/README.md)
  if [ -x /tmp/ffmpeg9 ]; then
    export IMAGEIO_FFMPEG_EXE=/tmp/ffmpeg9
  elif [ -n "${REQUIRE_FFMPEG9:-}" ]; then
    echo "no /tmp/ffmpeg9 on this machine: stopping"
    exit 3
  fi
  gpu=(--gpu)
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$OUT/gpu.csv"
else
  export PYTHONPATH=$PWD
  gpu=()
fi
$PY -c "import torch, cv2, onnxruntime; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'cv2', cv2.__version__, 'ort', onnxruntime.__version__)"
$PY -c "from infra.media.ffmpeg import ffmpeg_version; print(ffmpeg_version())"

step "corpus (one process per video)"
CORPUS=${CORPUS:-bench/results/corpus}
VIDEOS=${VIDEOS:-}
timeout 240 $PY - "$CORPUS" "$VIDEOS" <<'PY'
import sys
from multiprocessing import Pool
from pathlib import Path

from bench.corpus import CORPUS, build_corpus

out, wanted = Path(sys.argv[1]), [v for v in sys.argv[2].split(",") if v]
specs = [s for s in CORPUS if not wanted or s.name in wanted]
specs.sort(key=lambda s: -s.width * s.height * s.seconds)  # the longest first
with Pool(len(specs)) as pool:
    for paths in pool.starmap(build_corpus, [(out, [s]) for s in specs], 1):
        print("ready:", *paths)
PY
[ -n "$VIDEOS" ] && only=(--videos "$VIDEOS") || only=()

step "shots: TransNetV2 on every frame"
timeout 240 $PY -m bench.shot_detection --detectors neural,transnetv2-whole "${only[@]}" \
  --corpus "$CORPUS" --out "$OUT/shot_detection_gpu.json"

if [ "${EMBEDDINGS:-1}" = 1 ]; then
  step "embeddings, default batch"
  timeout 150 $PY -m bench.embeddings --images "${IMAGES:-512}" --out "$OUT/embeddings_gpu.json"
  step "embeddings, batch 128"
  timeout 150 $PY -m bench.embeddings --images "${IMAGES:-512}" --batch-size 128 --out "$OUT/embeddings_gpu_b128.json"
fi

step "decode rates"
# the 720p video first (the #10 target's), each video's rows written as soon as it is measured
hd=()
for v in real_720p25_long real_1080p25; do [ -f "$CORPUS/$v.mp4" ] && hd+=("$CORPUS/$v.mp4"); done
[ ${#hd[@]} -gt 0 ] && timeout 150 $PY -m bench.decode_rates "${hd[@]}" --pieces 4 "${gpu[@]}" --out "$OUT/decode_rates.json"
step done
