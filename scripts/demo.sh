#!/usr/bin/env bash
# Set up (idempotent), then run the main job on the built-in default.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/dna demo "$@"
