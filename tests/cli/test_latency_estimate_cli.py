"""`dna latency predict` over several networks, device files and bad input, through the real CLI."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from dna_zoo.cli.main import app
from dna_zoo.search.latency.cache import latency_dir

runner = CliRunner()
BOARD = {
    "name": "cli-board",
    "kind": "soc",
    "peak_gflops": {"fp32": 1500, "fp16": 12000},
    "memory_bandwidth_gbs": 80,
    "runtimes": ["tensorrt"],
    "source": "test data sheet",
}


def invoke(*args: str):
    return runner.invoke(app, list(args))


def board(tmp_path, **changes) -> str:
    d = {k: v for k, v in {**BOARD, **changes}.items() if v is not None}
    p = tmp_path / "board.json"
    p.write_text(json.dumps(d))
    return str(p)


def one_error_line(res) -> str:
    assert res.exit_code != 0
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), res.output
    return lines[0]


def test_predict_several_networks_json(tmp_path):
    enc = tmp_path / "net.json"
    from dna_zoo.zoo import resolve_arch

    enc.write_text(resolve_arch("dna_c").to_json())
    rows = tmp_path / "rows.json"
    rows.write_text(
        json.dumps(
            {
                "name": "tiny",
                "input_size": 32,
                "layers": [["conv", 32, 3, 16, 3, 2, 1, "relu", 1], ["pool", 16, 16], ["fc", 16, 10]],
            }
        )
    )
    res = invoke(
        "latency", "predict", "dna_a", "dna_d", str(enc), str(rows),
        "--device", "jetson-orin-nano", "--runtime", "tensorrt", "--precision", "fp16", "--batch", "2",
        "--input-size", "192", "--json",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert [r["model"] for r in out] == ["dna_a", "dna_d", "dna_c", "tiny"]
    for r in out:
        assert r["latency_ms"] > 0 and r["estimated"] and r["batch"] == 2 and r["input_size"] == 192
        assert r["estimate"]["held_out_error"]["mean_abs_pct_error"] > 0
        assert r["estimate"]["measure_command"].startswith("dna latency build --device jetson-orin-nano")
    assert out[0]["latency_ms"] < out[1]["latency_ms"]
    assert "held-out error" in res.stderr


def test_predict_with_a_device_file(tmp_path):
    res = invoke("latency", "predict", "dna_b", "--device", board(tmp_path), "--precision", "fp16", "--json")
    assert res.exit_code == 0, res.output
    (r,) = json.loads(res.stdout)
    assert r["device"] == "cli-board" and r["estimate"]["device_class"] == "jetson-gpu"


def test_bad_device_file_is_one_line_naming_the_field(tmp_path):
    line = one_error_line(
        invoke("latency", "predict", "dna_b", "--device", board(tmp_path, memory_bandwidth_gbs=-1))
    )
    assert "memory_bandwidth_gbs" in line
    line = one_error_line(invoke("latency", "predict", "dna_b", "--device", board(tmp_path, source=None)))
    assert "'source'" in line and "missing" in line


def test_unknown_precision_and_unlisted_runtime(tmp_path):
    path = board(tmp_path)
    assert "int8" in one_error_line(
        invoke("latency", "predict", "dna_b", "--device", path, "--precision", "int8")
    )
    assert "runtime" in one_error_line(
        invoke("latency", "predict", "dna_b", "--device", path, "--runtime", "onnxruntime")
    )


def test_unexpressible_op_fails_and_nothing_is_written(tmp_path):
    bad = tmp_path / "attn.json"
    bad.write_text(json.dumps({"input_size": 32, "layers": [["attention", 32, 16, 16]]}))
    out = tmp_path / "est.json"
    line = one_error_line(invoke("latency", "predict", "dna_a", str(bad), "--device", "cortex-a76"))
    assert "'attention'" in line
    assert not latency_dir().exists() or not any(latency_dir().rglob("*.json"))
    assert not out.exists()


def test_build_estimate_and_search_with_a_device_file(tmp_path):
    path = board(tmp_path)
    out = tmp_path / "est.json"
    res = invoke(
        "latency",
        "build",
        "--device",
        path,
        "--precision",
        "fp16",
        "--space",
        "small",
        "--estimate",
        "--out",
        str(out),
        "--json",
    )
    assert res.exit_code == 0, res.output
    table = json.loads(out.read_text())
    assert table["estimated"] and table["method"]["estimate"]["device_class"] == "jetson-gpu"
    assert not latency_dir().exists() or not any(latency_dir().rglob("*.json"))  # never cached


def test_search_with_a_device_file_quotes_the_held_out_error(tmp_path, write_ratings):

    ratings = write_ratings(tmp_path / "run" / "ratings.json", "small")
    res = invoke(
        "search", "--ratings", str(ratings), "--latency-ms", "500", "--device", board(tmp_path),
        "--precision", "fp16", "-q",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "held-out error" in res.output and "ESTIMATED" in res.output
    best = json.loads((ratings.parent / "best.json").read_text())
    est = best["predicted_latency"]["estimate"]
    assert est["device_class"] == "jetson-gpu" and est["held_out_error"]["mean_abs_pct_error"] > 0
    assert est["measure_command"].startswith("dna latency build --device cli-board")
