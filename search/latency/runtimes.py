"""Runtimes that latency tables are measured on (timed by the loop in :mod:`dna_zoo.timing`).

A runtime turns a torch module plus example inputs into a ``run()`` callable that executes
the module once, synchronously, the way that runtime really runs it:

- ``onnxruntime``: the module exported to ONNX by the export toolchain's writer
  (:mod:`dna_zoo.export.onnx_writer`, opset 17), an ``InferenceSession`` on the CPU from
  :mod:`dna_zoo.export.ort` with a fixed number of intra-op threads (worker threads pinned
  to distinct cores, or ORT's shared pool), and I/O bound to preallocated buffers (so no
  allocation or copy of outputs is timed).
- ``torch``: eager PyTorch, the baseline runtime (CPU threads fixed, or CUDA).
- ``torch-compile``: the same module through ``torch.compile`` (inductor); compiled and
  warmed up while preparing, so compile time is never timed. A table compiles hundreds of
  modules through one ``forward``: dynamo's recompile limits are raised for that, and
  hitting one is an error (never a silent fall back to eager).
- ``tensorrt``: an engine built from the same ONNX by the export toolchain's builder
  (:func:`dna_zoo.export.trt.build_plan`; no auxiliary streams, so the ``k`` copies of a
  layer run one after another as in a real net; one timing cache per table), run through
  :class:`dna_zoo.export.trt.EngineSession`; imported lazily.

The caller's module is never changed: a runtime that needs another device or dtype works
on a copy.
"""

from __future__ import annotations

import contextlib
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
        return self.prepare_onnx(_export(module, inputs, workdir / f"{tag}.onnx"), inputs)

    def prepare_copies(
        self, module, inputs: Sequence, workdir: Path, tag: str, counts: Sequence[int]
    ) -> list[Runner]:
        import torch

        from dna_zoo.export.onnx_writer import replicate_graph

        one = _export(module, inputs, workdir / f"{tag}.onnx")
        out = []
        for k in counts:
            path = one if k == 1 else replicate_graph(one, k, workdir / f"{tag}_k{k}.onnx")
            xs = [x if c == 0 else torch.randn_like(x) for c in range(k) for x in inputs]
            out.append(self.prepare_onnx(path, xs))
        return out


def _export(module, inputs: Sequence, path: Path) -> Path:
    """``module(*inputs)`` as ONNX through export's writer (opset 17, as ``dna export`` writes)."""
    from dna_zoo.export.onnx_writer import write_onnx_file

    return write_onnx_file(
        module,
        inputs,
        path,
        input_names=[f"x{i}" for i in range(len(inputs))],
        opset=17,
        # TorchScript exporter kept: LEGACY_REASON (a table exports hundreds of small graphs)
        exporter="torchscript",
        check=False,  # ORT loads (and so validates) every graph right away
    )


class OnnxRuntimeCPU(OnnxRuntimeBase):
    name = "onnxruntime"
    package = "onnxruntime"
    precisions = ("fp32",)

    def version(self) -> str:
        import onnxruntime

        return onnxruntime.__version__

    def session_options(self):
        from dna_zoo.export.ort import session_options

        o = self.options
        return session_options(o.threads or 1, shared_pool=o.shared_pool, pin_threads=o.pin_threads)

    def prepare_onnx(self, path: Path, inputs: Sequence) -> Runner:
        import numpy as np
        import onnxruntime as ort

        from dna_zoo.export.ort import cpu_session

        sess = cpu_session(path, self.session_options())
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
        module = _moved(module, dev, dtype).eval()
        xs = [x.to(dev, dtype) for x in inputs]
        sync = torch.cuda.synchronize if dev.startswith("cuda") else (lambda: None)
        if self.compiled:
            module = compile_module(module, xs)

        def run() -> None:
            with torch.inference_mode(), _recompile_limit_is_an_error():
                module(*xs)
            sync()

        return run


def _moved(module, device: str, dtype):
    """``module`` on ``device`` in ``dtype``: a copy unless it is there already (the caller's
    module is not moved or cast in place); train/eval mode is set on what is returned."""
    import copy

    import torch

    tensors = list(module.parameters()) + list(module.buffers())
    here = all(t.device == torch.device(device) for t in tensors) and all(
        t.dtype == dtype for t in tensors if t.is_floating_point()
    )
    if here and not module.training:
        return module
    return copy.deepcopy(module).to(device, dtype)


#: dynamo recompile limits while latency tables compile (one module per entry, same forward)
COMPILE_RECOMPILE_LIMIT = 100_000


def raise_compile_limits(limit: int = COMPILE_RECOMPILE_LIMIT) -> None:
    """Let dynamo compile ``limit`` variants of one ``forward``, and make hitting a limit an
    error (by default dynamo then runs the rest eagerly, with only a log line). Settings of
    ``torch._dynamo.config``; the names of older torch releases are set where they exist."""
    import torch._dynamo.config as cfg

    for name in (
        "recompile_limit",
        "cache_size_limit",
        "accumulated_recompile_limit",
        "accumulated_cache_size_limit",
    ):
        if hasattr(cfg, name):
            setattr(cfg, name, int(limit))
    for name in ("fail_on_recompile_limit_hit", "fail_on_cache_limit_hit"):
        if hasattr(cfg, name):
            setattr(cfg, name, True)


class RecompileLimitError(DnaZooError, RuntimeError):
    """dynamo hit a recompile limit: the rest would have run eagerly, timing the wrong thing."""


@contextlib.contextmanager
def _recompile_limit_is_an_error():
    try:
        yield
    except Exception as e:
        if type(e).__name__ not in ("FailOnRecompileLimitHit", "FailOnCacheLimitHit"):
            raise
        raise RecompileLimitError(
            f"torch.compile hit dynamo's recompile limit: {str(e).strip().splitlines()[0][:200]}",
            hint="the remaining entries would run eagerly; build the table in fewer entries per process",
        ) from e


def compile_module(
    module, xs: Sequence, *, backend: str = "inductor", recompile_limit: int = COMPILE_RECOMPILE_LIMIT
):
    """``torch.compile`` (static shapes), run once so the compile cost is paid here; dynamo's
    recompile limits are ``recompile_limit`` and hitting one is a :class:`RecompileLimitError`."""
    import torch

    raise_compile_limits(recompile_limit)
    try:
        compiled = torch.compile(module, dynamic=False, backend=backend)
        with torch.inference_mode(), _recompile_limit_is_an_error():
            compiled(*xs)
    except DnaZooError:
        raise
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
    """TensorRT engines built from ONNX (NVIDIA's documented Python API, TensorRT 10 and 11)."""

    #: the timing cache every engine of one table shares (in the table's work folder)
    TIMING_CACHE = "tensorrt.timing.cache"

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

        from dna_zoo.export.trt import EngineSession, build_plan, deserialize_engine

        trt = require("tensorrt", extra="trt", purpose="TensorRT latency tables")
        plan = build_plan(
            path,
            precision=self.options.precision,
            workspace_gib=1.0,
            timing_cache=path.parent / self.TIMING_CACHE,
            max_aux_streams=0,  # copies of a layer must not overlap on auxiliary streams
        )
        engine = deserialize_engine(plan, path.name)
        dev = torch.device("cuda", self.options.device_index)
        session = EngineSession(engine, trt=trt, device=dev, stream=torch.cuda.Stream(device=dev))
        buffers = session.bind(list(inputs))
        torch.cuda.synchronize(dev)  # the inputs are on the device before the first run

        def run(session=session, buffers=buffers) -> None:
            session.execute()

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
