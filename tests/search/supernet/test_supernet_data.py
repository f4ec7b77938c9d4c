"""Built-in Fashion-MNIST, timm image folders, and the resumable sharded batch order."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch
from PIL import Image

from dna_zoo.errors import DataError
from dna_zoo.search.supernet.data import (
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    ShardSampler,
    fashion_mnist_dir,
    open_dataset,
)

needs_fmnist = pytest.mark.skipif(
    not (fashion_mnist_dir() / "t10k-images-idx3-ubyte.gz").is_file(),
    reason="Fashion-MNIST not installed (scripts/setup.sh installs Debian's dataset-fashion-mnist)",
)


@needs_fmnist
def test_builtin_fashion_mnist_is_real_and_resized():
    src = open_dataset("builtin", split="val", input_size=32, limit=256)
    x, y = src.batch(range(8))
    assert x.shape == (8, 3, 32, 32) and y.dtype == torch.long
    assert torch.equal(x[:, 0], x[:, 2])  # replicated grey channel
    raw = src.dataset.images[:8].float() / 255
    torch.testing.assert_close(x[:, 0], (raw - FASHION_MNIST_MEAN) / FASHION_MNIST_STD)
    assert src.identity["kind"] == "fashion-mnist" and src.identity["split"] == "test"
    assert src.identity["num_samples"] == 256 and len(src.identity["sha256"]) == 16
    assert set(src.dataset.labels.tolist()) <= set(range(10)) and len(set(src.dataset.labels.tolist())) > 5
    one = open_dataset("fashion-mnist", split="val", input_size=28, in_chans=1, limit=4)
    assert one.batch([0])[0].shape == (1, 1, 28, 28)
    x0, y0 = one.dataset[0]
    assert x0.shape == (1, 28, 28) and isinstance(y0, int)


def test_truncated_idx_is_a_data_error(tmp_path, monkeypatch):
    d = tmp_path / "fm"
    d.mkdir()
    header = bytes([0, 0, 8, 3]) + (10).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    (d / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(header + bytes(100)))
    (d / "t10k-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big"))
    )
    monkeypatch.setenv("DNA_ZOO_FASHION_MNIST", str(d))
    with pytest.raises(DataError, match="truncated"):
        open_dataset("builtin", split="val")
    monkeypatch.setenv("DNA_ZOO_FASHION_MNIST", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match=r"missing.*hint: run scripts/setup.sh"):
        open_dataset("builtin", split="train")


def _folder(root, n=3):
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")


def test_image_folder_through_timm(tmp_path):
    _folder(tmp_path / "imgs")
    src = open_dataset(tmp_path / "imgs", input_size=32, mean=(0.5,) * 3, std=(0.5,) * 3)
    x, y = src.batch([0, 5])
    assert x.shape == (2, 3, 32, 32) and y.tolist() == [0, 1]
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    assert src.identity["kind"] == "image-folder" and src.identity["num_samples"] == 6


def test_bad_folders_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        open_dataset(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty.*(no|0) images"):
        open_dataset(tmp_path / "empty")
    _folder(tmp_path / "bad", n=2)
    (tmp_path / "bad" / "dog" / "1.png").write_bytes(b"not a png")
    src = open_dataset(tmp_path / "bad", input_size=32)
    with pytest.raises(DataError, match=r"cannot read image .*dog/1\.png"):
        src.batch(range(4))


def test_shard_sampler_is_deterministic_sharded_and_resumable():
    full = list(ShardSampler(50, 8, seed=3, epoch=1))
    assert len(full) == 6 and sorted(i for b in full for i in b) == sorted(set(i for b in full for i in b))
    # shards of one global batch partition it; 2 ranks x 2 micro-batches = 4 shards
    parts = [list(ShardSampler(50, 8, shard=s, shards=4, seed=3, epoch=1)) for s in range(4)]
    for b in range(6):
        assert sorted(i for p in parts for i in p[b]) == sorted(full[b])
    assert list(ShardSampler(50, 8, seed=3, epoch=1, start=4)) == full[4:]
    assert list(ShardSampler(50, 8, seed=3, epoch=2)) != full
    with pytest.raises(DataError, match="fewer than one batch"):
        ShardSampler(5, 8)
