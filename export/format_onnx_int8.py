"""ONNX INT8: ONNX Runtime static quantization (QDQ), calibrated on real images.

Recipe (probed on x86 CPUs, see the README's Export section): U8 activations / S8
weights, per-channel weights, MinMax calibration, every op quantized. It makes
EfficientNet-Lite0 (ReLU6) faster than fp32 in ONNX Runtime (figures in
bench/results/README.md), but networks with
SiLU + squeeze-excite (DNA) get slower, because SiLU becomes QLinearSigmoid + QLinearMul
and SE needs dequantize steps. So the artifact is always timed against the fp32 model on
the machine that makes it, and the manifest's ``int8`` verdict says which it was.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from dna_zoo.errors import DnaZooError
from dna_zoo.export.artifact import Artifact, manifest_path_for
from dna_zoo.export.checks import check_parity, measure, reduced_precision_verdict
from dna_zoo.export.format_onnx import INPUT_NAME, base_manifest, num_outputs, write_onnx
from dna_zoo.export.inputs import ImageSet, calibration_set, data_config
from dna_zoo.export.options import ExportOptions
from dna_zoo.export.runners import ort_runner

log = logging.getLogger(__name__)

RECIPE = {
    "quant_format": "QDQ",
    "activation_type": "QUInt8",
    "weight_type": "QInt8",
    "per_channel": True,
    "calibrate_method": "MinMax",
    "op_types": "all",
}


class QuantizationError(DnaZooError, RuntimeError):
    """ONNX Runtime could not quantize the model."""


def calibration_batches(images: ImageSet, batch: int | None) -> list[np.ndarray]:
    """Calibration inputs in the artifact's batch size (the last batch padded by repetition)."""
    b = batch or 1
    out = []
    for i in range(0, len(images.x), b):
        chunk = images.x[i : i + b]
        if chunk.shape[0] < b:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], b - chunk.shape[0], axis=0)])
        out.append(np.ascontiguousarray(chunk))
    return out


def quantize_qdq(
    fp32_path: Path,
    out_path: Path,
    batches: list[np.ndarray],
    *,
    symmetric_activations: bool = False,
    quantize_bias: bool = True,
) -> Path:
    """Static QDQ quantization of an fp32 ONNX file (``symmetric_activations``: S8, for TensorRT).

    ``quantize_bias=False`` keeps biases in float (ONNX Runtime quantizes them to int32 by
    default, and TensorRT's ONNX parser rejects int32 ``DequantizeLinear`` inputs).
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(batches)

        def get_next(self):
            x = next(self._it, None)
            return None if x is None else {INPUT_NAME: x}

    prepared = out_path.with_name(out_path.name + ".prep.onnx")
    try:
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(out_path),
            _Reader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8 if symmetric_activations else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={
                "ActivationSymmetric": symmetric_activations,
                "WeightSymmetric": True,
                "QuantizeBias": quantize_bias,
            },
        )
    except DnaZooError:
        raise
    except Exception as e:
        raise QuantizationError(f"ONNX Runtime quantization failed: {str(e).splitlines()[0][:200]}") from e
    finally:
        prepared.unlink(missing_ok=True)
    return out_path


def export_onnx_int8(
    model: torch.nn.Module, sample: torch.Tensor, path: Path, opts: ExportOptions
) -> Artifact:
    """Format ``onnx-int8``: static QDQ INT8 ONNX, with its speed/accuracy verdict."""
    cfg = data_config(model, opts.input_size)
    calib = calibration_set(opts.calib, cfg, opts.calib_size)
    fp32 = path.with_name(path.name + ".fp32.onnx")  # in the staging folder, never published
    write_onnx(model, sample, fp32, opts)
    quantize_qdq(fp32, path, calibration_batches(calib, None if opts.dynamic else opts.batch))
    runner = ort_runner(path, threads=opts.threads, name="onnxruntime int8")
    manifest = base_manifest("onnx-int8", "int8", path, sample, opts, num_outputs(model, sample))
    manifest["runtime"] = "onnxruntime (CPUExecutionProvider)"
    manifest["quantization"] = {**RECIPE, "calibration": {"images": calib.source, "n": len(calib.labels)}}
    manifest["parity"] = check_parity(model, runner, opts, precision="int8")
    latency = {}
    if opts.latency:
        base = ort_runner(fp32, threads=opts.threads, name="onnxruntime fp32")
        latency = measure({runner.name: runner, base.name: base}, opts.batch, sample.shape[1:])
        manifest["latency"] = latency
    manifest["int8"] = reduced_precision_verdict(latency, runner.name, "onnxruntime fp32", manifest["parity"])
    fp32.unlink()
    return Artifact(path, manifest_path_for(path), manifest)
