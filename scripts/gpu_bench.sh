#!/usr/bin/env bash
# GPU planning figures (issue #16), one command, under 8 minutes on one H100/H200:
#   scripts/gpu_bench.sh                       # vitg-ac (random weights, 256 px) on cuda
#   scripts/gpu_bench.sh --device cpu --model tiny --json /tmp/g.json --doc ''   # CI-sized
# Times cem_paper, cem_release, icem and fast in bf16 and fp32, eager and compiled
# (torch.compile + CUDA graphs), writes runs/gpu_bench.json and the table into
# docs/benchmark.md. Any flag of `python -m planner.bench_gpu --help` may follow.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python}" -m planner.bench_gpu "$@"
