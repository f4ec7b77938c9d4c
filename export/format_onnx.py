"""ONNX fp32: torch.onnx export, onnx.checker, and an ONNX Runtime parity run against torch.

The file is written by :func:`dna_zoo.export.onnx_writer.write_onnx_file` with the
TorchScript-based exporter (``dynamo=False``): the ``torch.export``-based one gives the
same parity but takes several times as long (``LEGACY_REASON``). It writes one
self-contained file for models of this size and exports SiLU and squeeze-excite as plain
Sigmoid/Mul/ReduceMean, which every runtime here handles. The other formats start from
this file too.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from dna_zoo.export.artifact import Artifact, manifest_path_for
from dna_zoo.export.checks import check_parity, measure
from dna_zoo.export.onnx_writer import write_onnx_file
from dna_zoo.export.options import ExportOptions
from dna_zoo.export.runners import ort_runner, torch_runner

log = logging.getLogger(__name__)

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def dynamic_axes(opts: ExportOptions) -> dict[str, dict[int, str]]:
    axes: dict[str, dict[int, str]] = {}
    if opts.dynamic:
        axes[INPUT_NAME] = {0: "batch"}
        axes[OUTPUT_NAME] = {0: "batch"}
    if opts.dynamic_size:
        axes.setdefault(INPUT_NAME, {}).update({2: "height", 3: "width"})
    return axes


def shapes(sample: torch.Tensor, opts: ExportOptions, num_outputs: int) -> dict[str, Any]:
    """Input/output shapes as the manifest records them (``"batch"`` etc. where dynamic)."""
    axes = dynamic_axes(opts)
    inp: list[Any] = list(sample.shape)
    out: list[Any] = [sample.shape[0], num_outputs]
    for i, n in axes.get(INPUT_NAME, {}).items():
        inp[i] = n
    for i, n in axes.get(OUTPUT_NAME, {}).items():
        out[i] = n
    return {"input": {"name": INPUT_NAME, "shape": inp}, "output": {"name": OUTPUT_NAME, "shape": out}}


def write_onnx(model: torch.nn.Module, sample: torch.Tensor, path: Path, opts: ExportOptions) -> Path:
    """Export ``model`` to one ``.onnx`` file and run ``onnx.checker`` on it."""
    return write_onnx_file(
        model,
        (sample,),
        path,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_axes=dynamic_axes(opts),
        opset=opts.opset,
        # TorchScript exporter kept: LEGACY_REASON (measured; bench/results/onnx_exporters.md)
        exporter="torchscript",
        hint="try another --opset, or run with --debug for the traceback",
    )


def base_manifest(
    fmt: str, precision: str, path: Path, sample: torch.Tensor, opts: ExportOptions, n_out: int
):
    return {
        "format": fmt,
        "precision": precision,
        "file": path.name,
        "shapes": shapes(sample, opts, n_out),
        "dynamic_axes": dynamic_axes(opts),
        "opset": opts.opset,
    }


def num_outputs(model: torch.nn.Module, sample: torch.Tensor) -> int:
    n = getattr(model, "num_classes", None)  # timm models say it; a forward pass costs seconds here
    if isinstance(n, int) and n > 0:
        return n
    with torch.inference_mode():
        return int(model(sample[:1]).shape[-1])


def export_onnx(model: torch.nn.Module, sample: torch.Tensor, path: Path, opts: ExportOptions) -> Artifact:
    """Format ``onnx``: fp32 ONNX, checked with onnx.checker and against torch through ORT."""
    write_onnx(model, sample, path, opts)
    runner = ort_runner(path, threads=opts.threads, name="onnxruntime fp32")
    manifest = base_manifest("onnx", "fp32", path, sample, opts, num_outputs(model, sample))
    manifest["runtime"] = "onnxruntime (CPUExecutionProvider)"
    manifest["parity"] = check_parity(model, runner, opts, precision="fp32")
    if opts.latency:
        base = torch_runner(model, threads=opts.threads)
        manifest["latency"] = measure(
            {runner.name: runner, "torch eager": base}, opts.batch, sample.shape[1:]
        )
    return Artifact(path, manifest_path_for(path), manifest)
