#!/usr/bin/env bash
# The fleet benchmark on a CUDA GPU (the issue's targets: >= 32 robots x 30 Hz on one GPU, p99 <= 30 ms, >= 1,000
# frames/s for all three heads at 416x416, ResNet-50). Run from the repository root after `make setup`:
#   tools/bench_fleet_cuda.sh [extra ladon-bench-fleet options]
# Results: bench/results/fleet_cuda/ (and fp16_accuracy.{json,md} there when the demo data set exists). The
# simulated robots are one Python process publishing 960 messages/s; if it cannot keep up, the JSON's offered vs
# sent counts say so (split the robots over several processes then).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA device")'
for precision in fp32 fp16; do
    .venv/bin/ladon-bench-fleet --model resnet50-random --device cuda --precision "$precision" \
        --robots 32 --rate 30 --duration 30 --warmup 10 --max-batch 32 --max-wait-ms 5 --threads 4 \
        --out "bench/results/fleet_cuda/$precision" "$@"
done
# fp16's accuracy delta on the demo models' held-out split, on the real CUDA path (needs the data set:
# `.venv/bin/ladon synth --out data/ladon-shapes --n 2000 --seed 0`)
if [ -f data/ladon-shapes/annotations/instances_test.json ]; then
    .venv/bin/python -m ladon_bench.fp16_accuracy --device cuda --out bench/results/fleet_cuda
fi
