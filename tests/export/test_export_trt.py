"""TensorRT: the --onnx-only path runs here; engine builds need TensorRT + an NVIDIA GPU and skip."""

import importlib.util
import json

import numpy as np
import onnx
import pytest

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
