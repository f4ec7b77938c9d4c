"""DNA's last-block treatment: the head is the teacher's, the label loss trains, every candidate
is rated by top-1 / cross-entropy, repeatably, and the teacher is left unchanged."""

from __future__ import annotations

import pytest
import timm
import torch

from dna_zoo.errors import ConfigError
from dna_zoo.search.space import small_space
from dna_zoo.search.supernet.data import fashion_mnist_dir, open_dataset
from dna_zoo.search.supernet.last_block import (
    LastBlockConfig,
    LastBlockNet,
    rate_last_block,
    train_last_block,
)
from dna_zoo.search.supernet.teacher import load_teacher
from dna_zoo.weights import save_safetensors

pytestmark = pytest.mark.skipif(
    not (fashion_mnist_dir() / "train-images-idx3-ubyte.gz").is_file(),
    reason="Fashion-MNIST not installed (scripts/setup.sh installs Debian's dataset-fashion-mnist)",
)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    w = save_safetensors(
        timm.create_model("mobilenetv2_050", num_classes=10).state_dict(),
        tmp_path_factory.mktemp("last") / "t.safetensors",
    )
    return load_teacher("mobilenetv2_050", small_space(), weights=w, input_size=32, in_chans=3)


def test_head_is_the_teachers_head(teacher):
    net = LastBlockNet(teacher, small_space()).eval()
    x = open_dataset("builtin", split="val", limit=8).batch(range(8))[0]
    with torch.no_grad():
        got = net.head(teacher.features(x)[-1])
        want = teacher.model(x)
    assert torch.allclose(got, want, atol=1e-5)


def test_label_training_and_rating(teacher):
    space = small_space()
    before = {k: v.clone() for k, v in teacher.model.state_dict().items()}
    train = open_dataset("builtin", split="train", limit=256)
    held = open_dataset("builtin", split="val", limit=128)
    cfg = LastBlockConfig(epochs=1, batch_size=32, bn_batches=1, eval_batches=2, lr=5e-3)
    net, facts = train_last_block(teacher, space, train, cfg)
    assert facts["steps"] == 8 and facts["last_train_loss"] > 0
    # the head moved (it trains with the block), the teacher did not
    assert not torch.equal(net.classifier.weight, teacher.model.classifier.weight)
    after = teacher.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    a = rate_last_block(net, teacher, train, held, cfg)
    b = rate_last_block(net, teacher, train, held, cfg)
    last = len(space.blocks) - 1
    want = {c.key for c in space.block_candidates(last)}
    assert set(a) == want
    assert a == b
    assert all(0.0 <= v["top1"] <= 100.0 and v["loss"] > 0 for v in a.values())
    assert len({round(v["loss"], 6) for v in a.values()}) > len(a) // 2  # candidates really differ


def test_bad_config_is_refused():
    with pytest.raises(ConfigError, match="eval-batches"):
        LastBlockConfig(eval_batches=0)
    with pytest.raises(ConfigError, match="lr"):
        LastBlockConfig(lr=0.0)
