"""OpenVINO IR (``.xml`` + ``.bin``): fp32, or INT8 through NNCF post-training quantization.

OpenVINO is the fast CPU runtime on x86. Two things measured here matter:
- its CPU plugin defaults to bf16 execution where the CPU has it, so fp32 parity needs
  ``INFERENCE_PRECISION_HINT=f32`` (the runner sets it; the manifest records it);
- NNCF's default per-channel activation quantizers on depthwise-conv inputs cost
  EfficientNet-Lite0 3 of 20 top-1 predictions; per-tensor activation quantizers keep all
  of them at the same speed, so that is what is used.
- ``--half`` keeps fp32 weights in the IR and records ``INFERENCE_PRECISION_HINT=bf16``
  in the manifest: the CPU plugin then computes in bf16 (AVX512-BF16 / AMX), judged like
  every reduced precision on top-1 agreement with torch. A CPU without bf16 is refused.
The model is converted from the same fp32 ONNX file the ``onnx`` format writes.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path

import torch

from dna_zoo.errors import DnaZooError, require
from dna_zoo.export.artifact import Artifact, manifest_path_for
from dna_zoo.export.checks import check_parity, measure, reduced_precision_verdict
from dna_zoo.export.format_onnx import base_manifest, num_outputs, write_onnx
from dna_zoo.export.inputs import calibration_set, data_config
from dna_zoo.export.options import ExportOptions
from dna_zoo.export.runners import openvino_runner

log = logging.getLogger(__name__)

EXECUTION = {"device": "CPU", "INFERENCE_PRECISION_HINT": "f32"}
EXECUTION_BF16 = {"device": "CPU", "INFERENCE_PRECISION_HINT": "bf16"}


class OpenVinoError(DnaZooError, RuntimeError):
    """OpenVINO or NNCF could not convert or quantize the model."""


def bin_path(xml: Path) -> Path:
    return xml.with_suffix(".bin")


def cpu_has_bf16(ov) -> bool:
    """Whether OpenVINO's CPU plugin can compute in bf16 on this machine."""
    try:
        return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:  # an old plugin without the property: assume not
        return False


def nncf_quantize(ov_model, batches, *, per_tensor_activations: bool = True):
    """INT8 through ``nncf.quantize`` on real calibration batches (performance preset:
    symmetric quantizers; activations per-tensor, see the module docstring)."""
    nncf = require("nncf", extra="openvino", purpose="OpenVINO INT8 quantization")
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, QuantizationParameters

    adv = AdvancedQuantizationParameters(
        activations_quantization_params=QuantizationParameters(per_channel=not per_tensor_activations)
    )
    try:  # NNCF draws its own progress bars on stdout: keep stdout for --json
        with contextlib.redirect_stdout(sys.stderr):
            return nncf.quantize(
                ov_model,
                nncf.Dataset(batches),
                preset=nncf.QuantizationPreset.PERFORMANCE,
                target_device=nncf.TargetDevice.CPU,
                subset_size=len(batches),
                advanced_parameters=adv,
            )
    except Exception as e:
        raise OpenVinoError(f"NNCF quantization failed: {str(e).splitlines()[0][:200]}") from e


def export_openvino(
    model: torch.nn.Module, sample: torch.Tensor, path: Path, opts: ExportOptions
) -> Artifact:
    """Format ``openvino``: IR fp32, bf16 execution (``opts.half``) or INT8 (``opts.int8``),
    checked against torch."""
    ov = require("openvino", extra="openvino", purpose="OpenVINO export")
    precision = "int8" if opts.int8 else "bf16" if opts.half else "fp32"
    if opts.half and not cpu_has_bf16(ov):
        raise OpenVinoError(
            "this CPU cannot compute in bf16 (no AVX512-BF16 / AMX reported by OpenVINO)",
            hint="export fp32 (drop --half) or INT8 (--int8)",
        )
    execution = EXECUTION_BF16 if opts.half else EXECUTION
    onnx_file = path.with_name(path.name + ".src.onnx")  # staging only
    write_onnx(model, sample, onnx_file, opts)
    try:
        ov_model = ov.convert_model(str(onnx_file))
    except Exception as e:
        raise OpenVinoError(f"OpenVINO could not convert the model: {str(e).splitlines()[0][:200]}") from e
    manifest = base_manifest("openvino", precision, path, sample, opts, num_outputs(model, sample))
    manifest["runtime"] = {"openvino": execution}
    fp32_xml = path.with_name(path.name + ".fp32.xml") if opts.int8 else path
    ov.save_model(ov_model, str(fp32_xml), compress_to_fp16=False)
    if opts.int8:
        from dna_zoo.export.format_onnx_int8 import calibration_batches

        calib = calibration_set(opts.calib, data_config(model, opts.input_size), opts.calib_size)
        batches = calibration_batches(calib, None if opts.dynamic else opts.batch)
        q_model = nncf_quantize(ov_model, batches)
        ov.save_model(q_model, str(path), compress_to_fp16=False)
        manifest["quantization"] = {
            "tool": "nncf.quantize (post-training)",
            "preset": "PERFORMANCE (symmetric)",
            "activations": "per-tensor",
            "weights": "per-channel symmetric",
            "calibration": {"images": calib.source, "n": len(calib.labels)},
        }
    label = f"openvino {precision}"
    runner = openvino_runner(
        path, threads=opts.threads, name=label, execution=execution["INFERENCE_PRECISION_HINT"]
    )
    manifest["parity"] = check_parity(model, runner, opts, precision=precision)
    if opts.latency:
        runners = {label: runner}
        if opts.int8 or opts.half:
            runners["openvino fp32"] = openvino_runner(
                fp32_xml if opts.int8 else path, threads=opts.threads, name="openvino fp32"
            )
        else:
            from dna_zoo.export.runners import torch_runner

            runners["torch eager"] = torch_runner(model, threads=opts.threads)
        manifest["latency"] = measure(runners, opts.batch, sample.shape[1:])
    if opts.int8 or opts.half:
        manifest[precision] = reduced_precision_verdict(
            manifest.get("latency", {}), label, "openvino fp32", manifest["parity"], kind=precision.upper()
        )
    onnx_file.unlink(missing_ok=True)
    return Artifact(path, manifest_path_for(path), manifest, extra_files=[bin_path(path)])
