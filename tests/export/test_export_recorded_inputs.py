"""Export uses what a net recorded about its inputs, and the fp32 parity rule scales with the logits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

from dna_zoo.export import export_artifact
from dna_zoo.export.inputs import ImageSet, data_config, image_set
from dna_zoo.export.parity import parity
from dna_zoo.export.runners import Runner, torch_runner
from dna_zoo.sample_images import PACKAGED_SOURCE, packaged_images
from dna_zoo.search.retrain import DataInfo, RetrainConfig, retrain
from dna_zoo.search.supernet.data import FASHION_MNIST_MEAN, FASHION_MNIST_STD, open_dataset

HAS_FMNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").is_file()


def _shifted(runner: Runner, ref: np.ndarray, delta: np.ndarray) -> Runner:
    return Runner("shifted", lambda x: ref + delta, threads=runner.threads)


@pytest.fixture(scope="module")
def photos() -> ImageSet:
    model = timm.create_model("dna_a").eval()
    return image_set(packaged_images()[0].path.parent, data_config(model, 64))


def test_fp32_rule_is_abs_plus_rel(photos: ImageSet):
    model = timm.create_model("dna_a").eval()
    ref = torch_runner(model)(photos.x)
    big = ref / np.abs(ref).max() * 45.0  # logits up to 45, as a trained net has
    # float32 rounding grows with the magnitude: 5e-5 plus 2e-6 of each logit, i.e. up to 1.4e-4
    # on the large ones, over the old absolute 1e-4 (the demo failed at 1.05e-4 with logits of 45)
    err = 5e-5 + 2e-6 * np.abs(big)
    ok = parity(big, _shifted(torch_runner(model), big, err), photos)
    assert ok["max_abs_diff"] > 1e-4
    assert ok["passed"] and ok["rtol"] == 1e-4 and ok["worst_error_to_bound"] < 1
    small = ref / np.abs(ref).max() * 0.01  # small logits: the rule stays near 1e-4 absolute
    bad = parity(small, _shifted(torch_runner(model), small, np.full_like(small, 1.5e-4)), photos)
    assert not bad["passed"] and "allclose" in bad["rule"]


def test_packaged_photos_are_real_images():
    images = packaged_images()
    assert len(images) == 8 and all(im.label is None for im in images)
    assert (images[0].path.parent / "SOURCES.md").is_file()


@pytest.mark.slow
def test_plain_install_exports_dna_b_on_the_packaged_photos(tmp_path, monkeypatch):
    """Without the set-up script's image package the built-in images are the shipped photos."""
    import dna_zoo.sample_images as si

    monkeypatch.setattr(si, "has_imagenet_images", lambda: False)  # as after a plain pip install
    art = export_artifact("dna_b", "onnx", tmp_path, input_size=64, latency=False)
    assert art.manifest["parity"]["images"] == PACKAGED_SOURCE and art.manifest["parity"]["passed"]


@pytest.mark.slow
@pytest.mark.skipif(not HAS_FMNIST, reason="no built-in Fashion-MNIST (Debian dataset-fashion-mnist)")
def test_export_of_a_32px_net_checks_at_32px_on_its_own_data(tmp_path, tiny_net):
    train = open_dataset("builtin", split="train", input_size=32, limit=64)
    val = open_dataset("builtin", split="val", input_size=32, limit=32)
    info = DataInfo.from_source("builtin", train, input_size=32)  # the data source's own normalisation
    out = tmp_path / "retrain"
    retrain(
        tiny_net, train_set=train.dataset, eval_set=val.dataset, num_classes=10, in_chans=3, out_dir=out,
        config=RetrainConfig(epochs=1, batch_size=16, max_steps_per_epoch=2, eval_max_batches=1),
        data_info=info,
    )  # fmt: skip
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["pretrained_cfg"]["input_size"] == [3, 32, 32]
    assert cfg["pretrained_cfg"]["mean"] == pytest.approx([FASHION_MNIST_MEAN] * 3)
    assert cfg["pretrained_cfg"]["std"] == pytest.approx([FASHION_MNIST_STD] * 3)
    assert len(list((out / "samples").glob("*.png"))) == 16

    # the retrain output names the net (its config.json holds the encoding), as a search result would
    weights = out / "model.safetensors"
    art = export_artifact(str(out / "config.json"), "onnx", tmp_path / "onnx", weights=weights, latency=False)
    pre, par = art.manifest["preprocess"], art.manifest["parity"]
    assert pre["input_size"] == [3, 32, 32] and pre["crop_pct"] == 1.0
    assert pre["mean"] == pytest.approx([FASHION_MNIST_MEAN] * 3)
    # recorded by name: manifests carry no local paths
    assert par["images"] == "samples" and par["n_images"] == 16 and par["passed"]
    assert art.manifest["preprocess_source"] == "config.json"
    # the model card of that net states the same input size as the manifest
    from typer.testing import CliRunner

    from dna_zoo.cli.main import app

    card_dir = tmp_path / "card"
    r = CliRunner().invoke(app, ["hub", "push", str(out / "config.json"), "--weights", str(weights), "--repo",
                                 "acme/tiny-net", "--artifacts", str(tmp_path / "onnx"), "--dry-run",
                                 "--out", str(card_dir)])  # fmt: skip
    assert r.exit_code == 0, r.output
    card = (card_dir / "README.md").read_text()
    assert "| input size | 3x32x32 |" in card and "3x224x224" not in card
    # the samples are the data the net was evaluated on: same tensors as the dataset gives
    x = torch.tensor(image_set(out / "samples", pre).x)
    ref = torch.stack([val.dataset[i][0] for i in range(16)])
    torch.testing.assert_close(x, ref, atol=1e-6, rtol=0)
