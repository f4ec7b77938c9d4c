"""Stitched end-to-end rating: the teacher's tail is the right one, ratings are real and
repeatable, the supernet is left unchanged, bad networks are refused."""

from __future__ import annotations

import random

import pytest
import timm
import torch

from dna_zoo.errors import ConfigError
from dna_zoo.search.space import small_space
from dna_zoo.search.supernet.data import fashion_mnist_dir, open_dataset
from dna_zoo.search.supernet.stitch import StitchedNet, rate_stitched
from dna_zoo.search.supernet.train import load_supernet, teacher_of_run, train_supernet
from dna_zoo.weights import save_safetensors

pytestmark = pytest.mark.skipif(
    not (fashion_mnist_dir() / "train-images-idx3-ubyte.gz").is_file(),
    reason="Fashion-MNIST not installed (scripts/setup.sh installs Debian's dataset-fashion-mnist)",
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    tmp = tmp_path_factory.mktemp("stitch")
    w = save_safetensors(
        timm.create_model("mobilenetv2_050", num_classes=10).state_dict(), tmp / "t.safetensors"
    )
    cfg = {"limit": 64, "batch_size": 16, "epochs": 1}
    train_supernet(
        tmp / "run", space="small", teacher="mobilenetv2_050", teacher_weights=w, data="builtin", config=cfg
    )
    teacher = teacher_of_run(tmp / "run")
    supernet, _ = load_supernet(tmp / "run", teacher)
    return teacher, supernet


def _nets(n: int, seed: int = 0):
    space = small_space()
    rng = random.Random(seed)
    cands = [list(space.block_candidates(b)) for b in range(len(space.blocks))]
    return [[rng.choice(cs) for cs in cands] for _ in range(n)]


def test_teacher_tail_and_head_give_the_teachers_logits(trained):
    teacher, supernet = trained
    net = StitchedNet(teacher, supernet, _nets(1)[0])
    x = open_dataset("builtin", split="val", limit=8).batch(range(8))[0]
    with torch.no_grad():
        want = teacher.model(x)
        got = net.head(teacher.features(x)[-1])
    assert torch.allclose(got, want, atol=1e-5)


def test_rate_stitched_is_repeatable_and_leaves_the_supernet_alone(trained):
    teacher, supernet = trained
    before = {k: v.clone() for k, v in supernet.state_dict().items()}
    calib = open_dataset("builtin", split="train", limit=64)
    held = open_dataset("builtin", split="val", limit=100)
    nets = _nets(4)
    a = rate_stitched(teacher, supernet, nets, calib, held, bn_batches=2, batch_size=16, eval_batch_size=32)
    b = rate_stitched(teacher, supernet, nets, calib, held, bn_batches=2, batch_size=16, eval_batch_size=32)
    assert [r["top1"] for r in a] == [r["top1"] for r in b]
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], rel=1e-6)
    assert all(0.0 <= r["top1"] <= 100.0 and r["loss"] > 0 for r in a)
    assert len({round(r["loss"], 6) for r in a}) == 4  # the networks really differ
    after = supernet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN stats of the supernet untouched


def test_distillation_finetune_changes_the_rating_repeatably(trained):
    teacher, supernet = trained
    before = {k: v.clone() for k, v in supernet.state_dict().items()}
    teacher_before = {k: v.clone() for k, v in teacher.model.state_dict().items()}
    flags = [p.requires_grad for p in teacher.model.parameters()]
    calib = open_dataset("builtin", split="train", limit=64)
    held = open_dataset("builtin", split="val", limit=100)
    nets = _nets(2)
    kw = {"bn_batches": 2, "batch_size": 16, "eval_batch_size": 50}
    plain = rate_stitched(teacher, supernet, nets, calib, held, **kw)
    a = rate_stitched(teacher, supernet, nets, calib, held, finetune_steps=6, finetune_lr=3e-3, **kw)
    b = rate_stitched(teacher, supernet, nets, calib, held, finetune_steps=6, finetune_lr=3e-3, **kw)
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], rel=1e-6)
    assert all(abs(x["loss"] - y["loss"]) > 1e-6 for x, y in zip(plain, a, strict=True))
    assert all(torch.equal(before[k], v) for k, v in supernet.state_dict().items())
    assert all(torch.equal(teacher_before[k], v) for k, v in teacher.model.state_dict().items())
    assert [p.requires_grad for p in teacher.model.parameters()] == flags
    with pytest.raises(ConfigError, match="finetune"):
        rate_stitched(teacher, supernet, nets, calib, held, finetune_steps=-1, **kw)


def test_bn_statistics_are_re_estimated_on_the_student_layers_only(trained):
    teacher, supernet = trained
    teacher_stats = {k: v.clone() for k, v in teacher.model.state_dict().items()}
    net = StitchedNet(teacher, supernet, _nets(1)[0])
    x = open_dataset("builtin", split="train", limit=32).batch(range(32))[0]
    inputs = [teacher.features(x, upto=0)[0]]
    bn = next(m for m in net.student.modules() if isinstance(m, torch.nn.BatchNorm2d))
    old = bn.running_mean.clone()
    net.recalibrate(inputs)
    assert not torch.allclose(bn.running_mean, old) and not net.student.training
    assert all(torch.equal(v, teacher.model.state_dict()[k]) for k, v in teacher_stats.items())


def test_a_network_of_the_wrong_length_is_refused(trained):
    teacher, supernet = trained
    with pytest.raises(ConfigError, match="blocks"):
        StitchedNet(teacher, supernet, _nets(1)[0][:-1])
