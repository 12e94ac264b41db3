#!/usr/bin/env bash
# The GPU measurements of bench/RESULTS.md, in under 8 minutes on one H100 or H200:
# MoCo v3 ViT-B/16 pretraining step at 224 px in bf16 (eager and torch.compile), MFU against
# the measured bf16 matmul peak, peak memory, and the JPEG + augmentation loader rate.
# Usage: bash bench/gpu.sh [OUT_DIR]   (needs python3 with torch, torchvision, timm, pillow,
# pandas; urbanvis itself runs from this checkout)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-/tmp/urbanvis-gpu-bench}}
mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, timm, torchvision; print('torch', torch.__version__, 'timm', timm.__version__, 'torchvision', torchvision.__version__)" | tee -a "$out/gpu.txt"
timeout 330 python3 bench/pretrain.py --device cuda --batch 256 --steps 20 --compile \
    --json "$out/pretrain_b256.json"
timeout 120 python3 bench/pretrain.py --device cuda --batch 512 --steps 10 --loader-workers 14 \
    --json "$out/pretrain_b512.json" || echo "batch 512 failed (memory?)"
