"""`dna export / validate / benchmark` through the real CLI: outputs, and one clear line per bad input."""

import json
import os

import pytest
from typer.testing import CliRunner

from dna_zoo.cli.main import app
from dna_zoo.models import published_encoding

runner = CliRunner()


def one_error_line(r) -> str:
    assert r.exit_code == 1, r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["dna_b", "--format", "onnxx"], "did you mean onnx?"),
        (["dna_b", "--format", "tensort"], "did you mean tensorrt?"),
        (["dna_bb", "--format", "onnx"], "unknown model 'dna_bb'"),
        (["dna_b", "--format", "onnx", "--weights", "missing.safetensors"], "does not exist"),
        (["dna_b", "--format", "onnx", "--int8"], "does not accept --int8"),
        (["dna_b", "--format", "onnx", "--opset", "99"], "opset 99"),
        (["dna_b", "--format", "trt"], "pip install dna-zoo[trt]"),
    ],
)
def test_bad_input_is_one_line(tmp_path, args, expected, files_in):
    out = tmp_path / "out"
    r = runner.invoke(app, ["export", *args, "--out", str(out)])
    assert expected in one_error_line(r)
    assert files_in(out) == []


def test_corrupt_weights(tmp_path, files_in):
    bad = tmp_path / "w.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00garbage")
    r = runner.invoke(app, ["export", "dna_b", "-f", "onnx", "-w", str(bad), "--out", str(tmp_path / "o")])
    assert "not a valid safetensors file" in one_error_line(r)
    assert files_in(tmp_path / "o") == []


def test_unwritable_output(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    r = runner.invoke(app, ["export", "dna_b", "-f", "onnx", "--out", str(blocker / "sub")])
    assert "cannot write to output folder" in one_error_line(r)
    assert blocker.read_text() == "x"


@pytest.mark.slow
def test_existing_artifact_needs_force(tmp_path, lite0_onnx, lite0_weights):
    art = lite0_onnx()
    before = art.path.read_bytes()
    r = runner.invoke(app, ["export", "tf_efficientnet_lite0", "-f", "onnx", "--dynamic",
                            "-w", str(lite0_weights()), "--out", str(art.path.parent)])  # fmt: skip
    assert "--force" in one_error_line(r)
    assert art.path.read_bytes() == before


def test_trt_without_model_and_without_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["export", "--format", "trt"])
    line = one_error_line(r)
    assert "no model named" in line and "dna export dna_b --format trt" in line


@pytest.mark.slow
def test_trt_without_model_exports_latest_search_result(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    enc = published_encoding("dna_a").to_dict()
    old, new = tmp_path / "runs" / "s1" / "best.json", tmp_path / "runs" / "s2" / "best.json"
    for p in (old, new):
        p.parent.mkdir(parents=True)
        p.write_text(json.dumps({"arch": enc, "score": 1.0}))
    os.utime(old, (1, 1))  # s2 is the newest
    args = ["--onnx-only", "--no-latency", "--input-size", "96", "--out", "o"]
    r = runner.invoke(app, ["export", "--format", "trt", *args])
    assert r.exit_code == 0, r.output
    assert "runs/s2/best.json" in r.stdout and "trtexec --onnx=" in r.stdout
    manifest = json.loads(next((tmp_path / "o").glob("*.manifest.json")).read_text())
    # the manifest names the file, never its local path; the encoding it holds is recorded in full
    assert manifest["source"]["model"] == "best.json" and manifest["onnx_only"]
    assert manifest["source"]["arch"] == enc and str(tmp_path) not in json.dumps(manifest)


def test_validate_real_lite0_on_builtin_images(lite0_weights):
    r = runner.invoke(app, ["validate", "tf_efficientnet_lite0", "-w", str(lite0_weights()), "--json"])
    assert r.exit_code == 0, r.output
    acc = json.loads(r.stdout)
    assert acc["n_images"] == 20 and acc["top1"] == pytest.approx(90.0) and acc["top5"] >= acc["top1"]
    assert acc["preprocess"]["interpolation"] == "bicubic" and acc["preprocess"]["crop_pct"] == 0.875


def test_validate_exported_onnx_artifact(lite0_onnx):
    r = runner.invoke(app, ["validate", str(lite0_onnx().path), "--data", "builtin"])
    assert r.exit_code == 0, r.output
    assert "top-1 90.0%" in r.stdout and "onnx" in r.stdout


def test_validate_image_folder_layout(tmp_path, lite0_onnx):
    from dna_zoo.sample_images import builtin_images

    for i, im in enumerate(builtin_images()[:4]):
        d = tmp_path / f"class{i % 2}"
        d.mkdir(exist_ok=True)
        (d / im.path.name).write_bytes(im.path.read_bytes())
    r = runner.invoke(app, ["validate", str(lite0_onnx().path), "--data", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["n_images"] == 4
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no images" in one_error_line(runner.invoke(app, ["validate", "dna_a", "--data", str(empty)]))


@pytest.mark.slow
def test_benchmark_table_json_plot(tmp_path):
    args = [
        "--formats",
        "torch,onnx",
        "--batch",
        "1,2",
        "--rounds",
        "1",
        "--runs",
        "2",
        "--out",
        str(tmp_path),
    ]
    r = runner.invoke(app, ["benchmark", "test_efficientnet", *args, "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    rows = {(x["format"], x["batch"]): x for x in res["rows"]}
    assert set(rows) == {("torch", 1), ("torch", 2), ("onnx", 1), ("onnx", 2)}
    for x in rows.values():
        assert x["median_ms"] > 0 and x["p90_ms"] >= x["median_ms"] and x["threads"] == 2
        assert x["size_bytes"] > 1e5 and x["top1_agreement"] == 1.0 and "top1_accuracy" in x
    assert "random-init" in res["weights_note"]
    assert (tmp_path / "benchmark-test_efficientnet.json").is_file()
    assert (tmp_path / "benchmark-test_efficientnet.png").stat().st_size > 1000
    bad = runner.invoke(app, ["benchmark", "dna_b", "--formats", "torch,onxx", "--out", str(tmp_path)])
    assert "did you mean onnx?" in one_error_line(bad)


@pytest.mark.slow
def test_trt_as_typed_right_after_a_jetson_search(tmp_path, monkeypatch, write_ratings, files_in):
    """`dna export --format trt` after `dna search ... --device jetson`: names the result it took;
    without TensorRT one line pointing at --onnx-only; --onnx-only exports at the searched fp16."""

    monkeypatch.chdir(tmp_path)
    ratings = write_ratings(tmp_path / "runs" / "s1" / "ratings.json", "small")
    r = runner.invoke(app, ["search", "--ratings", str(ratings), "--latency-ms", "20", "--device", "jetson",
                            "--runtime", "tensorrt", "--precision", "fp16", "-q"])  # fmt: skip
    assert r.exit_code == 0, r.output
    best = json.loads((tmp_path / "runs" / "s1" / "best.json").read_text())
    r = runner.invoke(app, ["export", "--format", "trt"])
    assert "runs/s1/best.json" in r.stdout
    line = one_error_line(r)
    assert "pip install dna-zoo[trt]" in line and "--onnx-only" in line and "trtexec line" in line
    assert files_in(tmp_path / "exports") == []
    r = runner.invoke(app, ["export", "--format", "trt", "--onnx-only", "--no-latency"])
    assert r.exit_code == 0, r.output
    manifest = json.loads(next((tmp_path / "exports").glob("*.manifest.json")).read_text())
    assert manifest["onnx_only"] and manifest["source"]["model"] == "best.json"  # by name: no local path
    assert manifest["preprocess"]["input_size"] == [3, best["input_size"], best["input_size"]]
    assert best["predicted_latency"]["precision"] == "fp16"
    assert manifest["precision"] == "fp16" and "--fp16" in manifest["trtexec"]
