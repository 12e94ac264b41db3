#!/usr/bin/env bash
# Issue 14's GPU acceptance figures, in under 8 minutes on one H100 or H200:
#   1. MoCo v3 pretraining, ViT-B/16 at 224 px, bf16, batch 512, through urbanvis's own loop:
#      the step alone (views already on the GPU) and end to end from JPEG files (workers read
#      bytes, nvJPEG decode + augmentation on a side stream in a thread), eager and
#      torch.compile, with the compile time (bench/pipeline.py; goal: end to end >= 0.95 of
#      the compiled step);
#   2. embed end to end from 640 px JPEG files, ViT-B/16 bf16, nvJPEG, compile off and on
#      (bench/embed.py; goal >= 5,000 images/s).
# Each step has its own timeout; a step that fails or times out leaves its figures
# "unmeasured" in the summary, and the other steps still run. JSON goes to OUT_DIR.
# MFU, peak memory and the batch-256 step: python3 bench/pretrain.py --device cuda --compile
# Usage: bash bench/gpu.sh [OUT_DIR]   (python3 with torch, torchvision, timm, pillow, pandas,
# geopandas, pyogrio; urbanvis itself runs from this checkout; PYTHON=... to pick another)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-/tmp/urbanvis-gpu-bench}}
py=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$out/gpu.txt"
"$py" -c "import torch, timm, torchvision; print('torch', torch.__version__, 'timm', timm.__version__, 'torchvision', torchvision.__version__)" | tee -a "$out/gpu.txt"
started=$SECONDS

timeout 290 "$py" bench/pipeline.py --device cuda --batch 512 --steps 16 --warm-up 4 \
    --compile off,on --json "$out/pipeline.json" 2>&1 | tee "$out/pipeline.log"
echo "pipeline: exit ${PIPESTATUS[0]} after $((SECONDS - started)) s"

timeout 170 "$py" bench/embed.py --device cuda --gpu-n 16384 --gpu-batch 512 \
    --gpu-compile off,on --skip-pil --skip-forward --json "$out/embed.json" 2>&1 | tee "$out/embed.log"
echo "embed: exit ${PIPESTATUS[0]} after $((SECONDS - started)) s"

"$py" bench/gpu_summary.py "$out" | tee "$out/summary.txt"
