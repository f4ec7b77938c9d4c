"""The export formats: one small record per format, and the lookup the CLI dispatches through.

A format names the module and function that export it (imported only when used, so a
missing optional runtime costs nothing until asked for), its file suffix, the options it
accepts, the pip extra it needs and whether it needs an NVIDIA GPU. Unknown names get a
"did you mean"; options a format does not accept are a :class:`ConfigError`, never
silently dropped.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dna_zoo.errors import ConfigError, UnknownNameError

# Options every format understands (where the images for the parity check come from,
# how strict the check is, and whether to time the artifact).
COMMON_OPTIONS = frozenset({"data", "tolerance", "latency", "threads"})
SHAPE_OPTIONS = frozenset({"batch", "dynamic", "input_size", "opset"})
CALIB_OPTIONS = frozenset({"calib", "calib_size"})


@dataclass(frozen=True)
class ExportFormat:
    """One export format: how to find its exporter and what it accepts."""

    name: str
    suffix: str
    module: str
    function: str
    options: frozenset[str]
    description: str
    aliases: tuple[str, ...] = ()
    extra: str | None = None
    needs_gpu: bool = False

    def exporter(self) -> Callable[..., Any]:
        """The ``export_x(model, sample, path, options) -> Artifact`` function."""
        return getattr(importlib.import_module(self.module), self.function)

    def check_options(self, options: Mapping[str, Any]) -> None:
        """Refuse any option this format does not accept (one clear line, with the list)."""
        bad = sorted(set(options) - self.options)
        if bad:
            accepted = ", ".join(sorted(_flag(o) for o in self.options))
            raise ConfigError(
                f"format '{self.name}' does not accept {', '.join(_flag(b) for b in bad)}",
                hint=f"it accepts: {accepted}",
            )


def _flag(option: str) -> str:
    if option == "latency":  # a switch that is on by default
        return "--no-latency"
    return "--" + option.replace("_", "-")


FORMATS: tuple[ExportFormat, ...] = (
    ExportFormat(
        name="onnx",
        suffix=".onnx",
        module="dna_zoo.export.format_onnx",
        function="export_onnx",
        options=COMMON_OPTIONS | SHAPE_OPTIONS | {"dynamic_size"},
        description="ONNX fp32, checked with onnx.checker and ONNX Runtime against torch",
    ),
    ExportFormat(
        name="onnx-int8",
        suffix=".int8.onnx",
        module="dna_zoo.export.format_onnx_int8",
        function="export_onnx_int8",
        options=COMMON_OPTIONS | SHAPE_OPTIONS | CALIB_OPTIONS,
        description="ONNX with static INT8 Q/DQ (ONNX Runtime quantization, calibrated on real images)",
        aliases=("onnx_int8", "ort-int8"),
    ),
    ExportFormat(
        name="openvino",
        suffix=".xml",
        module="dna_zoo.export.format_openvino",
        function="export_openvino",
        options=COMMON_OPTIONS | SHAPE_OPTIONS | CALIB_OPTIONS | {"int8", "half"},
        description="OpenVINO IR fp32, bf16 execution (--half, CPUs with bf16), or INT8 via NNCF (--int8)",
        aliases=("ov", "openvino-ir"),
        extra="openvino",
    ),
    ExportFormat(
        name="engine",
        suffix=".engine",
        module="dna_zoo.export.format_trt",
        function="export_engine",
        options=COMMON_OPTIONS
        | SHAPE_OPTIONS
        | CALIB_OPTIONS
        | {"half", "int8", "max_batch", "workspace", "timing_cache", "onnx_only"},
        description="TensorRT engine (FP32/FP16/INT8 from Q/DQ); --onnx-only: TensorRT-ready ONNX + trtexec",
        aliases=("trt", "tensorrt"),
        extra="trt",
        needs_gpu=True,
    ),
)


def get_format(name: str) -> ExportFormat:
    """The format called ``name`` or one of its aliases (case-insensitive)."""
    key = name.strip().lower()
    for f in FORMATS:
        if key == f.name or key in f.aliases:
            return f
    known = [n for f in FORMATS for n in (f.name, *f.aliases)]
    raise UnknownNameError("export format", name, known)
