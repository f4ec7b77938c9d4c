"""Supernet training: loss goes down, 2-process data parallel == 1 process, kill -9 + resume,
corrupt checkpoints, and bad input through the CLI (one line, exit 1, run files untouched)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import timm
import torch
from typer.testing import CliRunner

from dna_zoo.cli.main import app
from dna_zoo.io import sha256_file
from dna_zoo.search.space import small_space
from dna_zoo.search.supernet.data import fashion_mnist_dir, open_dataset
from dna_zoo.search.supernet.model import PathSampler, Supernet
from dna_zoo.search.supernet.run import RunDir
from dna_zoo.search.supernet.teacher import Teacher
from dna_zoo.search.supernet.train import TrainConfig, block_losses, build_optimizer, train_supernet
from dna_zoo.weights import save_safetensors

pytestmark = pytest.mark.skipif(
    not (fashion_mnist_dir() / "train-images-idx3-ubyte.gz").is_file(),
    reason="Fashion-MNIST not installed (scripts/setup.sh installs Debian's dataset-fashion-mnist)",
)

TEACHER = "mobilenetv2_050"
#: 96 images, global batch 16 -> 6 steps per epoch, 12 steps; checkpoints at 4, 6 (epoch), 8, 12
REF = {
    "limit": 96,
    "batch_size": 16,
    "epochs": 2,
    "ckpt_every": 4,
    "log_every": 1,
    "opt": "sgd",
    "lr": 0.05,
    "accum_steps": 2,
}
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny tensors: a second thread does not help, and on a shared, loaded CPU OpenMP's
    # spin-waiting makes 2-thread steps 10x slower. Subprocesses get OMP_NUM_THREADS=1 too.
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def teacher_weights(tmp_path_factory):
    torch.manual_seed(0)
    model = timm.create_model(TEACHER, num_classes=10)
    return save_safetensors(model.state_dict(), tmp_path_factory.mktemp("teacher") / "t.safetensors")


@pytest.fixture(scope="module")
def ref_run(tmp_path_factory, teacher_weights):
    """An uninterrupted single-process run (2 accumulation steps of 8 images per step)."""
    out = tmp_path_factory.mktemp("runs") / "ref"
    torch.set_num_threads(1)
    res = train_supernet(
        out, space="small", teacher=TEACHER, teacher_weights=teacher_weights, data="builtin", config=REF
    )
    assert res.steps == res.total_steps == 12 and res.teacher_passes == 12 * 2
    return out


def _final_params(run) -> dict[str, torch.Tensor]:
    rd = RunDir(run)
    state = rd.load_checkpoint(rd.space())
    assert state is not None and state["done"]
    names = {n for n, _ in Supernet(small_space(), [8, 16, 16, 32, 48, 80, 160]).named_parameters()}
    return {k: v for k, v in state["supernet"].items() if k in names}


def _tree_digest(path) -> dict[str, tuple[str, int]]:
    return {
        str(p.relative_to(path)): (sha256_file(p), p.stat().st_mtime_ns)
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


@pytest.mark.slow
def test_training_steps_decrease_every_block_loss(teacher_weights):
    t = Teacher(timm.create_model(TEACHER, num_classes=10), small_space(), input_size=32)
    x, _ = open_dataset("builtin", split="train", limit=32).batch(range(32))
    feats = [f.contiguous(memory_format=torch.channels_last) for f in t.features(x)]
    torch.manual_seed(0)
    sn = Supernet(small_space(), t.stage_channels).train().to(memory_format=torch.channels_last)
    opt = build_optimizer(sn, TrainConfig(lr=0.01))
    sampler = PathSampler(len(small_space().ops), "fair", 0)
    fixed = PathSampler(len(small_space().ops), "uniform", 7)

    def fixed_losses():
        with torch.no_grad():
            return [float(v) for v in block_losses(sn, feats, fixed, 0, normalize=True)[1]]

    before = fixed_losses()
    for step in range(12):
        loss, _ = block_losses(sn, feats, sampler, step, normalize=True)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    after = fixed_losses()
    ratios = [a / b for a, b in zip(after, before, strict=True)]
    assert max(ratios) < 1.0 and sum(ratios) / len(ratios) < 0.9, (before, after)


@pytest.mark.slow
def test_two_process_gloo_matches_one_process(ref_run, teacher_weights, tmp_path):
    """torchrun, 2 CPU processes x 8 images == 1 process x 2 accumulation steps of 8 images."""
    out = tmp_path / "ddp"
    args = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "dna_zoo.cli", "supernet", "train", "--space", "small", "--teacher", TEACHER,
        "--teacher-weights", str(teacher_weights), "--data", "builtin", "--out", str(out), "--quiet",
        "--accum-steps", "1", "--device", "cpu",
    ]  # fmt: skip
    for k, v in REF.items():
        if k != "accum_steps":
            args += [f"--{k.replace('_', '-')}", str(v)]
    proc = subprocess.run(args, capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    desc = RunDir(out).read()
    assert desc["world_size"] == 2 and desc["total_steps"] == 12
    ref, ddp = _final_params(ref_run), _final_params(out)
    assert ref.keys() == ddp.keys()
    for k in ref:
        torch.testing.assert_close(ddp[k], ref[k], atol=2e-5, rtol=1e-4, msg=k)
    rows = RunDir(out).log_rows()
    assert [r["step"] for r in rows] == list(range(1, 13))  # rank 0 logs, once per step


@pytest.mark.slow
def test_kill_9_then_resume_finishes_like_an_uninterrupted_run(ref_run, teacher_weights, tmp_path):
    out = tmp_path / "killed"
    script = textwrap.dedent(
        f"""
        import json, os, signal
        from dna_zoo.search.supernet.train import train_supernet
        def on_step(step, losses):
            if step == 10:  # checkpoints at 4, 6 (epoch end) and 8: steps 9-10 are lost
                os.kill(os.getpid(), signal.SIGKILL)
        train_supernet({str(out)!r}, space="small", teacher={TEACHER!r},
                       teacher_weights={str(teacher_weights)!r}, data="builtin",
                       config=json.loads({json.dumps(REF)!r}), on_step=on_step)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=ENV, timeout=300
    )
    assert proc.returncode == -9, proc.stderr[-3000:]
    rd = RunDir(out)
    assert rd.latest()["step"] == 8 and not rd.latest()["done"]
    assert max(r["step"] for r in rd.log_rows()) == 10

    res = CliRunner().invoke(app, ["supernet", "train", "--resume", str(out), "--json"])
    assert res.exit_code == 0, res.output
    figures = json.loads(res.stdout)
    assert figures["resumed_from"] == 8 and figures["steps"] == figures["total_steps"] == 12
    assert figures["teacher_passes"] == (12 - 8) * 2  # only the lost steps were redone
    assert [r["step"] for r in rd.log_rows()] == list(range(1, 13))  # each step logged once
    ref, resumed = _final_params(ref_run), _final_params(out)
    for k in ref:
        torch.testing.assert_close(resumed[k], ref[k], atol=1e-6, rtol=1e-5, msg=k)
    # resuming a finished run does nothing and changes nothing
    before = _tree_digest(out)
    assert train_supernet(out, resume=True).steps == 12
    assert _tree_digest(out) == before


@pytest.mark.slow
def test_corrupt_checkpoint_is_reported_and_kept(ref_run, tmp_path):
    run = tmp_path / "corrupt"
    shutil.copytree(ref_run, run)
    ckpt = run / "checkpoints" / RunDir(run).latest()["file"]
    data = bytearray(ckpt.read_bytes())
    data[len(data) // 2] ^= 0xFF
    ckpt.write_bytes(bytes(data))
    before = _tree_digest(run)
    res = CliRunner().invoke(app, ["supernet", "train", "--resume", str(run)])
    assert res.exit_code == 1
    assert (
        res.output.count("\n") == 1 and "is corrupt (sha256" in res.output and "not overwritten" in res.output
    )
    assert _tree_digest(run) == before


def _invoke(*args):
    return CliRunner().invoke(app, ["supernet", "train", *map(str, args)])


def test_bad_input_is_one_line_and_leaves_runs_untouched(ref_run, teacher_weights, tmp_path):
    common = ["--space", "small", "--teacher", TEACHER, "--teacher-weights", teacher_weights]
    before = _tree_digest(ref_run)

    res = _invoke(*common, "--data", tmp_path / "no-such-folder", "--out", tmp_path / "a")
    assert res.exit_code == 1 and res.output.startswith("error: data path") and res.output.count("\n") == 1
    assert not (tmp_path / "a").exists()

    res = _invoke(
        "--space", "small", "--teacher", "mobilenetv2_05", "--data", "builtin", "--out", tmp_path / "b"
    )
    assert (
        res.exit_code == 1 and "unknown model 'mobilenetv2_05'" in res.output and "did you mean" in res.output
    )
    assert not (tmp_path / "b").exists()

    resnet = save_safetensors(timm.create_model("resnet18").state_dict(), tmp_path / "r.safetensors")
    res = _invoke(
        "--space", "small", "--teacher", "resnet18", "--teacher-weights", resnet,
        "--data", "builtin", "--out", tmp_path / "c",
    )  # fmt: skip
    assert res.exit_code == 1 and "resnet18 does not fit space 'small'" in res.output
    assert not (tmp_path / "c").exists()

    # a new run into an existing run directory, and a resume with another space: refused
    res = _invoke(*common, "--data", "builtin", "--out", ref_run)
    assert res.exit_code == 1 and "already exists" in res.output
    res = _invoke("--resume", ref_run, "--space", "default")
    assert res.exit_code == 1 and "is a run of space 'small'" in res.output and res.output.count("\n") == 1
    res = _invoke("--resume", ref_run, "--epochs", "5")
    assert res.exit_code == 1 and "options ['epochs'] differ" in res.output
    res = _invoke(*common, "--data", "builtin", "--out", tmp_path / "d", "--device", "nonsense")
    assert res.exit_code == 1 and "unknown device 'nonsense'" in res.output
    assert not (tmp_path / "d").exists()
    res = _invoke("--resume", tmp_path / "nothing")
    assert res.exit_code == 1 and "does not exist" in res.output
    assert _tree_digest(ref_run) == before
