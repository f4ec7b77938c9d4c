"""OpenVINO IR fp32 and INT8 (NNCF), checked against torch on the real images."""

import json

import pytest
from export_util import files_in, lite0_weights

pytest.importorskip("openvino", reason="OpenVINO not installed (pip install 'dna-zoo[openvino]')")

from dna_zoo.export import export_artifact
from dna_zoo.export.runners import load_runner

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_openvino_fp32_parity(tmp_path):
    a = export_artifact(
        "tf_efficientnet_lite0", "openvino", tmp_path, weights=lite0_weights(), input_size=160, latency=False
    )
    m = a.manifest
    assert a.path.suffix == ".xml" and a.path.with_suffix(".bin").is_file()
    assert set(m["files"]) == {a.path.name, a.path.with_suffix(".bin").name}
    assert (
        m["parity"]["passed"] and m["parity"]["max_abs_diff"] <= 1e-4 and m["parity"]["top1_agreement"] == 1
    )
    assert m["runtime"]["openvino"]["INFERENCE_PRECISION_HINT"] == "f32"
    assert files_in(tmp_path) == sorted([a.path.name, a.path.with_suffix(".bin").name, a.manifest_path.name])
    assert load_runner(a.path).static_batch == 1


def test_openvino_int8_nncf_cli_json(tmp_path):
    pytest.importorskip("nncf", reason="NNCF not installed (pip install 'dna-zoo[openvino]')")
    from typer.testing import CliRunner

    from dna_zoo.cli.main import app

    args = [
        "-w",
        str(lite0_weights()),
        "--int8",
        "--calib-size",
        "10",
        "--input-size",
        "160",
        "--out",
        str(tmp_path),
    ]
    r = CliRunner().invoke(app, ["export", "tf_efficientnet_lite0", "--format", "openvino", *args, "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)  # NNCF's progress bars must not leak into --json output
    m = out["manifest"]
    assert out["path"].endswith("tf_efficientnet_lite0.int8.xml") and m["precision"] == "int8"
    assert m["quantization"]["activations"] == "per-tensor"
    v = m["int8"]
    assert v["baseline"] == "openvino fp32"
    assert {"speedup", "faster_than_fp32", "accuracy_ok", "verdict"} <= set(v)
    names = [
        "tf_efficientnet_lite0.int8.bin",
        "tf_efficientnet_lite0.int8.xml",
        "tf_efficientnet_lite0.int8.xml.manifest.json",
    ]
    assert files_in(tmp_path) == names
