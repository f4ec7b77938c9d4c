"""Export options: one frozen dataclass, validated once, shared by every format."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from dna_zoo.errors import ConfigError

DEFAULT_OPSET = 17
MIN_OPSET = 13  # QDQ per-channel quantization and TensorRT's ONNX parser need >= 13


def max_opset() -> int:
    """The highest opset both onnx and torch's TorchScript exporter support here."""
    import onnx

    try:
        from torch.onnx._constants import ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET as torch_max
    except ImportError:  # private constant moved: stay conservative
        torch_max = 20
    return min(onnx.defs.onnx_opset_version(), int(torch_max))


@dataclass(frozen=True)
class ExportOptions:
    """Everything a format may be asked to do; :mod:`registry` says which format accepts what."""

    batch: int = 1
    dynamic: bool = False
    dynamic_size: bool = False
    input_size: int | None = None
    opset: int = DEFAULT_OPSET
    data: str | None = None
    tolerance: float | None = None
    latency: bool = True
    threads: int = 2
    calib: str | None = None
    calib_size: int = 100
    int8: bool = False
    half: bool = False
    max_batch: int | None = None
    workspace: float = 1.0
    timing_cache: str | None = None
    onnx_only: bool = False

    @classmethod
    def create(cls, options: dict[str, Any]) -> ExportOptions:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"unknown export option(s): {', '.join(unknown)}")
        opts = cls(**{k: v for k, v in options.items() if v is not None})
        opts.validate()
        return opts

    def validate(self) -> None:
        if self.batch < 1:
            raise ConfigError(f"batch must be at least 1, got {self.batch}")
        if self.max_batch is not None and self.max_batch < max(self.batch, 1):
            raise ConfigError(f"--max-batch {self.max_batch} is smaller than --batch {self.batch}")
        if self.max_batch is not None and not self.dynamic:
            raise ConfigError("--max-batch needs --dynamic (a static engine has one batch size)")
        if self.dynamic_size and not self.dynamic:
            raise ConfigError("--dynamic-size needs --dynamic")
        top = max_opset()
        if not MIN_OPSET <= self.opset <= top:
            raise ConfigError(f"opset {self.opset} is not supported here", hint=f"use {MIN_OPSET}..{top}")
        if self.threads < 1:
            raise ConfigError(f"threads must be at least 1, got {self.threads}")
        if self.workspace <= 0:
            raise ConfigError(f"workspace must be positive (GiB), got {self.workspace}")
        if self.half and self.int8:
            raise ConfigError(
                "choose one of --half and --int8", hint="an INT8 engine keeps FP16 fallbacks itself"
            )
        if self.tolerance is not None and self.tolerance <= 0:
            raise ConfigError(f"tolerance must be positive, got {self.tolerance}")

    @property
    def precision(self) -> str:
        return "int8" if self.int8 else "fp16" if self.half else "fp32"
