"""Rating: prefix-tree == naive, sharding over ranks, the ratings file, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import timm
import torch
from typer.testing import CliRunner

from dna_zoo.cli.main import app
from dna_zoo.search.ratings import Ratings
from dna_zoo.search.space import paper_space, small_space
from dna_zoo.search.supernet.data import fashion_mnist_dir, open_dataset
from dna_zoo.search.supernet.rate import (
    RateConfig,
    prepare_data,
    rate_run,
    rate_supernet,
    shard_units,
    work_units,
)
from dna_zoo.search.supernet.train import load_supernet, teacher_of_run, train_supernet
from dna_zoo.weights import save_safetensors

pytestmark = pytest.mark.skipif(
    not (fashion_mnist_dir() / "train-images-idx3-ubyte.gz").is_file(),
    reason="Fashion-MNIST not installed (scripts/setup.sh installs Debian's dataset-fashion-mnist)",
)
RATE = RateConfig(batch_size=16, bn_batches=2, eval_batches=2)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # tiny tensors; 2 threads spin-wait on a loaded shared CPU


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    tmp = tmp_path_factory.mktemp("rate")
    w = save_safetensors(
        timm.create_model("mobilenetv2_050", num_classes=10).state_dict(), tmp / "t.safetensors"
    )
    cfg = {"limit": 64, "batch_size": 16, "epochs": 1}
    train_supernet(
        tmp / "run", space="small", teacher="mobilenetv2_050", teacher_weights=w, data="builtin", config=cfg
    )
    return tmp / "run"


@pytest.mark.slow
def test_prefix_tree_equals_naive(run):
    teacher = teacher_of_run(run)
    supernet, _ = load_supernet(run, teacher)
    data = prepare_data(
        teacher,
        open_dataset("builtin", split="train", limit=64),
        open_dataset("builtin", split="val", limit=64),
        RATE,
    )
    prefix, facts = rate_supernet(supernet, data, RATE)
    naive, _ = rate_supernet(supernet, data, RateConfig(**{**RATE.__dict__, "method": "naive"}))
    assert len(prefix) == small_space().num_candidates() == 104 and prefix.keys() == naive.keys()
    for k in prefix:
        assert prefix[k] == pytest.approx(naive[k], rel=1e-6, abs=1e-9), k
    assert len(set(prefix.values())) > 90  # candidates really differ
    raw, _ = rate_supernet(supernet, data, RateConfig(**{**RATE.__dict__, "normalization": "none"}))
    var = facts["teacher_target_variance"]
    assert max(var) / min(var) > 3  # why normalising matters
    k = next(iter(raw))
    assert prefix[k] == pytest.approx(raw[k] / var[int(k[1])], rel=1e-6)
    # the teacher's signal power (for a noise-to-signal ratio) is recorded from the same pass:
    # mean square = variance + squared mean (BN'd stage outputs: means near 0, so power ~ variance)
    power = facts["teacher_target_power"]
    assert len(power) == len(var) == len(supernet.blocks)
    for b, (p, v) in enumerate(zip(power, var, strict=True)):
        mean = float(torch.cat([f[b + 1].float().flatten() for f in data.held_out]).mean())
        assert p == pytest.approx(v + mean**2, rel=1e-3)


def test_units_shard_every_candidate_once_and_balanced():
    units = work_units(paper_space())
    assert sum(u.size for u in units) == paper_space().num_candidates() == 6234
    for ranks in (1, 2, 3, 8):
        shards = shard_units(units, ranks)
        assert sum(len(s) for s in shards) == len(units)
        assert len({(u.block, u.depth, u.first) for s in shards for u in s}) == len(units)
        loads = [sum(u.size for u in s) for s in shards]
        assert max(loads) - min(loads) <= 216  # at most one largest unit apart


@pytest.mark.slow
def test_rate_run_writes_a_ratings_file_and_cli(run, tmp_path):
    out = tmp_path / "ratings.json"
    res = CliRunner().invoke(
        app,
        ["supernet", "rate", str(run), "--out", str(out), "--batch-size", "16", "--bn-batches", "2",
         "--eval-batches", "2", "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    figures = json.loads(res.stdout)
    assert figures["candidates"] == 104 and figures["normalization"] == "teacher_var"
    assert [r["block"] for r in figures["best_per_block"]] == list(range(6))
    r = Ratings.load(out)
    assert r.missing() == [] and r.space.identity == small_space().identity
    assert r.teacher["name"] == "mobilenetv2_050" and r.teacher["stage_map"] == [1, 2, 3, 4, 5, 6, 7]
    assert r.data["held_out"]["split"] == "test" and r.data["bn"]["split"] == "train"
    assert r.meta["method"] == "prefix" and r.meta["checkpoint_done"] and r.input_size == 32
    best = min(r.block(1), key=lambda cl: cl[1])[0]
    assert best.block == 1 and best.depth in (1, 2)
    # bad input: one line, exit 1, the existing ratings file untouched
    before = out.read_bytes()
    bad = (["--normalization", "zscore"], ["--method", "fast"], ["--last-block", "top1"])
    for args in (*bad, ["--data", str(tmp_path / "none")]):
        res = CliRunner().invoke(app, ["supernet", "rate", str(run), "--out", str(out), *args])
        assert res.exit_code == 1 and res.output.startswith("error: ") and res.output.count("\n") == 1, args
    res = CliRunner().invoke(app, ["supernet", "rate", str(tmp_path), "--out", str(out)])
    assert res.exit_code == 1 and "not a supernet run directory" in res.output
    assert out.read_bytes() == before


def test_last_block_rated_by_label(run, tmp_path):
    """DNA's last-block treatment: only the last block's losses change, to a held-out CE."""
    cfg = RateConfig(batch_size=16, bn_batches=2, eval_batches=2)
    plain = rate_run(run, out=tmp_path / "mse.json", config=cfg)
    label = rate_run(
        run, out=tmp_path / "label.json", config=RateConfig(**{**cfg.__dict__, "last_block": "label"})
    )
    last = len(small_space().blocks) - 1
    for b in range(last + 1):
        same = [plain.loss(c) == label.loss(c) for c, _ in plain.block(b)]
        assert all(same) if b < last else not any(same), b
    ce = [loss for _, loss in label.block(last)]
    assert min(ce) > 0 and len(set(ce)) > len(ce) // 2
    facts = Ratings.load(tmp_path / "label.json").meta
    assert facts["last_block"] == "label" and facts["last_block_label"]["steps"] == 4
    lo, hi = facts["last_block_label"]["top1_range"]
    assert 0.0 <= lo <= hi <= 100.0


@pytest.mark.slow
def test_two_ranks_rate_like_one(run, tmp_path):
    """Candidates sharded over 2 gloo ranks give the ratings of a 1-process run."""
    one = rate_run(run, out=tmp_path / "one.json", config=RATE)
    args = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "dna_zoo.cli", "supernet", "rate", str(run), "--out", str(tmp_path / "two.json"),
        "--batch-size", "16", "--bn-batches", "2", "--eval-batches", "2", "--quiet", "--device", "cpu",
    ]  # fmt: skip
    proc = subprocess.run(
        args, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = Ratings.load(tmp_path / "two.json")
    assert two.meta["world_size"] == 2 and two.losses.keys() == one.losses.keys()
    for k, v in one.losses.items():
        assert two.losses[k] == pytest.approx(v, rel=1e-5), k
