"""Runtimes that latency tables are measured on (timed by the loop in :mod:`dna_zoo.timing`).

A runtime turns a torch module plus example inputs into a ``run()`` callable that executes
the module once, synchronously, the way that runtime really runs it:

- ``onnxruntime``: the module exported to ONNX (opset 17, as the export toolchain does),
  an ``InferenceSession`` on the CPU with a fixed number of intra-op threads, worker
  threads pinned to distinct cores, and I/O bound to preallocated buffers (so no
  allocation or copy of outputs is timed).
- ``torch``: eager PyTorch, the baseline runtime (CPU threads fixed, or CUDA).
- ``torch-compile``: the same module through ``torch.compile`` (inductor); compiled and
  warmed up while preparing, so compile time is never timed.
- ``tensorrt``: an engine built from the same ONNX with NVIDIA's documented Python API
  (``tensorrt.Builder`` / ``OnnxParser`` / ``execute_async_v3``), imported lazily.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dna_zoo.errors import ConfigError, DnaZooError, UnknownNameError, require

logger = logging.getLogger(__name__)

Runner = Callable[[], None]


@dataclass(frozen=True)
class RuntimeOptions:
    """How a runtime runs: precision, threads (CPU), pinning of worker threads, GPU index."""

    precision: str = "fp32"
    threads: int | None = None
    pin_threads: bool = True
    #: ORT: one process-wide thread pool for all sessions (else one pool per session)
    shared_pool: bool = True
    device_index: int = 0


class Runtime(ABC):
    """Prepares modules for timing on one runtime."""

    name: str = ""
    package: str = ""
    extra: str | None = None
    precisions: tuple[str, ...] = ("fp32",)

    def __init__(self, options: RuntimeOptions | None = None) -> None:
        self.options = options or RuntimeOptions()
        if self.options.precision not in self.precisions:
            raise ConfigError(
                f"runtime {self.name} does not support precision '{self.options.precision}'",
                hint=f"use one of: {', '.join(self.precisions)}",
            )

    def check(self) -> None:
        """Raise :class:`~dna_zoo.errors.MissingDependencyError` if the runtime is not installed."""
        require(self.package, extra=self.extra, purpose=f"latency on {self.name}")

    @abstractmethod
    def version(self) -> str: ...

    @abstractmethod
    def prepare(self, module, inputs: Sequence, workdir: Path, tag: str) -> Runner:
        """A callable that runs ``module(*inputs)`` once on this runtime and waits for it."""

    def prepare_copies(
        self, module, inputs: Sequence, workdir: Path, tag: str, counts: Sequence[int]
    ) -> list[Runner]:
        """Runners of models holding ``k`` copies of ``module`` side by side, each copy on its
        own inputs, one runner per ``k`` in ``counts`` (for marginal costs)."""
        import copy

        import torch

        out = []
        for k in counts:
            parts = [module] + [copy.deepcopy(module) for _ in range(k - 1)]
            xs = [x if c == 0 else torch.randn_like(x) for c in range(k) for x in inputs]
            out.append(self.prepare(_Copies(parts, len(inputs)), xs, workdir, f"{tag}_k{k}"))
        return out

    def describe_options(self) -> dict:
        o = self.options
        return {
            "threads": o.threads,
            "pin_threads": o.pin_threads,
            "shared_pool": o.shared_pool,
            "precision": o.precision,
        }


def _Copies(parts, n_inputs: int):
    import torch.nn as nn

    class Copies(nn.Module):
        """Independent modules side by side: copy ``c`` takes inputs ``c*n .. c*n+n-1``."""

        def __init__(self) -> None:
            super().__init__()
            self.parts = nn.ModuleList(parts)

        def forward(self, *xs):
            return tuple(p(*xs[c * n_inputs : (c + 1) * n_inputs]) for c, p in enumerate(self.parts))

    return Copies().eval()


class OnnxRuntimeBase(Runtime):
    """Runtimes that run the exported ONNX model; copies are made in the ONNX graph (one export)."""

    @abstractmethod
    def prepare_onnx(self, path: Path, inputs: Sequence) -> Runner: ...

    def prepare(self, module, inputs: Sequence, workdir: Path, tag: str) -> Runner:
        return self.prepare_onnx(export_onnx(module, inputs, workdir / f"{tag}.onnx"), inputs)

    def prepare_copies(
        self, module, inputs: Sequence, workdir: Path, tag: str, counts: Sequence[int]
    ) -> list[Runner]:
        import torch

        one = export_onnx(module, inputs, workdir / f"{tag}.onnx")
        out = []
        for k in counts:
            path = one if k == 1 else replicate_onnx(one, k, workdir / f"{tag}_k{k}.onnx")
            xs = [x if c == 0 else torch.randn_like(x) for c in range(k) for x in inputs]
            out.append(self.prepare_onnx(path, xs))
        return out


def replicate_onnx(src: Path, k: int, dst: Path) -> Path:
    """``k`` renamed copies of an ONNX graph side by side in one model (own inputs, outputs, weights)."""
    import onnx
    from onnx import compose, helper

    m = onnx.load(str(src))
    parts = [compose.add_prefix(m, f"c{i}_") for i in range(k)]
    graph = helper.make_graph(
        nodes=[n for p in parts for n in p.graph.node],
        name="copies",
        inputs=[x for p in parts for x in p.graph.input],
        outputs=[y for p in parts for y in p.graph.output],
        initializer=[t for p in parts for t in p.graph.initializer],
        value_info=[v for p in parts for v in p.graph.value_info],
    )
    model = helper.make_model(graph, opset_imports=m.opset_import, ir_version=m.ir_version)
    onnx.save(model, str(dst))
    return dst


def export_onnx(module, inputs: Sequence, path: Path, *, opset: int = 17) -> Path:
    """Export ``module(*inputs)`` to ONNX as the export toolchain does (opset 17, constant folding)."""
    import torch

    module.eval()
    try:
        torch.onnx.export(
            module,
            tuple(inputs),
            str(path),
            input_names=[f"x{i}" for i in range(len(inputs))],
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    except Exception as e:  # exporter failures carry long internal messages
        raise DnaZooError(f"ONNX export for latency measurement failed: {e}") from e
    return path


class OnnxRuntimeCPU(OnnxRuntimeBase):
    name = "onnxruntime"
    package = "onnxruntime"
    precisions = ("fp32",)

    def version(self) -> str:
        import onnxruntime

        return onnxruntime.__version__

    def session_options(self):
        import onnxruntime as ort

        so = ort.SessionOptions()
        threads = self.options.threads or 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        if self.options.shared_pool and _shared_pool(threads):
            # One thread pool for every session of this process, as an application with one
            # model has: sessions timed in turn do not fight with each other's spinning workers.
            so.use_per_session_threads = False
            return so
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        if self.options.pin_threads and threads > 1:
            cpus = _allowed_cpus()
            if len(cpus) >= threads:
                # ORT pins the threads it creates (threads - 1; the caller's thread runs too);
                # processor ids in this string count from 1.
                aff = ";".join(str(c + 1) for c in cpus[1:threads])
                so.add_session_config_entry("session.intra_op_thread_affinities", aff)
        return so

    def prepare_onnx(self, path: Path, inputs: Sequence) -> Runner:
        import numpy as np
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), self.session_options(), providers=["CPUExecutionProvider"])
        binding = sess.io_binding()
        keep = []  # the OrtValues must outlive the binding
        for meta, x in zip(sess.get_inputs(), inputs, strict=True):
            v = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(x.numpy()))
            binding.bind_ortvalue_input(meta.name, v)
            keep.append(v)
        for meta in sess.get_outputs():
            # preallocated outputs: the run writes into them, nothing is allocated or copied
            v = ort.OrtValue.ortvalue_from_numpy(np.empty(tuple(meta.shape), dtype=np.float32))
            binding.bind_ortvalue_output(meta.name, v)
            keep.append(v)

        def run(sess=sess, binding=binding, keep=keep) -> None:
            sess.run_with_iobinding(binding)

        return run


class TorchEager(Runtime):
    name = "torch"
    package = "torch"
    precisions = ("fp32", "fp16", "bf16")

    def version(self) -> str:
        import torch

        return torch.__version__

    def _device(self) -> str:
        import torch

        return f"cuda:{self.options.device_index}" if torch.cuda.is_available() and self._on_gpu else "cpu"

    _on_gpu = False
    #: run the module through ``torch.compile`` (compiled and warmed up in ``prepare``)
    compiled = False

    def prepare(self, module, inputs: Sequence, workdir: Path, tag: str) -> Runner:
        import torch

        dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[self.options.precision]
        dev = self._device()
        if dev == "cpu" and self.options.precision == "fp16":
            raise ConfigError("torch fp16 latency needs a GPU", hint="use --precision fp32 or bf16 on CPU")
        if dev == "cpu" and self.options.threads:
            torch.set_num_threads(self.options.threads)
        module = module.eval().to(dev, dtype)
        xs = [x.to(dev, dtype) for x in inputs]
        sync = torch.cuda.synchronize if dev.startswith("cuda") else (lambda: None)
        if self.compiled:
            module = _compile(module, xs)

        def run() -> None:
            with torch.inference_mode():
                module(*xs)
            sync()

        return run


def _compile(module, xs: Sequence):
    """``torch.compile`` (static shapes), run once so the compile cost is paid here."""
    import torch

    try:
        compiled = torch.compile(module, dynamic=False)
        with torch.inference_mode():
            compiled(*xs)
    except Exception as e:  # inductor needs a working C++ toolchain on CPU
        raise DnaZooError(
            f"torch.compile failed: {str(e).strip().splitlines()[0][:200]}",
            hint="torch-compile needs a C++ compiler on CPU; use --runtime torch or onnxruntime",
        ) from e
    return compiled


class TorchCompiled(TorchEager):
    """``torch.compile`` of the same modules: what a compiled PyTorch deployment pays."""

    name = "torch-compile"
    compiled = True

    def version(self) -> str:
        import torch

        return f"{torch.__version__} (inductor)"


class TorchEagerGPU(TorchEager):
    """Eager PyTorch on the local NVIDIA GPU (same runtime name: the device tells them apart)."""

    _on_gpu = True

    def check(self) -> None:
        super().check()
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("torch has no usable CUDA device here", hint="use --device cpu")


class TorchCompiledGPU(TorchCompiled, TorchEagerGPU):
    """``torch.compile`` on the local NVIDIA GPU."""


class TensorRT(OnnxRuntimeBase):
    """TensorRT engines built from ONNX (NVIDIA's documented Python API, TensorRT 10)."""

    name = "tensorrt"
    package = "tensorrt"
    extra = "trt"
    precisions = ("fp32", "fp16")

    def version(self) -> str:
        trt = require("tensorrt", extra="trt", purpose="TensorRT latency tables")
        return trt.__version__

    def check(self) -> None:
        super().check()
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("TensorRT needs an NVIDIA GPU with CUDA, and none is usable here")

    def prepare_onnx(self, path: Path, inputs: Sequence) -> Runner:
        import torch

        trt = require("tensorrt", extra="trt", purpose="TensorRT latency tables")
        log = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(log)
        network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
        parser = trt.OnnxParser(network, log)
        if not parser.parse(path.read_bytes()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise DnaZooError(f"TensorRT could not parse {path.name}: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 30)
        if self.options.precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise DnaZooError(f"TensorRT could not build an engine for {path.name}")
        engine = trt.Runtime(log).deserialize_cuda_engine(serialized)
        context = engine.create_execution_context()
        dev = torch.device("cuda", self.options.device_index)
        buffers = {}
        feeds = iter(inputs)
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                t = next(feeds).to(dev, torch.float32).contiguous()
            else:
                t = torch.empty(tuple(engine.get_tensor_shape(name)), device=dev, dtype=torch.float32)
            buffers[name] = t
            context.set_tensor_address(name, t.data_ptr())
        stream = torch.cuda.Stream(device=dev)

        def run(context=context, engine=engine, buffers=buffers) -> None:
            context.execute_async_v3(stream.cuda_stream)
            stream.synchronize()

        return run


RUNTIMES: dict[str, type[Runtime]] = {
    "onnxruntime": OnnxRuntimeCPU,
    "torch": TorchEager,
    "torch-compile": TorchCompiled,
    "tensorrt": TensorRT,
}
ALIASES = {
    "ort": "onnxruntime",
    "trt": "tensorrt",
    "engine": "tensorrt",
    "eager": "torch",
    "pytorch": "torch",
    "compile": "torch-compile",
    "inductor": "torch-compile",
}


def canonical_runtime(name: str) -> str:
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in RUNTIMES:
        raise UnknownNameError("runtime", name, list(RUNTIMES) + list(ALIASES))
    return key


def get_runtime(name: str, options: RuntimeOptions | None = None, *, device: str = "cpu") -> Runtime:
    """A runtime by name (aliases: ort, trt, eager); ``device`` picks the CPU or GPU variant."""
    key = canonical_runtime(name)
    if key == "torch" and device != "cpu":
        return TorchEagerGPU(options)
    if key == "torch-compile" and device != "cpu":
        return TorchCompiledGPU(options)
    return RUNTIMES[key](options)


_GLOBAL_POOL: list[int] = []


def ort_global_pool_active() -> bool:
    """True once this process set ORT's shared thread pool: every later session must then
    be made with ``use_per_session_threads = False`` (ORT refuses it otherwise)."""
    return bool(_GLOBAL_POOL) and _GLOBAL_POOL[0] > 0


def _shared_pool(threads: int) -> bool:
    """Use ORT's process-wide thread pool of ``threads`` threads (set once, before the first
    session); False when it was set to another size, or ORT sessions already exist."""
    if _GLOBAL_POOL:
        return _GLOBAL_POOL[0] == threads
    try:
        from onnxruntime.capi import _pybind_state

        _pybind_state.set_global_thread_pool_sizes(threads, 1)
    except Exception as e:  # the environment exists already (sessions made elsewhere)
        logger.debug("no shared ORT thread pool: %s", e)
        _GLOBAL_POOL.append(-1)
        return False
    _GLOBAL_POOL.append(threads)
    return True


def _allowed_cpus() -> list[int]:
    import os

    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))
