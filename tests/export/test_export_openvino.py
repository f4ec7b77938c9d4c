"""OpenVINO IR fp32 and INT8 (NNCF), checked against torch on the real images."""

import json

import numpy as np
import pytest

pytest.importorskip("openvino", reason="OpenVINO not installed (pip install 'dna-zoo[openvino]')")

from dna_zoo.export import export_artifact
from dna_zoo.export.load import load_runner


@pytest.mark.slow
def test_openvino_fp32_parity(tmp_path, files_in, lite0_weights):
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


@pytest.mark.slow
def test_openvino_int8_nncf_cli_json(tmp_path, files_in, lite0_weights):
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


def test_openvino_bf16_execution_recorded_and_reloaded(tmp_path, files_in, lite0_weights):
    import openvino as ov

    from dna_zoo.export.format_openvino import cpu_has_bf16

    if not cpu_has_bf16(ov):
        with pytest.raises(Exception, match="bf16"):
            export_artifact("tf_efficientnet_lite0", "openvino", tmp_path, weights=lite0_weights(), half=True)
        assert files_in(tmp_path) == []
        pytest.skip("this CPU has no bf16: the refusal was checked instead")
    a = export_artifact(
        "tf_efficientnet_lite0", "openvino", tmp_path, weights=lite0_weights(), input_size=160, half=True
    )
    m = a.manifest
    assert a.path.name == "tf_efficientnet_lite0.bf16.xml" and m["precision"] == "bf16"
    assert m["runtime"]["openvino"]["INFERENCE_PRECISION_HINT"] == "bf16"
    p = m["parity"]
    assert p["passed"] and p["top1_agreement"] >= 0.99 and "agreement" in p["rule"]
    assert 0 < p["max_abs_diff"] < 0.2 * p["max_abs_logit"]  # computed in bf16: close, not bit-equal
    v = m["bf16"]
    assert v["baseline"] == "openvino fp32" and v["speedup"] is not None
    # the reloaded artifact computes in bf16 again, as its manifest says
    from dna_zoo.export.runners import openvino_runner

    x = np.random.default_rng(0).standard_normal((1, 3, 160, 160)).astype(np.float32)
    again = load_runner(a.path)(x)
    assert np.array_equal(again, openvino_runner(a.path, execution="bf16")(x))
    assert not np.array_equal(again, openvino_runner(a.path, execution="f32")(x))
