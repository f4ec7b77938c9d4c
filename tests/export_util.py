"""Shared, memoised set-up for the export tests: real Lite0 weights and one real ONNX export.

Exports cost seconds on this 2-core CPU, so the tests share them within a pytest process.
Files live in one temporary folder removed at exit.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from functools import cache
from pathlib import Path

ROOT = Path(tempfile.mkdtemp(prefix="dna-export-tests-"))
atexit.register(shutil.rmtree, ROOT, True)


@cache
def lite0_weights() -> Path:
    """Real ImageNet EfficientNet-Lite0 weights as safetensors (from the built-in package)."""
    from dna_zoo.sample_images import write_lite0_safetensors

    return write_lite0_safetensors(ROOT / "lite0.safetensors")


@cache
def lite0_onnx():
    """tf_efficientnet_lite0 (real weights) exported to ONNX with a dynamic batch."""
    from dna_zoo.export import export_artifact

    return export_artifact(
        "tf_efficientnet_lite0", "onnx", ROOT / "onnx", weights=lite0_weights(), dynamic=True, latency=False
    )


def files_in(folder: Path) -> list[str]:
    """Every file name in ``folder`` (hidden staging leftovers included)."""
    return sorted(p.name for p in Path(folder).rglob("*") if p.is_file()) if Path(folder).exists() else []
