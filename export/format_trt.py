"""TensorRT engines, built through NVIDIA's documented Python API, or the ONNX to build one from.

TensorRT comes from NVIDIA's own package index and needs an NVIDIA GPU, so it is imported
lazily. The path is always: a TensorRT-ready ONNX file (fp32 graph; for INT8 a Q/DQ graph
with symmetric S8 activations, the explicit quantization TensorRT expects), checked against
torch through ONNX Runtime; then either

- ``onnx_only``: that ONNX file is the artifact, and its manifest holds the exact
  ``trtexec`` line that builds the engine on the target (a Jetson, a server); or
- a build with ``tensorrt.Builder``: explicit batch, an optimization profile when the
  batch is dynamic, FP16 / INT8 flags, a workspace limit and a timing cache. The engine's
  manifest records the TensorRT version, GPU name and compute capability; an engine is
  only loaded on a machine where those match (TensorRT plans are not portable).
"""

from __future__ import annotations

import logging
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dna_zoo.errors import DnaZooError, MissingDependencyError, require
from dna_zoo.export.artifact import Artifact, manifest_path_for
from dna_zoo.export.checks import check_parity
from dna_zoo.export.format_onnx import INPUT_NAME, base_manifest, num_outputs, write_onnx
from dna_zoo.export.format_onnx_int8 import calibration_batches, quantize_qdq
from dna_zoo.export.inputs import calibration_set, data_config
from dna_zoo.export.options import ExportOptions
from dna_zoo.export.runners import Runner, ort_runner
from dna_zoo.io import atomic_write_bytes

log = logging.getLogger(__name__)

DEFAULT_MAX_BATCH = 8
TRT_HINT = (
    "building an engine needs `pip install dna-zoo[trt]` and an NVIDIA GPU; without them, "
    "add --onnx-only: it writes the TensorRT-ready ONNX (checked against torch) and prints the exact "
    "trtexec line that builds the engine on the device"
)


class EngineError(DnaZooError, RuntimeError):
    """A TensorRT engine that cannot be built or must not be loaded here."""


def require_tensorrt():
    """``import tensorrt`` plus a usable CUDA GPU, or one clear error saying what is missing."""
    try:
        trt = require("tensorrt", extra="trt", purpose="TensorRT engines")
    except MissingDependencyError as e:
        e.hint = TRT_HINT
        raise
    if not torch.cuda.is_available():
        raise EngineError("TensorRT is installed but no CUDA GPU is usable here", hint=TRT_HINT)
    return trt


def profile_shapes(sample: torch.Tensor, opts: ExportOptions) -> dict[str, list[int]]:
    """min / opt / max input shapes of the optimization profile (all equal when static)."""
    c, h, w = (int(s) for s in sample.shape[1:])
    if not opts.dynamic:
        return {k: [opts.batch, c, h, w] for k in ("min", "opt", "max")}
    top = opts.max_batch or max(DEFAULT_MAX_BATCH, opts.batch)
    return {"min": [1, c, h, w], "opt": [opts.batch, c, h, w], "max": [top, c, h, w]}


def trtexec_command(
    onnx_name: str, engine_name: str, opts: ExportOptions, shapes: dict[str, list[int]]
) -> str:
    """The ``trtexec`` line that builds the same engine as :func:`build_engine` on the target."""
    args = ["trtexec", f"--onnx={onnx_name}", f"--saveEngine={engine_name}"]
    if opts.dynamic:
        for key, flag in (("min", "--minShapes"), ("opt", "--optShapes"), ("max", "--maxShapes")):
            args.append(f"{flag}={INPUT_NAME}:" + "x".join(str(s) for s in shapes[key]))
    if opts.half:
        args.append("--fp16")
    if opts.int8:
        args += ["--int8", "--fp16"]  # Q/DQ graph: explicit INT8; FP16 for the rest
    args.append(f"--memPoolSize=workspace:{int(opts.workspace * 1024)}M")
    args.append(f"--timingCacheFile={opts.timing_cache or 'timing.cache'}")
    return " ".join(shlex.quote(a) for a in args)


def write_trt_onnx(
    model: torch.nn.Module, sample: torch.Tensor, path: Path, opts: ExportOptions
) -> dict[str, Any]:
    """The TensorRT-ready ONNX at ``path``; returns its quantization record (INT8) or {}."""
    if not opts.int8:
        write_onnx(model, sample, path, opts)
        return {}
    fp32 = path.with_name(path.name + ".fp32.onnx")
    write_onnx(model, sample, fp32, opts)
    calib = calibration_set(opts.calib, data_config(model, opts.input_size), opts.calib_size)
    quantize_qdq(
        fp32,
        path,
        calibration_batches(calib, None if opts.dynamic else opts.batch),
        symmetric_activations=True,
    )
    fp32.unlink()
    return {
        "quant_format": "QDQ",
        "activations": "S8 symmetric per-tensor",
        "weights": "S8 symmetric per-channel",
        "calibration": {"images": calib.source, "n": len(calib.labels)},
    }


def gpu_info() -> dict[str, str]:
    """Name and compute capability of the current CUDA GPU."""
    major, minor = torch.cuda.get_device_capability()
    return {"gpu": torch.cuda.get_device_name(), "compute_capability": f"{major}.{minor}"}


def build_engine(
    onnx_path: Path, engine_path: Path, opts: ExportOptions, shapes: dict[str, list[int]]
) -> dict:
    """Build and serialize a TensorRT engine from ONNX with the documented Builder API."""
    trt = require_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # implicit in TensorRT >= 10
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT's ONNX parser rejects the model: {errors[:300]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(opts.workspace * (1 << 30)))
    if opts.half or opts.int8:
        config.set_flag(trt.BuilderFlag.FP16)
    if opts.int8:
        config.set_flag(trt.BuilderFlag.INT8)  # scales come from the Q/DQ nodes
    if opts.dynamic:
        profile = builder.create_optimization_profile()
        profile.set_shape(INPUT_NAME, shapes["min"], shapes["opt"], shapes["max"])
        config.add_optimization_profile(profile)
    cache_path = Path(opts.timing_cache) if opts.timing_cache else None
    cache_bytes = cache_path.read_bytes() if cache_path and cache_path.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineError(
            "TensorRT could not build the engine", hint="run with --debug to see TensorRT's log"
        )
    atomic_write_bytes(engine_path, bytes(plan))
    if cache_path:
        atomic_write_bytes(cache_path, bytes(config.get_timing_cache().serialize()))
    return {"version": trt.__version__, **gpu_info(), "workspace_gib": opts.workspace, "profile": shapes}


def check_engine_machine(recorded: dict[str, Any], current: dict[str, Any]) -> None:
    """Refuse an engine built for another TensorRT version, GPU or compute capability."""
    for key, what in (
        ("version", "TensorRT version"),
        ("gpu", "GPU"),
        ("compute_capability", "compute capability"),
    ):
        if str(recorded.get(key)) != str(current.get(key)):
            raise EngineError(
                f"this engine was built for {what} {recorded.get(key)!r}, this machine has "
                f"{current.get(key)!r}; TensorRT engines only run where they were built",
                hint="rebuild it here: `dna export ... --format trt`, or --onnx-only and trtexec",
            )


def engine_runner(path: Path, manifest: dict[str, Any]) -> Runner:
    """Run a serialized engine (inputs/outputs as CUDA tensors), after the machine check."""
    trt = require_tensorrt()
    check_engine_machine(manifest.get("trt", {}), {"version": trt.__version__, **gpu_info()})
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(path.read_bytes())
    if engine is None:
        raise EngineError(f"TensorRT cannot deserialize {path}", hint="export it again (with --force)")
    context = engine.create_execution_context()
    out_name = manifest["shapes"]["output"]["name"]
    stream = torch.cuda.Stream()

    def fn(x: np.ndarray) -> np.ndarray:
        inp = torch.tensor(x).cuda()
        context.set_input_shape(INPUT_NAME, tuple(inp.shape))
        out = torch.empty(tuple(context.get_tensor_shape(out_name)), dtype=torch.float32, device="cuda")
        context.set_tensor_address(INPUT_NAME, inp.data_ptr())
        context.set_tensor_address(out_name, out.data_ptr())
        context.execute_async_v3(stream.cuda_stream)
        stream.synchronize()
        return out.cpu().numpy()

    static = None if manifest.get("dynamic_axes") else manifest["shapes"]["input"]["shape"][0]
    return Runner(f"tensorrt {manifest.get('precision')}", fn, static)


def export_engine(model: torch.nn.Module, sample: torch.Tensor, path: Path, opts: ExportOptions) -> Artifact:
    """Format ``engine`` (alias ``trt``): a TensorRT engine, or with ``onnx_only`` its ONNX + trtexec line."""
    precision = opts.precision
    shapes = profile_shapes(sample, opts)
    if not opts.onnx_only:
        require_tensorrt()  # fail before any work
    onnx_path = path if opts.onnx_only else path.with_name(path.name + ".src.onnx")
    quant = write_trt_onnx(model, sample, onnx_path, opts)
    # The ONNX is checked through ONNX Runtime (fp32 or Q/DQ int8): what TensorRT receives is right.
    onnx_check = check_parity(
        model,
        ort_runner(onnx_path, threads=opts.threads, name="onnxruntime (TensorRT-ready ONNX)"),
        opts,
        precision="int8" if opts.int8 else "fp32",
    )
    manifest = base_manifest("engine", precision, path, sample, opts, num_outputs(model, sample))
    manifest["trt_profile"] = shapes
    if quant:
        manifest["quantization"] = quant
    if opts.onnx_only:
        engine_name = path.name.removesuffix(".trt.onnx") + ".engine"
        cmd = trtexec_command(path.name, engine_name, opts, shapes)
        manifest.update(label="TensorRT-ready ONNX", onnx_only=True, trtexec=cmd, parity=onnx_check)
        manifest["trt"] = {
            "version": None,
            "gpu": None,
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
