"""Artifacts across pushes: engines for several GPUs accumulate while the weights stay the
same; new weights remove the artifacts made from the old ones, in the same commit."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from dna_zoo.cli.main import app

runner = CliRunner()
REPO = "acme/tiny-net"
ORIN = "trt/10.3.0/nvidia-jetson-agx-orin/model.engine"
A100 = "trt/10.3.0/nvidia-a100-sxm4-80gb/model.engine"


@pytest.fixture
def hub(tmp_path, monkeypatch, local_hub):
    with local_hub(monkeypatch, tmp_path / "hf") as server:
        yield server


@pytest.mark.slow
def test_engines_accumulate_and_new_weights_drop_stale_ones(
    hub, tmp_path, write_search_result, random_weights, tiny_encoding, engine_artifact
):
    result = write_search_result(tmp_path / "best.json")
    w1 = random_weights(tmp_path / "w1.safetensors", "dna_net", seed=1, arch=tiny_encoding(), num_classes=10)
    w2 = random_weights(tmp_path / "w2.safetensors", "dna_net", seed=2, arch=tiny_encoding(), num_classes=10)
    orin = engine_artifact(tmp_path / "orin", version="10.3.0", gpu="NVIDIA Jetson AGX Orin", cc="8.7").parent
    a100 = engine_artifact(tmp_path / "a100", version="10.3.0", gpu="NVIDIA A100-SXM4-80GB", cc="8.0").parent

    def push(weights, *extra):
        r = runner.invoke(
            app, ["hub", "push", str(result), "--weights", str(weights), "--repo", REPO, *extra]
        )
        assert r.exit_code == 0, r.output
        return json.loads(r.stdout) if "--json" in extra else r.output

    push(w1, "--artifacts", str(orin), "--quiet")
    push(w1, "--artifacts", str(a100), "--quiet")  # pushed from another machine: the Orin engine stays
    files = hub.state.repos[REPO].head.files
    assert ORIN in files and A100 in files and ORIN + ".manifest.json" in files
    card = files["README.md"].decode()
    assert f"`{ORIN}`" in card and f"`{A100}`" in card  # the card lists both

    # a dry run of the same weights shows the same card, and would delete nothing
    data = push(w1, "--dry-run", "--out", str(tmp_path / "dry"), "--json")
    assert data["deleted"] == []
    assert (tmp_path / "dry" / "README.md").read_bytes() == files["README.md"]
    assert push(w1, "--json")["committed"] is False  # nothing new

    n = hub.state.n_commits(REPO)
    data = push(w2, "--json")  # new weights, no artifacts: the old engines no longer belong
    assert data["committed"] and sorted(data["deleted"]) == sorted(
        [ORIN, ORIN + ".manifest.json", A100, A100 + ".manifest.json"]
    )
    assert hub.state.n_commits(REPO) == n + 1  # one commit: new weights and deletions together
    files = hub.state.repos[REPO].head.files
    assert not [p for p in files if p.startswith("trt/")]
    assert "Export artifacts" not in files["README.md"].decode()


def test_external_data_travels_with_its_artifact(
    hub, tmp_path, write_search_result, random_weights, tiny_encoding, write_manifest
):
    result = write_search_result(tmp_path / "best.json")
    w = random_weights(tmp_path / "w.safetensors", "dna_net", arch=tiny_encoding(), num_classes=10)
    arts = tmp_path / "arts"
    arts.mkdir()
    (arts / "model.onnx").write_bytes(b"graph referencing model.onnx.data")
    (arts / "model.onnx.data").write_bytes(b"\0" * 1000)
    write_manifest(arts / "model.onnx", format="onnx", precision="fp32", extra_files=["model.onnx.data"])
    args = ["hub", "push", str(result), "--weights", str(w), "--repo", REPO, "--artifacts", str(arts)]
    assert runner.invoke(app, [*args, "--quiet"]).exit_code == 0
    assert "onnx/model.onnx.data" in hub.state.repos[REPO].head.files
    out = tmp_path / "pulled"
    r = runner.invoke(app, ["hub", "pull", REPO, "--artifact", "onnx", "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (out / "onnx").iterdir()) == [
        "model.onnx",
        "model.onnx.data",
        "model.onnx.manifest.json",
    ]
    assert (out / "onnx" / "model.onnx.data").read_bytes() == b"\0" * 1000


def test_with_onnx_exports_checks_and_pushes_the_artifact(
    hub, tmp_path, write_search_result, random_weights, tiny_encoding
):
    """`--with onnx` runs the real exporter (parity against torch on real images), then
    pushes the ONNX file with its manifest; the pulled file runs in ONNX Runtime."""
    import numpy as np
    import timm
    import torch

    from dna_zoo.export.ort import cpu_session

    result = write_search_result(tmp_path / "best.json")
    w = random_weights(tmp_path / "w.safetensors", "dna_net", arch=tiny_encoding(), num_classes=10)
    args = ["hub", "push", str(result), "--weights", str(w), "--repo", REPO, "--with", "onnx", "--quiet"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    files = hub.state.repos[REPO].head.files
    onnx_files = [p for p in files if p.startswith("onnx/") and p.endswith(".onnx")]
    assert len(onnx_files) == 1
    manifest = json.loads(files[onnx_files[0] + ".manifest.json"])
    assert manifest["format"] == "onnx" and manifest["parity"]["passed"] is True
    assert "onnx" in files["README.md"].decode()

    out = tmp_path / "pulled"
    r = runner.invoke(app, ["hub", "pull", REPO, "--artifact", "onnx", "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    onnx_path = next((out / "onnx").glob("*.onnx"))
    sess = cpu_session(onnx_path)  # respects ORT's shared pool if a latency build set it
    model = timm.create_model("dna_net", arch=tiny_encoding(), num_classes=10)
    from dna_zoo.weights import load_weights

    load_weights(model, w).eval()
    shape = [d if isinstance(d, int) else 2 for d in sess.get_inputs()[0].shape]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    assert np.abs(got - expected).max() < 1e-4
