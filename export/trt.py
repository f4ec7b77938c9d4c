"""TensorRT: building a plan from ONNX, the engine/machine check, and running an engine.

The one TensorRT implementation: the ``engine`` export format and the ``tensorrt``
latency runtime both build through :func:`build_plan` (NVIDIA's documented Python API:
``tensorrt.Builder`` / ``OnnxParser``, explicit batch, an optimization profile when the
batch is dynamic, FP16 / INT8 flags, a workspace limit, an optional timing cache).
TensorRT comes from NVIDIA's own package index and needs an NVIDIA GPU, so it is imported
lazily. A plan is only run on a machine with the TensorRT version, GPU and compute
capability it was built with (TensorRT plans are not portable).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dna_zoo.errors import DnaZooError, MissingDependencyError, require
from dna_zoo.export.runners import Runner

log = logging.getLogger(__name__)

TRT_HINT = (
    "TensorRT needs `pip install dna-zoo[trt]` and an NVIDIA GPU; "
    "or pass --onnx-only to get the ONNX file and the trtexec line"
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


def gpu_info() -> dict[str, str]:
    """Name and compute capability of the current CUDA GPU."""
    major, minor = torch.cuda.get_device_capability()
    return {"gpu": torch.cuda.get_device_name(), "compute_capability": f"{major}.{minor}"}


def machine_record() -> dict[str, str]:
    """What an engine is tied to: TensorRT version, GPU name and compute capability."""
    trt = require_tensorrt()
    return {"version": trt.__version__, **gpu_info()}


def build_plan(
    onnx_path: Path,
    *,
    fp16: bool = False,
    int8: bool = False,
    workspace_gib: float = 1.0,
    profile: Mapping[str, Sequence[int]] | None = None,
    input_name: str = "input",
    timing_cache: Path | None = None,
) -> bytes:
    """A serialized TensorRT engine built from ``onnx_path``.

    ``profile`` (``min``/``opt``/``max`` shapes of ``input_name``) is needed for a dynamic
    batch; ``int8`` takes its scales from the graph's Q/DQ nodes (FP16 for the rest);
    ``timing_cache`` is read if it exists and written back after the build (else an empty
    cache lives for this build only).
    """
    from dna_zoo.io import atomic_write_bytes

    trt = require_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # implicit in TensorRT >= 10
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT's ONNX parser rejects {Path(onnx_path).name}: {errors[:300]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if fp16 or int8:
        config.set_flag(trt.BuilderFlag.FP16)
    if int8:
        config.set_flag(trt.BuilderFlag.INT8)  # scales come from the Q/DQ nodes
    if profile is not None:
        prof = builder.create_optimization_profile()
        prof.set_shape(input_name, profile["min"], profile["opt"], profile["max"])
        config.add_optimization_profile(prof)
    cache_bytes = timing_cache.read_bytes() if timing_cache is not None and timing_cache.is_file() else b""
    config.set_timing_cache(config.create_timing_cache(cache_bytes), ignore_mismatch=False)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineError(
            f"TensorRT could not build an engine for {Path(onnx_path).name}",
            hint="run with --debug to see TensorRT's log",
        )
    if timing_cache is not None:
        atomic_write_bytes(timing_cache, bytes(config.get_timing_cache().serialize()))
    return bytes(plan)


def deserialize_engine(plan: bytes, what: str = "the engine"):
    """A ``tensorrt.ICudaEngine`` from a serialized plan."""
    trt = require_tensorrt()
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(plan)
    if engine is None:
        raise EngineError(f"TensorRT cannot deserialize {what}", hint="export it again (with --force)")
    return engine


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
    check_engine_machine(manifest.get("trt", {}), machine_record())
    engine = deserialize_engine(Path(path).read_bytes(), str(path))
    context = engine.create_execution_context()
    in_name = manifest["shapes"]["input"].get("name", "input")
    out_name = manifest["shapes"]["output"]["name"]
    stream = torch.cuda.Stream()

    def fn(x: np.ndarray) -> np.ndarray:
        inp = torch.tensor(x).cuda()
        context.set_input_shape(in_name, tuple(inp.shape))
        out = torch.empty(tuple(context.get_tensor_shape(out_name)), dtype=torch.float32, device="cuda")
        context.set_tensor_address(in_name, inp.data_ptr())
        context.set_tensor_address(out_name, out.data_ptr())
        context.execute_async_v3(stream.cuda_stream)
        stream.synchronize()
        return out.cpu().numpy()

    static = None if manifest.get("dynamic_axes") else manifest["shapes"]["input"]["shape"][0]
    return Runner(f"tensorrt {manifest.get('precision')}", fn, static)
