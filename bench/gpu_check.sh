#!/usr/bin/env bash
# Every CUDA / TensorRT path of dna-zoo, one line per path with its figures (under 8 minutes
# on one NVIDIA GPU). On a CPU-only machine it prints "skipped: no CUDA" lines and exits 0.
# Usage: bench/gpu_check.sh   (PYTHON=/path/to/python to pick the interpreter)
set -u
cd "$(dirname "$0")/.."
PY="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
exec "$PY" bench/gpu_check.py "$@"
