"""Run a model in any format the same way: ``runner(x: float32 NCHW) -> logits``.

Parity checks, ``dna validate`` and ``dna benchmark`` all go through these, so what is
checked is what is timed (:func:`dna_zoo.export.load.load_runner` opens an exported
artifact as one). A runner of a static-batch artifact splits (and pads) a batch
into chunks of its fixed size.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dna_zoo.errors import DataError, require
from dna_zoo.export.ort import cpu_session

log = logging.getLogger(__name__)

DEFAULT_THREADS = 2


@dataclass
class Runner:
    """A callable on float32 NCHW arrays; ``static_batch`` is the only batch it takes, if any."""

    name: str
    fn: Callable[[np.ndarray], np.ndarray]
    static_batch: int | None = None
    threads: int | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        b = self.static_batch
        if b is None or x.shape[0] == b:
            return np.asarray(self.fn(x))
        outs = []
        for i in range(0, x.shape[0], b):
            chunk = x[i : i + b]
            n = chunk.shape[0]
            if n < b:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], b - n, axis=0)])
            outs.append(np.asarray(self.fn(chunk))[:n])
        return np.concatenate(outs)


def torch_runner(model, *, threads: int | None = DEFAULT_THREADS) -> Runner:
    import torch

    if threads:
        torch.set_num_threads(threads)
    model = model.eval()

    def fn(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.tensor(x)).float().numpy()

    return Runner("torch", fn, None, threads)


def ort_session(path: Path, *, threads: int | None = DEFAULT_THREADS):
    """An ONNX Runtime CPU session; a corrupt file is a :class:`DataError`."""
    return cpu_session(path, threads=threads)


def ort_runner(path: Path, *, threads: int | None = DEFAULT_THREADS, name: str = "onnx") -> Runner:
    sess = ort_session(path, threads=threads)
    inp = sess.get_inputs()[0]
    static = inp.shape[0] if isinstance(inp.shape[0], int) else None

    def fn(x: np.ndarray) -> np.ndarray:
        return sess.run(None, {inp.name: x})[0]

    return Runner(name, fn, static, threads)


def openvino_runner(
    path: Path,
    *,
    threads: int | None = DEFAULT_THREADS,
    name: str = "openvino",
    hint: str = "LATENCY",
    execution: str = "f32",
) -> Runner:
    """An OpenVINO CPU model; ``execution`` is its INFERENCE_PRECISION_HINT: ``f32`` (the
    CPU plugin's default is bf16 where the CPU has it, so fp32 must be asked for) or ``bf16``."""
    ov = require("openvino", extra="openvino", purpose="OpenVINO models")
    core = ov.Core()
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": execution, "PERFORMANCE_HINT": hint}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    try:
        compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
    except Exception as e:  # openvino raises RuntimeError subclasses with long texts
        raise DataError(
            f"OpenVINO cannot load {path}: {str(e).strip().splitlines()[0][:200]}",
            hint="the file may be corrupt; export it again (with --force)",
        ) from e
    shape = compiled.input(0).get_partial_shape()
    static = shape[0].get_length() if shape[0].is_static else None
    request = compiled.create_infer_request()
    out = compiled.output(0)

    def fn(x: np.ndarray) -> np.ndarray:
        return request.infer({0: x})[out].copy()

    return Runner(name, fn, static, threads)
