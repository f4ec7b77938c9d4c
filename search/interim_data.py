"""Interim data for `dna retrain` until the supernet's ``search/data.py`` (issue 6) is merged.

Deliberately minimal: the built-in real Fashion-MNIST (Debian ``dataset-fashion-mnist``,
IDX files) padded to 32x32, and image folders through timm's dataset and transform
factories. Everything goes through :func:`load_datasets`, the one function to switch over.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dna_zoo.errors import DataError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


class _TensorImages(torch.utils.data.Dataset):
    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean: float, std: float):
        self.images, self.labels, self.mean, self.std = images, labels, mean, std

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        x = (self.images[i].float() / 255.0 - self.mean) / self.std
        return x, int(self.labels[i])

    def batch(self, indices):
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        return (self.images[idx].float() / 255.0 - self.mean) / self.std, self.labels[idx]


def _idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _fashion_mnist(split: str, input_size: int) -> _TensorImages:
    prefix = "train" if split == "train" else "t10k"
    img, lab = (
        FASHION_MNIST_DIR / f"{prefix}-images-idx3-ubyte.gz",
        FASHION_MNIST_DIR / f"{prefix}-labels-idx1-ubyte.gz",
    )
    if not img.is_file() or not lab.is_file():
        raise DataError(
            f"the built-in Fashion-MNIST is not installed ({FASHION_MNIST_DIR})",
            hint="run `sudo apt-get install dataset-fashion-mnist` (scripts/setup.sh does)",
        )
    x = torch.from_numpy(_idx(img).copy())[:, None]
    if input_size != 28:
        pad = (input_size - 28) // 2
        if input_size > 28 and input_size - 28 == 2 * pad:
            x = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        else:
            x = torch.nn.functional.interpolate(x.float(), size=input_size, mode="bilinear").round().byte()
    return _TensorImages(x, torch.from_numpy(_idx(lab).astype(np.int64)), 0.2860, 0.3530)


def load_datasets(spec: str, *, input_size: int = 32) -> tuple[Any, Any, dict[str, Any]]:
    """(train set, eval set, info) for ``builtin`` / ``fashion-mnist`` or an image folder with
    ``train/`` and ``val/`` (or ``validation/``) subfolders."""
    if spec in ("builtin", "fashion-mnist", "fashion_mnist"):
        info = {
            "name": "fashion-mnist", "num_classes": 10, "in_chans": 1, "input_size": input_size,
            "mean": (0.2860,), "std": (0.3530,), "classes": list(FASHION_CLASSES),
        }  # fmt: skip
        return _fashion_mnist("train", input_size), _fashion_mnist("test", input_size), info
    root = Path(spec)
    if not root.is_dir():
        raise DataError(f"data '{spec}' is neither 'builtin' nor a directory")
    from timm.data import create_dataset, create_transform

    splits = {}
    for split, names in (("train", ("train",)), ("val", ("val", "validation", "test"))):
        d = next((root / n for n in names if (root / n).is_dir()), None)
        if d is None:
            raise DataError(f"{root} has no {'/'.join(names)} subfolder")
        splits[split] = d
    tf_train = create_transform(input_size, is_training=True)
    tf_eval = create_transform(input_size, is_training=False)
    train = create_dataset("", root=str(splits["train"]), transform=tf_train)
    val = create_dataset("", root=str(splits["val"]), transform=tf_eval)
    classes = getattr(getattr(train, "reader", None), "class_to_idx", {}) or {}
    if len(train) == 0:
        raise DataError(f"no images found under {splits['train']}")
    info = {
        "name": str(root), "num_classes": max(1, len(classes)), "in_chans": 3, "input_size": input_size,
        "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225),
        "classes": sorted(classes, key=classes.get),
    }  # fmt: skip
    return train, val, info
