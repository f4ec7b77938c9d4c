"""INT8: ONNX Runtime static QDQ calibrated on real images, with a measured speed/accuracy verdict."""

import shutil

import onnx
import pytest

from dna_zoo.errors import DataError
from dna_zoo.export import export_artifact
from dna_zoo.sample_images import builtin_images


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("calib")
    for im in builtin_images()[::2]:  # 10 real images, a user's folder
        shutil.copy(im.path, d / im.path.name)
    return d


@pytest.mark.slow
def test_onnx_int8_has_verdict(tmp_path, calib_dir, files_in, lite0_weights):
    a = export_artifact(
        "tf_efficientnet_lite0",
        "onnx-int8",
        tmp_path,
        weights=lite0_weights(),
        calib=str(calib_dir),
        input_size=160,
    )
    m = a.manifest
    assert a.path.name == "tf_efficientnet_lite0.int8.onnx" and m["precision"] == "int8"
    ops = {n.op_type for n in onnx.load(str(a.path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert (
        m["quantization"]["calibration"]["n"] == 10
        and str(calib_dir) in m["quantization"]["calibration"]["images"]
    )
    v = m["int8"]
    for key in (
        "speedup",
        "faster_than_fp32",
        "latency_ms",
        "baseline_latency_ms",
        "top1_agreement",
        "accuracy_ok",
    ):
        assert key in v
    assert v["baseline"] == "onnxruntime fp32" and v["speedup"] > 0
    assert v["ok"] == (v["faster_than_fp32"] and v["accuracy_ok"])
    assert v["verdict"]  # says which it was, in words
    assert m["parity"]["n_images"] == 20 and 0 <= m["parity"]["top1_agreement"] <= 1
    assert set(m["latency"]) >= {"onnxruntime int8", "onnxruntime fp32"}
    assert files_in(tmp_path) == [a.path.name, a.manifest_path.name]  # the fp32 intermediate is gone


def test_empty_calibration_folder_is_an_error(tmp_path, files_in):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    with pytest.raises(DataError, match="no images"):
        export_artifact("dna_a", "onnx-int8", out, calib=str(empty), latency=False)
    assert files_in(out) == []


def test_unreadable_calibration_image_is_an_error(tmp_path, files_in):
    d = tmp_path / "calib"
    d.mkdir()
    (d / "broken.jpg").write_bytes(b"this is not a jpeg")
    with pytest.raises(DataError, match=r"broken\.jpg"):
        export_artifact("dna_a", "onnx-int8", tmp_path / "out", calib=str(d), latency=False)
    assert files_in(tmp_path / "out") == []
