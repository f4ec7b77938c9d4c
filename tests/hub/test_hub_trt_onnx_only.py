"""An --onnx-only TensorRT artifact (trt.version "not built") is pushed like any other."""

from __future__ import annotations

from typer.testing import CliRunner

from dna_zoo.cli.main import app
from dna_zoo.export import export_artifact

REPO = "acme/tiny-net-trt"


def test_onnx_only_trt_artifact_is_pushed(
    tmp_path, monkeypatch, local_hub, random_weights, tiny_encoding, write_search_result
):
    result = write_search_result(tmp_path / "best.json")
    weights = random_weights(tmp_path / "net.safetensors", "dna_net", arch=tiny_encoding(), num_classes=10)
    art = export_artifact(
        str(result), "trt", tmp_path / "arts", weights=weights, onnx_only=True, latency=False, input_size=32
    )
    assert art.manifest["trt"]["version"] == "not built"
    with local_hub(monkeypatch, tmp_path / "hf") as server:
        args = ["hub", "push", str(result), "--weights", str(weights), "--repo", REPO]
        r = CliRunner().invoke(app, [*args, "--artifacts", str(tmp_path / "arts")])
        assert r.exit_code == 0, r.output
        files = server.state.repos[REPO].head.files
    assert f"trt/not-built/any/{art.path.name}" in files
    assert files[f"trt/not-built/any/{art.path.name}"] == art.path.read_bytes()
