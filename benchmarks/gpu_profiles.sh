#!/usr/bin/env bash
# Real-device cost profiles (a GPU run, about 8 minutes on one H200): cost_profile.py for SD1.5 at 512 px,
# SDXL and Flux at 1024 px in bfloat16, every component timed, written next to the FLOP-only profiles as
# benchmarks/profiles/<family>-<size>-<scorer>-cuda-bf16.json. Commit them after the run.
#
#   bash benchmarks/gpu_profiles.sh [OUT_DIR]          (OUT_DIR defaults to benchmarks/profiles)
set -euo pipefail
cd "$(dirname "$0")"
out=${1:-profiles}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || { echo "no CUDA device" >&2; exit 1; }
for run in "sd15 512 idsim-dinov2-vitl14" "sd15 512 nearid" "sdxl 1024 idsim-dinov2-vitl14" "sdxl 1024 nearid" \
           "flux 1024 idsim-dinov2-vitl14"; do
    set -- $run
    timeout 150 python cost_profile.py --family "$1" --size "$2" --scorer "$3" --device cuda --dtype bfloat16 \
        --max-tflops 1000 --repeats 3 --out "$out/$1-$2-$3-cuda-bf16.json" || echo "gpu_profiles: $run failed or timed out" >&2
done
ls -l "$out"/*-cuda-bf16.json
