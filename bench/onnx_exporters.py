"""The two torch ONNX exporters side by side: export wall time and ONNX Runtime parity.

Exports dna_b (random init, BatchNorm re-estimated as ``dna export`` does) and a tiny
conv net with ``dynamo=False`` (TorchScript, deprecated) and ``dynamo=True``
(``torch.export``), each through :func:`dna_zoo.export.onnx_writer.write_onnx_file` with a
dynamic batch, and compares ORT's logits with torch's on a batch of 3. The dynamo export is
run twice (the first call also pays one-off imports). Figures: bench/results/onnx_exporters.md.

    flock -x /tmp/dna-cpu.lock .venv/bin/python bench/onnx_exporters.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dna_zoo.export.api import prepare_model
from dna_zoo.export.onnx_writer import write_onnx_file
from dna_zoo.export.ort import cpu_session


def nets() -> dict[str, tuple[torch.nn.Module, int]]:
    tiny = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.SiLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        torch.nn.Linear(8, 10),
    )  # fmt: skip
    return {"tiny": (tiny.eval(), 32), "dna_b": (prepare_model("dna_b", None), 224)}


def main() -> None:
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        for name, (model, size) in nets().items():
            x = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(0))
            with torch.no_grad():
                ref = model(x).numpy()
            for exporter in ("torchscript", "dynamo", "dynamo"):
                path = Path(tmp) / f"{name}-{exporter}.onnx"
                t0 = time.perf_counter()
                write_onnx_file(
                    model, (x[:1],), path, input_names=["input"], output_names=["logits"],
                    dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, exporter=exporter,
                    check=False,
                )  # fmt: skip
                seconds = time.perf_counter() - t0
                out = cpu_session(path, threads=2).run(None, {"input": x.numpy()})[0]
                print(
                    f"{name:<6} {exporter:<12} export {seconds:6.2f} s   max abs diff "
                    f"{np.abs(out - ref).max():.2e} (max |logit| {np.abs(ref).max():.1f})"
                )


if __name__ == "__main__":
    main()
