"""TensorRT engines, built through NVIDIA's documented Python API, or the ONNX to build one from.

TensorRT comes from NVIDIA's own package index and needs an NVIDIA GPU, so it is imported
lazily. The path is always: a TensorRT-ready ONNX file (fp32 graph; for FP16 an fp16 graph
with fp32 inputs and outputs, which TensorRT 11's strongly typed networks need and 10 takes
as well; for INT8 a Q/DQ graph with symmetric S8 activations and float biases, the explicit
quantization TensorRT expects), checked against torch through ONNX Runtime; then either

- ``onnx_only``: that ONNX file is the artifact, and its manifest holds the exact
  ``trtexec`` line that builds the engine on the target (a Jetson, a server), for the
  TensorRT importable here or else 10.x (JetPack 6), with the line for each TensorRT
  version beside it; its ``trt`` record says ``"not built"``; or
- a build with ``tensorrt.Builder``: an optimization profile when the batch is dynamic,
  precision asked the way the installed TensorRT line wants it
  (:func:`dna_zoo.export.trt.build_recipe`; fp32 without TF32), a workspace limit and a
  timing cache. The engine's
  manifest records the TensorRT version, GPU name and compute capability; an engine is
  only loaded on a machine where those match (TensorRT plans are not portable).

The builder, the machine check and the engine runner live in :mod:`dna_zoo.export.trt`
(the latency tables build their engines there too).
"""

from __future__ import annotations

import logging
import shlex
from pathlib import Path
from typing import Any

import torch

from dna_zoo.export.artifact import Artifact, manifest_path_for
from dna_zoo.export.checks import check_parity
from dna_zoo.export.format_onnx import INPUT_NAME, base_manifest, num_outputs, write_onnx
from dna_zoo.export.format_onnx_int8 import calibration_batches, quantize_qdq
from dna_zoo.export.inputs import calibration_set, data_config
from dna_zoo.export.onnx_writer import convert_fp16
from dna_zoo.export.options import ExportOptions
from dna_zoo.export.runners import ort_runner
from dna_zoo.export.trt import (
    DEFAULT_TARGET_MAJOR,
    KNOWN_MAJORS,
    build_plan,
    build_recipe,
    engine_runner,
    local_major,
    machine_record,
    require_tensorrt,
    trt_major,
)
from dna_zoo.io import atomic_write_bytes

log = logging.getLogger(__name__)

DEFAULT_MAX_BATCH = 8
#: the ``trt`` record of an ``--onnx-only`` artifact: no engine, so no TensorRT version or GPU yet
NOT_BUILT = "not built"
ANY_GPU = "any"


def profile_shapes(sample: torch.Tensor, opts: ExportOptions) -> dict[str, list[int]]:
    """min / opt / max input shapes of the optimization profile (all equal when static)."""
    c, h, w = (int(s) for s in sample.shape[1:])
    if not opts.dynamic:
        return {k: [opts.batch, c, h, w] for k in ("min", "opt", "max")}
    top = opts.max_batch or max(DEFAULT_MAX_BATCH, opts.batch)
    return {"min": [1, c, h, w], "opt": [opts.batch, c, h, w], "max": [top, c, h, w]}


def trtexec_command(
    onnx_name: str,
    engine_name: str,
    opts: ExportOptions,
    shapes: dict[str, list[int]],
    *,
    major: int = DEFAULT_TARGET_MAJOR,
) -> str:
    """The ``trtexec`` line of TensorRT ``major``.x that builds the same engine as
    :func:`build_engine` on the target."""
    args = ["trtexec", f"--onnx={onnx_name}", f"--saveEngine={engine_name}"]
    if opts.dynamic:
        for key, flag in (("min", "--minShapes"), ("opt", "--optShapes"), ("max", "--maxShapes")):
            args.append(f"{flag}={INPUT_NAME}:" + "x".join(str(s) for s in shapes[key]))
    args += build_recipe(major, opts.precision).trtexec_flags
    args.append(f"--memPoolSize=workspace:{int(opts.workspace * 1024)}M")
    args.append(f"--timingCacheFile={opts.timing_cache or 'timing.cache'}")
    return " ".join(shlex.quote(a) for a in args)


def write_trt_onnx(
    model: torch.nn.Module, sample: torch.Tensor, path: Path, opts: ExportOptions
) -> dict[str, Any]:
    """The TensorRT-ready ONNX at ``path``; returns its quantization record (FP16, INT8) or {}."""
    if not (opts.int8 or opts.half):
        write_onnx(model, sample, path, opts)
        return {}
    fp32 = path.with_name(path.name + ".fp32.onnx")
    write_onnx(model, sample, fp32, opts)
    if opts.half:
        convert_fp16(fp32, path)
        fp32.unlink()
        return {"weights": "fp16", "io": "fp32 inputs and outputs (cast inside the graph)"}
    calib = calibration_set(opts.calib, data_config(model, opts.input_size), opts.calib_size)
    quantize_qdq(
        fp32,
        path,
        calibration_batches(calib, None if opts.dynamic else opts.batch),
        symmetric_activations=True,
        quantize_bias=False,  # TensorRT's parser rejects int32 DequantizeLinear inputs
    )
    fp32.unlink()
    return {
        "quant_format": "QDQ",
        "activations": "S8 symmetric per-tensor",
        "weights": "S8 symmetric per-channel",
        "bias": "float (not quantized)",
        "calibration": {"images": calib.source, "n": len(calib.labels)},
    }


def build_engine(
    onnx_path: Path, engine_path: Path, opts: ExportOptions, shapes: dict[str, list[int]]
) -> dict:
    """Build and serialize a TensorRT engine from ONNX; returns the machine it is tied to and
    how its precision was asked for."""
    plan = build_plan(
        onnx_path,
        precision=opts.precision,
        workspace_gib=opts.workspace,
        profile=shapes if opts.dynamic else None,
        input_name=INPUT_NAME,
        timing_cache=Path(opts.timing_cache) if opts.timing_cache else None,
    )
    atomic_write_bytes(engine_path, plan)
    machine = machine_record()
    recipe = build_recipe(trt_major(machine["version"]), opts.precision)
    return {**machine, "workspace_gib": opts.workspace, "profile": shapes, "build": recipe.record()}


def export_engine(model: torch.nn.Module, sample: torch.Tensor, path: Path, opts: ExportOptions) -> Artifact:
    """Format ``engine`` (alias ``trt``): a TensorRT engine, or with ``onnx_only`` its ONNX + trtexec line."""
    precision = opts.precision
    shapes = profile_shapes(sample, opts)
    if not opts.onnx_only:
        require_tensorrt()  # fail before any work
    onnx_path = path if opts.onnx_only else path.with_name(path.name + ".src.onnx")
    quant = write_trt_onnx(model, sample, onnx_path, opts)
    # The ONNX is checked through ONNX Runtime (fp32, fp16 or Q/DQ int8): what TensorRT gets is right.
    onnx_check = check_parity(
        model,
        ort_runner(onnx_path, threads=opts.threads, name="onnxruntime (TensorRT-ready ONNX)"),
        opts,
        precision=precision,
    )
    manifest = base_manifest("engine", precision, path, sample, opts, num_outputs(model, sample))
    manifest["trt_profile"] = shapes
    if quant:
        manifest["quantization" if opts.int8 else "graph"] = quant
    if opts.onnx_only:
        engine_name = path.name.removesuffix(".trt.onnx") + ".engine"
        target = min(local_major() or DEFAULT_TARGET_MAJOR, KNOWN_MAJORS[-1])
        lines = {
            f"{m}.x": trtexec_command(path.name, engine_name, opts, shapes, major=m) for m in KNOWN_MAJORS
        }
        manifest.update(
            label="TensorRT-ready ONNX",
            onnx_only=True,
            trtexec=lines[f"{target}.x"],
            trtexec_by_tensorrt=lines,
            parity=onnx_check,
        )
        # Not built: the engine's TensorRT version and GPU are the target's (hub folder trt/not-built/any).
        manifest["trt"] = {
            "version": NOT_BUILT,
            "gpu": ANY_GPU,
            "compute_capability": None,
            "build": "on the target, with trtexec",
        }
        return Artifact(path, manifest_path_for(path), manifest)
    manifest["trt"] = build_engine(onnx_path, path, opts, shapes)
    manifest["onnx_parity"] = onnx_check
    runner = engine_runner(path, {**manifest, "dynamic_axes": opts.dynamic})
    manifest["parity"] = check_parity(model, runner, opts, precision=precision)
    onnx_path.unlink(missing_ok=True)
    return Artifact(path, manifest_path_for(path), manifest)
