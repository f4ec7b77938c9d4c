"""`dna hub release FOLDER` end to end against the local test Hub, with checkpoints written in
the authors' original format (random weights, ``module.`` keys, EMA weights)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dna_zoo.cli.main import app
from dna_zoo.sample_images import has_imagenet_images
from dna_zoo.weights import read_state_dict, save_safetensors

runner = CliRunner()
NAMES = ("dna_a", "dna_b", "dna_c", "dna_d")
FAST = ["--formats", "onnx", "--no-latency", "--min-top1", "0"]  # random weights: no accuracy to check


@pytest.fixture
def original_checkpoint(random_weights):
    """A checkpoint in the authors' original format (``.pth.tar``, ``state_dict``, ``module.``)."""
    return lambda *a, **kw: _original_checkpoint(random_weights, *a, **kw)


def _original_checkpoint(random_weights, folder: Path, name: str, seed: int, arch: str | None = None) -> Path:
    """``DNA_x.pth.tar`` as the authors' training script saved it: weights under ``module.``."""
    sd = read_state_dict(random_weights(folder / f"{name}.safetensors", arch or name, seed=seed))
    ckpt = {
        "epoch": 499,
        "state_dict": {f"module.{k}": torch.zeros_like(v) for k, v in sd.items()},
        "state_dict_ema": {f"module.{k}": v for k, v in sd.items()},
    }
    path = folder / f"DNA_{name[-1]}.pth.tar"
    torch.save(ckpt, path)
    (folder / f"{name}.safetensors").unlink()
    return path


def _error_line(r) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error: "), r.output
    return lines[0]


def test_missing_checkpoint_is_one_line_before_any_work(tmp_path, original_checkpoint):
    for i, name in enumerate(NAMES[:3]):
        original_checkpoint(tmp_path, name, seed=i)
    line = _error_line(runner.invoke(app, ["hub", "release", str(tmp_path), "--dry-run", *FAST]))
    assert "DNA_d.pth.tar" in line and "all four" in line
    assert not (tmp_path / "release").exists()


@pytest.mark.slow
def test_checkpoint_of_another_architecture_is_refused(tmp_path, original_checkpoint):
    for i, name in enumerate(NAMES):
        original_checkpoint(tmp_path, name, seed=i, arch="dna_c" if name == "dna_a" else None)
    line = _error_line(runner.invoke(app, ["hub", "release", str(tmp_path), "--dry-run", *FAST]))
    assert "DNA_a.pth.tar" in line or "dna_a" in line
    assert not (tmp_path / "release" / "dna_a" / "upload").exists()


@pytest.mark.slow
@pytest.mark.skipif(not has_imagenet_images(), reason="no labelled built-in ImageNet images")
def test_random_weights_are_refused_as_chance_level(tmp_path, original_checkpoint):
    for i, name in enumerate(NAMES):
        original_checkpoint(tmp_path, name, seed=i)
    args = ["hub", "release", str(tmp_path), "--dry-run", "--formats", "onnx", "--no-latency"]
    line = _error_line(runner.invoke(app, args))
    assert "refusing DNA_a.pth.tar" in line and "chance" in line
    assert not (tmp_path / "release" / "dna_a" / "artifacts").exists()


@pytest.mark.slow
def test_release_dry_run_then_push_then_timm_loads_it_in_a_fresh_process(
    tmp_path, original_checkpoint, monkeypatch, local_hub, reference_output
):
    folder = tmp_path / "ckpts"
    folder.mkdir()
    for i, name in enumerate(NAMES):
        original_checkpoint(folder, name, seed=i)
    with local_hub(monkeypatch, tmp_path / "hf_push") as server:
        r = runner.invoke(app, ["hub", "release", str(folder), "--dry-run", *FAST, "--json"])
        assert r.exit_code == 0, r.output
        for m in json.loads(r.stdout):
            up = Path(m["pushed"]["out"])
            assert {"README.md", "config.json", "model.safetensors"} <= {p.name for p in up.iterdir()}
            assert any(p.suffix == ".onnx" for p in up.rglob("*"))
        assert server.state.repos == {}  # nothing uploaded
        r = runner.invoke(app, ["hub", "release", str(folder), *FAST, "--json"])
        assert r.exit_code == 0, r.output
        released = json.loads(r.stdout)
        assert all({"convert", "check", "export onnx"} <= set(m["resumed"]) for m in released)  # resumed
        assert set(server.state.repos) == {f"dna-zoo/{n}.in1k" for n in NAMES}
        commits = {k: server.state.n_commits(k) for k in server.state.repos}
        r = runner.invoke(app, ["hub", "release", str(folder), *FAST])
        assert r.exit_code == 0, r.output
        assert {k: server.state.n_commits(k) for k in server.state.repos} == commits  # nothing changed

        x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        torch.save(x, tmp_path / "x.pt")
        script = textwrap.dedent(
            f"""
            import torch, timm, dna_zoo
            x = torch.load({str(tmp_path / "x.pt")!r})
            with torch.no_grad():
                y = timm.create_model("dna_b", pretrained=True).eval()(x)
            torch.save(y, {str(tmp_path / "y.pt")!r})
            """
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
        env.update(HF_ENDPOINT=server.endpoint, HF_HOME=str(tmp_path / "fresh"), HF_HUB_DISABLE_TELEMETRY="1")
        cmd = [sys.executable, "-c", script]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = torch.load(folder / "DNA_b.pth.tar")
    ema = {k[len("module.") :]: v for k, v in ckpt["state_dict_ema"].items()}
    ref = reference_output("dna_b", save_safetensors(ema, tmp_path / "ref.safetensors"), x)
    torch.testing.assert_close(torch.load(tmp_path / "y.pt"), ref, rtol=0, atol=0)
