"""Retraining a searched net on the real built-in data: weights load back, resume, KD."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dna_zoo.cli.main import app
from dna_zoo.errors import ConfigError
from dna_zoo.search.retrain import RetrainConfig, load_retrained, retrain, zero_init_residuals
from dna_zoo.weights import read_state_dict

pytestmark = pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").is_file(),
    reason="the built-in Fashion-MNIST (Debian dataset-fashion-mnist) is not installed",
)

QUICK = dict(batch_size=16, max_steps_per_epoch=3, eval_max_batches=1, checkpoint_every=2, lr=1e-3)


@pytest.fixture(scope="module")
def data():
    from dna_zoo.search.retrain import training_data

    return training_data("builtin", input_size=32)


@pytest.mark.slow
def test_retrain_writes_weights_the_zoo_loads(data, tmp_path, tiny_net):
    train, val, info = data
    assert info["num_classes"] == 10 and len(train) == 60000 and len(val) == 10000 and info["in_chans"] == 3
    res = retrain(
        tiny_net, train_set=train, eval_set=val, num_classes=10, in_chans=3, out_dir=tmp_path,
        config=RetrainConfig(epochs=1, **QUICK), data_info=info,
    )  # fmt: skip
    assert res.steps == 3 and 0.0 <= res.top1 <= 100.0 and res.kept in ("model", "ema")
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["architecture"] == "dna_net" and cfg["num_classes"] == 10
    assert cfg["dna_zoo"]["metrics"]["top1"] == res.top1
    model = load_retrained(tmp_path)
    sd = read_state_dict(tmp_path / "model.safetensors")
    own = model.state_dict()
    assert set(sd) == set(own) and all(torch.equal(sd[k], own[k]) for k in sd)
    x = torch.stack([val[i][0] for i in range(8)])
    assert model(x).shape == (8, 10)
    # the stored weights are trained: not the zero-initialised classifier any more
    assert sd["classifier.weight"].abs().sum() > 0


def test_training_data_records_the_datas_own_normalisation(data):
    from dna_zoo.search.supernet.data import FASHION_MNIST_CLASSES, FASHION_MNIST_MEAN, FASHION_MNIST_STD

    _, _, info = data
    assert info["name"] == "fashion-mnist" and info["classes"] == list(FASHION_MNIST_CLASSES)
    assert tuple(info["mean"]) == (FASHION_MNIST_MEAN,) * 3 and tuple(info["std"]) == (FASHION_MNIST_STD,) * 3
    assert info["identity"]["kind"] == "fashion-mnist" and info["identity"]["split"] == "train"


def test_resume_after_a_crash_gives_the_same_weights(data, tmp_path, tiny_net):
    train, val, _ = data
    cfg = RetrainConfig(epochs=2, **{**QUICK, "max_steps_per_epoch": 2, "ema_decay": None})
    kw = dict(eval_set=val, num_classes=10, in_chans=3, config=cfg)
    full = retrain(tiny_net, train_set=train, out_dir=tmp_path / "full", **kw)

    class Crash(torch.utils.data.Dataset):  # the process dies while reading batch 4
        def __init__(self):
            self.calls = 0

        def __len__(self):
            return len(train)

        def __getitem__(self, i):
            self.calls += 1
            if self.calls > 3 * cfg.batch_size:
                raise KeyboardInterrupt
            return train[i]

    with pytest.raises(KeyboardInterrupt):
        retrain(tiny_net, train_set=Crash(), out_dir=tmp_path / "run", **kw)
    assert not (tmp_path / "run" / "model.safetensors").exists()
    with pytest.raises(ConfigError, match="exists"):
        retrain(tiny_net, train_set=train, out_dir=tmp_path / "run", resume=False, **kw)
    resumed = retrain(tiny_net, train_set=train, out_dir=tmp_path / "run", **kw)
    assert resumed.resumed_from_step == 2 and resumed.steps == full.steps == 4
    a, b = read_state_dict(full.weights), read_state_dict(resumed.weights)
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)


@pytest.mark.slow
def test_cli_retrain_with_kd_teacher(data, tmp_path, tiny_net):
    import timm

    from dna_zoo.weights import save_safetensors

    teacher = timm.create_model("dna_net", arch=tiny_net, num_classes=10, in_chans=3)
    save_safetensors(teacher.state_dict(), tmp_path / "teacher.safetensors")
    arch_file = tmp_path / "best.json"
    arch_file.write_text(json.dumps({"arch": tiny_net.to_dict()}))
    res = CliRunner().invoke(
        app,
        ["retrain", str(arch_file), "--teacher", str(arch_file), "--teacher-weights",
         str(tmp_path / "teacher.safetensors"), "--epochs", "1", "--batch-size", "16",
         "--max-steps-per-epoch", "2", "--eval-batches", "1", "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["steps"] == 2 and d["teacher"] == str(arch_file) and Path(d["weights"]).is_file()
    assert Path(d["out"]) == tmp_path / "retrain"


def test_cli_retrain_teacher_without_weights_is_refused(tmp_path, tiny_net):
    arch_file = tmp_path / "best.json"
    arch_file.write_text(json.dumps({"arch": tiny_net.to_dict()}))
    res = CliRunner().invoke(app, ["retrain", str(arch_file), "--teacher", "efficientnet_b0"])
    assert res.exit_code == 1 and "needs trained weights" in res.output


def test_zero_init_touches_residual_blocks_and_classifier(tiny_net):
    import timm

    m = timm.create_model("dna_net", arch=tiny_net, num_classes=10)
    n = zero_init_residuals(m)
    assert n == 1  # only block 2's second layer has a skip (stride 1, same width)
    assert m.classifier.weight.abs().sum() == 0
