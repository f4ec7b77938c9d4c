"""TensorRT: building a plan from ONNX, the engine/machine check, and running an engine.

The one TensorRT implementation: the ``engine`` export format and the ``tensorrt``
latency runtime both build through :func:`build_plan` (NVIDIA's documented Python API:
``tensorrt.Builder`` / ``OnnxParser``, an optimization profile when the batch is dynamic,
a workspace limit, an optional timing cache) and run through :class:`EngineSession`
(``set_input_shape`` / ``set_tensor_address`` / ``execute_async_v3``, every bool result
checked, I/O dtypes read from the engine, batches split to the profile's maximum).
TensorRT comes from NVIDIA's own package index and needs an NVIDIA GPU, so it is imported
lazily. A plan is only run on a machine with the TensorRT version, GPU and compute
capability it was built with (TensorRT plans are not portable).

TensorRT 10 and 11 differ, and :func:`build_recipe` is the one place that says how
(JetPack 6 ships 10.3, so both lines matter):

- 10.x: weakly typed networks, precision by builder flags (``FP16``; ``INT8`` + ``FP16`` for
  a Q/DQ graph); trtexec ``--fp16`` / ``--int8``.
- 11.x: networks are always strongly typed (``BuilderFlag.FP16`` / ``INT8`` are gone): a Q/DQ
  graph is INT8 with no flag, FP16 comes from an fp16 ONNX (fp32 I/O kept); trtexec
  ``--stronglyTyped``.
- both: fp32 engines clear ``BuilderFlag.TF32`` (on by default; about 1e-3 relative error,
  which the fp32 parity rule would reject) and trtexec gets ``--noTF32``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dna_zoo.errors import DnaZooError, MissingDependencyError, require
from dna_zoo.export.runners import Runner

log = logging.getLogger(__name__)

TRT_HINT = (
    "building an engine needs `pip install dna-zoo[trt]` and an NVIDIA GPU; without them, "
    "add --onnx-only: it writes the TensorRT-ready ONNX (checked against torch) and prints the exact "
    "trtexec line that builds the engine on the device"
)
#: the TensorRT line a trtexec line is written for when no TensorRT is importable here (JetPack 6)
DEFAULT_TARGET_MAJOR = 10
#: the TensorRT lines this code knows; a later one is treated as the newest of these
KNOWN_MAJORS = (10, 11)


class EngineError(DnaZooError, RuntimeError):
    """A TensorRT engine that cannot be built, run, or must not be loaded here."""


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


def trt_major(version: str) -> int:
    """The major version of a TensorRT version string (``"10.3.0.30"`` -> 10)."""
    m = re.match(r"\s*(\d+)", str(version))
    if not m:
        raise EngineError(f"cannot read a TensorRT version from {version!r}")
    major = int(m.group(1))
    if major < KNOWN_MAJORS[0]:
        raise EngineError(
            f"TensorRT {version} is older than {KNOWN_MAJORS[0]}.x, which this toolchain needs",
            hint="install TensorRT 10 or newer (`pip install dna-zoo[trt]`)",
        )
    return major


def local_major() -> int | None:
    """The major version of the TensorRT importable here, or None (nothing is initialised)."""
    try:
        import tensorrt
    except ImportError:
        return None
    return trt_major(tensorrt.__version__)


@dataclass(frozen=True)
class BuildRecipe:
    """How one precision is asked of one TensorRT line (see the module docstring)."""

    major: int
    precision: str
    #: the network is created strongly typed (TensorRT 11: always)
    strongly_typed: bool
    #: ``BuilderFlag`` names set / cleared on the builder config
    set_flags: tuple[str, ...]
    clear_flags: tuple[str, ...]
    #: the ONNX must carry fp16 weights (strongly typed FP16)
    fp16_onnx: bool
    #: the trtexec options that ask for the same
    trtexec_flags: tuple[str, ...]

    @property
    def tf32(self) -> bool:
        return "TF32" not in self.clear_flags

    def record(self) -> dict[str, Any]:
        """What a manifest says about how the engine was built."""
        return {
            "tensorrt_line": f"{self.major}.x",
            "strongly_typed": self.strongly_typed,
            "builder_flags_set": list(self.set_flags),
            "builder_flags_cleared": list(self.clear_flags),
            "tf32": self.tf32,
            "fp16_onnx": self.fp16_onnx,
        }


def build_recipe(major: int, precision: str) -> BuildRecipe:
    """The one place where TensorRT 10 and 11 are told apart."""
    if precision not in ("fp32", "fp16", "int8"):
        raise EngineError(f"TensorRT precision must be fp32, fp16 or int8, not {precision!r}")
    fp32 = precision == "fp32"
    clear = ("TF32",) if fp32 else ()
    if major <= 10:
        flags = {"fp32": (), "fp16": ("FP16",), "int8": ("INT8", "FP16")}[precision]
        cli = {"fp32": ("--noTF32",), "fp16": ("--fp16",), "int8": ("--int8", "--fp16")}[precision]
        return BuildRecipe(major, precision, False, flags, clear, False, cli)
    cli = ("--stronglyTyped",) + (("--noTF32",) if fp32 else ())
    return BuildRecipe(major, precision, True, (), clear, precision == "fp16", cli)


def apply_recipe(trt: Any, config: Any, recipe: BuildRecipe) -> int:
    """Set / clear the recipe's builder flags on ``config``; returns the network creation flags."""
    flags = 0
    ncf = trt.NetworkDefinitionCreationFlag
    if hasattr(ncf, "EXPLICIT_BATCH"):  # deprecated and implied from TensorRT 10 on
        flags |= 1 << int(ncf.EXPLICIT_BATCH)
    if recipe.strongly_typed and hasattr(ncf, "STRONGLY_TYPED"):  # 11.x: always strongly typed
        flags |= 1 << int(ncf.STRONGLY_TYPED)
    for name in recipe.set_flags:
        if not hasattr(trt.BuilderFlag, name):
            raise EngineError(
                f"TensorRT {trt.__version__} has no BuilderFlag.{name}",
                hint="this TensorRT line builds strongly typed networks; report this version",
            )
        config.set_flag(getattr(trt.BuilderFlag, name))
    for name in recipe.clear_flags:
        if hasattr(trt.BuilderFlag, name):
            config.clear_flag(getattr(trt.BuilderFlag, name))
    return flags


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
    precision: str = "fp32",
    workspace_gib: float = 1.0,
    profile: Mapping[str, Sequence[int]] | None = None,
    input_name: str = "input",
    timing_cache: Path | None = None,
    max_aux_streams: int | None = None,
) -> bytes:
    """A serialized TensorRT engine built from ``onnx_path`` at ``precision``.

    ``profile`` (``min``/``opt``/``max`` shapes of ``input_name``) is needed for a dynamic
    batch; ``int8`` takes its scales from the graph's Q/DQ nodes; on TensorRT 11 an ``fp16``
    engine is built from an fp16 copy of an fp32 graph (written beside it, then removed).
    ``timing_cache`` is read if it exists and written back after the build (else an empty
    cache lives for this build only); ``max_aux_streams=0`` keeps every layer on the main
    stream (latency tables: independent copies must not run in parallel).
    """
    from dna_zoo.export.onnx_writer import convert_fp16, is_fp16_graph
    from dna_zoo.io import atomic_write_bytes

    trt = require_tensorrt()
    recipe = build_recipe(trt_major(trt.__version__), precision)
    onnx_path = Path(onnx_path)
    source, converted = onnx_path, None
    if recipe.fp16_onnx and not is_fp16_graph(onnx_path):
        converted = source = convert_fp16(onnx_path, onnx_path.with_name(onnx_path.name + ".fp16.onnx"))
    try:
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        config = builder.create_builder_config()
        network = builder.create_network(apply_recipe(trt, config, recipe))
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(source.read_bytes()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise EngineError(f"TensorRT's ONNX parser rejects {onnx_path.name}: {errors[:300]}")
    finally:
        if converted is not None:
            converted.unlink(missing_ok=True)
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if max_aux_streams is not None:
        config.max_aux_streams = int(max_aux_streams)
    if profile is not None:
        prof = builder.create_optimization_profile()
        prof.set_shape(input_name, profile["min"], profile["opt"], profile["max"])
        config.add_optimization_profile(prof)
    cache_bytes = timing_cache.read_bytes() if timing_cache is not None and timing_cache.is_file() else b""
    config.set_timing_cache(config.create_timing_cache(cache_bytes), ignore_mismatch=False)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineError(
            f"TensorRT could not build an engine for {onnx_path.name}",
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


# --- running an engine ---------------------------------------------------------------------
_TORCH_DTYPES = {
    "FLOAT": torch.float32,
    "HALF": torch.float16,
    "BF16": torch.bfloat16,
    "INT8": torch.int8,
    "UINT8": torch.uint8,
    "INT32": torch.int32,
    "INT64": torch.int64,
    "BOOL": torch.bool,
}


def torch_dtype(trt_dtype: Any) -> torch.dtype:
    """The torch dtype of a ``tensorrt.DataType`` (``engine.get_tensor_dtype(name)``)."""
    name = getattr(trt_dtype, "name", None) or str(trt_dtype).rsplit(".", 1)[-1]
    if name not in _TORCH_DTYPES:
        raise EngineError(f"engine tensor type {name} has no torch equivalent here")
    return _TORCH_DTYPES[name]


class EngineSession:
    """Runs an engine on torch tensors: I/O dtypes and shapes from the engine, every bool
    result of TensorRT checked, batches above the optimization profile's max split.

    ``stream`` is a ``torch.cuda.Stream`` (anything with ``cuda_stream`` and
    ``synchronize()``); the engine and ``trt`` module are NVIDIA's objects.
    """

    def __init__(self, engine: Any, *, trt: Any, device: torch.device | str, stream: Any) -> None:
        self.engine, self.device, self.stream = engine, torch.device(device), stream
        self.context = engine.create_execution_context()
        if self.context is None:
            raise EngineError("TensorRT could not create an execution context (out of GPU memory?)")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        is_input = {n: engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.inputs = [n for n in names if is_input[n]]
        self.outputs = [n for n in names if not is_input[n]]
        if not self.inputs or not self.outputs:
            raise EngineError(f"engine has inputs {self.inputs} and outputs {self.outputs}")
        self.dtypes = {n: torch_dtype(engine.get_tensor_dtype(n)) for n in names}
        self.max_batch = self._max_batch(self.inputs[0])

    def _max_batch(self, name: str) -> int:
        shape = tuple(self.engine.get_tensor_shape(name))
        if shape[0] >= 0:
            return int(shape[0])
        _, _, top = self.engine.get_tensor_profile_shape(name, 0)
        return int(next(iter(top)))

    def bind(self, inputs: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Copy ``inputs`` to the device in the engine's dtypes, allocate the outputs and set
        every tensor address; returns the buffers (keep them alive while the engine runs)."""
        if len(inputs) != len(self.inputs):
            raise EngineError(f"the engine takes {len(self.inputs)} input(s), got {len(inputs)}")
        buffers: dict[str, torch.Tensor] = {}
        for name, x in zip(self.inputs, inputs, strict=True):
            t = x.to(self.device, self.dtypes[name]).contiguous()
            if not self.context.set_input_shape(name, tuple(t.shape)):
                raise EngineError(
                    f"the engine does not take input {name} of shape {tuple(t.shape)}",
                    hint=f"its optimization profile allows batches up to {self.max_batch}",
                )
            buffers[name] = t
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            if any(s < 0 for s in shape):
                raise EngineError(f"output {name} has no shape after setting the inputs: {shape}")
            buffers[name] = torch.empty(shape, dtype=self.dtypes[name], device=self.device)
        for name, t in buffers.items():
            if not self.context.set_tensor_address(name, t.data_ptr()):
                raise EngineError(f"TensorRT refused the address of tensor {name}")
        return buffers

    def execute(self) -> None:
        """Run the engine once on the bound buffers and wait for it."""
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise EngineError(
                "TensorRT's execute_async_v3 failed", hint="run with --debug to see TensorRT's log"
            )
        self.stream.synchronize()

    def run(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every output of the engine on ``x`` (one input), as float32, split to the max batch."""
        chunks: list[dict[str, torch.Tensor]] = []
        for start in range(0, x.shape[0], self.max_batch):
            wait = getattr(self.stream, "wait_stream", None)
            buffers = self.bind([x[start : start + self.max_batch]])
            if wait is not None:  # the copies ran on the current stream
                wait(torch.cuda.current_stream(self.device))
            self.execute()
            chunks.append({n: buffers[n].float() for n in self.outputs})
        return {n: torch.cat([c[n] for c in chunks]) for n in self.outputs}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x)[self.outputs[0]]


def engine_runner(path: Path, manifest: dict[str, Any]) -> Runner:
    """Run a serialized engine on float32 NCHW arrays, after the machine check."""
    check_engine_machine(manifest.get("trt", {}), machine_record())
    trt = require_tensorrt()
    engine = deserialize_engine(Path(path).read_bytes(), str(path))
    device = torch.device("cuda", torch.cuda.current_device())
    session = EngineSession(engine, trt=trt, device=device, stream=torch.cuda.Stream(device))
    out_name = manifest["shapes"]["output"]["name"]
    if out_name not in session.outputs:
        raise EngineError(f"{path}: the engine has no output {out_name!r} (it has {session.outputs})")

    def fn(x: np.ndarray) -> np.ndarray:
        return session.run(torch.from_numpy(np.ascontiguousarray(x)))[out_name].cpu().numpy()

    static = None if manifest.get("dynamic_axes") else manifest["shapes"]["input"]["shape"][0]
    return Runner(f"tensorrt {manifest.get('precision')}", fn, static)
