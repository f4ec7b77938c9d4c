"""ONNX export: real ONNX Runtime sessions, parity with torch on the 20 real ImageNet images."""

import json

import numpy as np
import onnx
import pytest
import torch

from dna_zoo.errors import DataError, OutputExistsError
from dna_zoo.export import export_artifact, read_manifest
from dna_zoo.export.inputs import data_config, image_set
from dna_zoo.export.load import load_runner
from dna_zoo.export.runners import ort_session
from dna_zoo.io import sha256_file
from dna_zoo.zoo import build_model


@pytest.fixture(scope="module")
def art(lite0_onnx):
    return lite0_onnx()


@pytest.fixture(scope="module")
def lite0(lite0_weights):
    return build_model("tf_efficientnet_lite0", weights=lite0_weights())


def test_manifest_records_everything(art, lite0_weights):
    m = art.manifest
    assert art.path.name == "tf_efficientnet_lite0.onnx" and art.path.is_file()
    assert json.loads(art.manifest_path.read_text()) == json.loads(json.dumps(m, default=str))
    assert m["format"] == "onnx" and m["precision"] == "fp32" and m["opset"] == 17
    assert m["sha256"] == sha256_file(art.path)
    assert m["shapes"]["input"]["shape"] == ["batch", 3, 224, 224]
    assert m["dynamic_axes"]["input"] == {"0": "batch"} or m["dynamic_axes"]["input"] == {0: "batch"}
    assert m["source"]["weights"]["sha256"] == sha256_file(lite0_weights())
    for lib in ("torch", "timm", "onnx", "onnxruntime"):
        assert lib in m["versions"]
    assert m["preprocess"]["mean"] == [0.5, 0.5, 0.5]


def test_parity_on_real_images(art):
    p = art.manifest["parity"]
    assert p["passed"] and p["n_images"] == 20 and "ImageNet" in p["images"]
    assert p["max_abs_diff"] <= 1e-4 and p["max_abs_logit"] > 5  # real logits, not a vacuous check
    assert p["top1_agreement"] == 1.0
    assert p["top1_accuracy_torch"] == pytest.approx(18 / 20)  # real Lite0 on the real images


def test_single_checked_file_nothing_else(art, files_in):
    onnx.checker.check_model(str(art.path), full_check=True)
    assert files_in(art.path.parent) == [
        "tf_efficientnet_lite0.onnx",
        "tf_efficientnet_lite0.onnx.manifest.json",
    ]


@pytest.mark.parametrize("batch", [1, 3])
def test_dynamic_batch_matches_torch(art, lite0, batch):
    images = image_set("builtin", data_config(lite0), limit=batch)
    sess = ort_session(art.path)
    out = sess.run(None, {"input": images.x})[0]
    with torch.inference_mode():
        ref = lite0(torch.tensor(images.x)).numpy()
    assert out.shape == (batch, 1000)
    assert np.abs(out - ref).max() < 1e-4


@pytest.mark.slow
def test_static_batch_zoo_model(tmp_path):
    a = export_artifact("dna_a", "onnx", tmp_path, batch=2, input_size=128, latency=False)
    assert a.manifest["shapes"]["input"]["shape"] == [2, 3, 128, 128] and a.manifest["dynamic_axes"] == {}
    assert a.manifest["parity"]["passed"] and a.manifest["parity"]["max_abs_logit"] > 0.5
    assert "random init" in a.manifest["source"]["weights_note"]
    assert ort_session(a.path).get_inputs()[0].shape == [2, 3, 128, 128]
    assert load_runner(a.path)(np.zeros((3, 3, 128, 128), np.float32)).shape == (3, 1000)  # padded chunks


def test_existing_artifact_is_kept_without_force(art, lite0_weights):
    before = sha256_file(art.path)
    with pytest.raises(OutputExistsError, match="--force"):
        export_artifact(
            "tf_efficientnet_lite0", "onnx", art.path.parent, weights=lite0_weights(), dynamic=True
        )
    assert sha256_file(art.path) == before and read_manifest(art.path)["sha256"] == before


def test_corrupt_onnx_is_refused(art, tmp_path):
    bad = tmp_path / art.path.name
    data = bytearray(art.path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = b"\xff" * 64
    bad.write_bytes(bytes(data))
    (tmp_path / art.manifest_path.name).write_text(art.manifest_path.read_text())
    with pytest.raises(DataError, match="sha256"):
        load_runner(bad)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not an onnx file")
    with pytest.raises(DataError, match="cannot load"):
        ort_session(junk)
