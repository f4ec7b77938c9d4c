"""TensorRT: the --onnx-only path runs here; engine builds need TensorRT + an NVIDIA GPU and skip."""

import importlib.util
import json

import numpy as np
import onnx
import pytest
import torch

from dna_zoo.errors import DataError, MissingDependencyError
from dna_zoo.export import export_artifact
from dna_zoo.export.load import load_runner
from dna_zoo.export.trt import EngineError, check_engine_machine
from dna_zoo.io import atomic_write_json

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


@pytest.mark.slow
def test_onnx_only_writes_trt_ready_onnx_and_trtexec_line(tmp_path, files_in):
    a = export_artifact(
        "dna_a",
        "trt",
        tmp_path,
        onnx_only=True,
        half=True,
        dynamic=True,
        max_batch=16,
        latency=False,
        input_size=128,
    )
    m = a.manifest
    assert a.path.name == "dna_a.fp16.trt.onnx" and m["format"] == "engine" and m["precision"] == "fp16"
    onnx.checker.check_model(str(a.path))
    cmd = m["trtexec"]
    assert cmd.startswith("trtexec --onnx=dna_a.fp16.trt.onnx --saveEngine=dna_a.fp16.engine")
    for flag in (
        "--fp16",
        "--minShapes=input:1x3x128x128",
        "--maxShapes=input:16x3x128x128",
        "--memPoolSize=workspace:",
    ):
        assert flag in cmd
    assert m["trt_profile"]["max"] == [16, 3, 128, 128]
    assert set(m["trt"]) >= {"version", "gpu", "compute_capability"}
    assert m["parity"]["passed"]  # the ONNX TensorRT will get is checked through ONNX Runtime
    assert files_in(tmp_path) == [a.path.name, a.manifest_path.name]


def test_trt_options_are_checked(tmp_path, files_in):
    from dna_zoo.errors import ConfigError

    with pytest.raises(ConfigError, match="--dynamic"):
        export_artifact("dna_a", "trt", tmp_path, onnx_only=True, max_batch=8)
    with pytest.raises(ConfigError, match="--half"):
        export_artifact("dna_a", "trt", tmp_path, onnx_only=True, half=True, int8=True)
    assert files_in(tmp_path) == []


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here")
def test_missing_tensorrt_is_one_clear_error(tmp_path, files_in):
    with pytest.raises(MissingDependencyError) as e:
        export_artifact("dna_a", "engine", tmp_path, half=True)
    assert "pip install dna-zoo[trt]" in str(e.value) and "NVIDIA GPU" in str(e.value)
    assert files_in(tmp_path) == []


def test_engine_for_another_machine_is_refused():
    built = {"version": "10.3.0", "gpu": "Orin", "compute_capability": "8.7"}
    check_engine_machine(built, dict(built))
    with pytest.raises(EngineError, match="GPU 'Orin'"):
        check_engine_machine(built, {**built, "gpu": "NVIDIA H200"})
    with pytest.raises(EngineError, match="TensorRT version"):
        check_engine_machine(built, {**built, "version": "10.9.0"})


def test_corrupt_engine_file_is_refused(tmp_path):
    engine = tmp_path / "m.fp16.engine"
    engine.write_bytes(b"\x00" * 256)
    manifest = {"kind": "dna-zoo-artifact", "format": "engine", "files": {engine.name: {"sha256": "0" * 64}}}
    atomic_write_json(tmp_path / (engine.name + ".manifest.json"), manifest)
    with pytest.raises(DataError, match="corrupt"):
        load_runner(engine)


@pytest.mark.trt
@pytest.mark.skipif(
    not HAS_TRT, reason="TensorRT not installed (needs pip install dna-zoo[trt] and an NVIDIA GPU)"
)
def test_build_fp16_engine_and_run(tmp_path):  # pragma: no cover - runs only where TensorRT exists
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    a = export_artifact(
        "dna_a", "trt", tmp_path, half=True, dynamic=True, timing_cache=str(tmp_path / "t.cache")
    )
    assert a.manifest["trt"]["gpu"] == torch.cuda.get_device_name() and a.manifest["parity"]["passed"]
    runner = load_runner(a.path)
    assert runner(np.zeros((3, 3, 224, 224), np.float32)).shape == (3, 1000)
    assert json.loads(a.manifest_path.read_text())["trt"]["version"]


def _tiny_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.SiLU(),
        torch.nn.Conv2d(8, 8, 3, stride=2, padding=1),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 10),
    ).eval()


def _int32_dequantize_inputs(path) -> list[str]:
    g = onnx.load(str(path)).graph
    int32 = {t.name for t in g.initializer if t.data_type == onnx.TensorProto.INT32}
    return [n.input[0] for n in g.node if n.op_type == "DequantizeLinear" and n.input[0] in int32]


def test_trt_int8_onnx_keeps_biases_float(tmp_path):
    """TensorRT's parser rejects int32 DequantizeLinear inputs: the real quantizer is asked for
    float biases on the TensorRT path (the onnx-int8 format keeps ORT's int32 biases)."""
    from dna_zoo.export.format_onnx import write_onnx
    from dna_zoo.export.format_onnx_int8 import quantize_qdq
    from dna_zoo.export.format_trt import write_trt_onnx
    from dna_zoo.export.options import ExportOptions

    model, sample = _tiny_net(), torch.randn(1, 3, 32, 32)
    opts = ExportOptions(int8=True, input_size=32, calib_size=8)
    quant = write_trt_onnx(model, sample, tmp_path / "m.trt.onnx", opts)
    assert quant["bias"] == "float (not quantized)"
    g = onnx.load(str(tmp_path / "m.trt.onnx")).graph
    assert sum(n.op_type == "DequantizeLinear" for n in g.node) > 0  # it is a Q/DQ graph
    assert _int32_dequantize_inputs(tmp_path / "m.trt.onnx") == []
    # the same quantizer with its default (what onnx-int8 uses) does write int32 biases
    write_onnx(model, sample, tmp_path / "fp32.onnx", opts)
    batches = [np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)]
    quantize_qdq(tmp_path / "fp32.onnx", tmp_path / "ort.onnx", batches, symmetric_activations=True)
    assert len(_int32_dequantize_inputs(tmp_path / "ort.onnx")) == 3


def test_trt_fp16_onnx_is_fp16_with_fp32_io(tmp_path):
    """TensorRT 11 builds FP16 only from an fp16 graph; fp32 inputs/outputs are kept."""
    from dna_zoo.export.format_trt import write_trt_onnx
    from dna_zoo.export.onnx_writer import is_fp16_graph
    from dna_zoo.export.options import ExportOptions
    from dna_zoo.export.runners import ort_runner

    model, sample = _tiny_net(), torch.randn(2, 3, 32, 32)
    path = tmp_path / "m.trt.onnx"
    write_trt_onnx(model, sample, path, ExportOptions(half=True, batch=2, input_size=32))
    onnx.checker.check_model(str(path))
    assert is_fp16_graph(path)
    g = onnx.load(str(path)).graph
    assert [i.type.tensor_type.elem_type for i in (*g.input, *g.output)] == [onnx.TensorProto.FLOAT] * 2
    out = ort_runner(path, threads=1)(sample.numpy())
    with torch.no_grad():
        ref = model(sample).numpy()
    assert out.dtype == np.float32 and np.abs(out - ref).max() < 1e-2


@pytest.mark.slow
def test_onnx_only_records_trtexec_per_tensorrt_line_and_not_built(tmp_path):
    a = export_artifact("dna_a", "trt", tmp_path, onnx_only=True, latency=False, input_size=64)
    m = a.manifest
    assert m["trt"]["version"] == "not built" and m["trt"]["gpu"] == "any"
    assert set(m["trtexec_by_tensorrt"]) == {"10.x", "11.x"}
    assert "--noTF32" in m["trtexec"]  # fp32: TF32 off, as the parity rule assumes
    assert "--stronglyTyped" in m["trtexec_by_tensorrt"]["11.x"]
    assert "--stronglyTyped" not in m["trtexec_by_tensorrt"]["10.x"]
    if not HAS_TRT:
        assert m["trtexec"] == m["trtexec_by_tensorrt"]["10.x"]  # JetPack 6 is TensorRT 10
