"""Data for supernet training and rating.

Two kinds of data, both real:

* ``builtin`` (alias ``fashion-mnist``): Fashion-MNIST read from the IDX files that
  Debian's ``dataset-fashion-mnist`` installs in ``/usr/share/datasets/fashion-mnist``
  (``scripts/setup.sh`` installs it; ``DNA_ZOO_FASHION_MNIST`` points elsewhere). Images
  are resized once to the demo resolution (32 px by default) and replicated to 3 channels
  (or kept at 1 for ``in_chans=1`` models). The train split trains, the t10k split is the
  held-out data for rating.
* a folder path: anything timm's dataset factory reads (``timm.data.create_dataset``, an
  image folder with class sub-folders, optionally with ``train/`` and ``val/`` splits), with
  timm's eval transforms (resize + centre crop + normalise, no random augmentation, so
  a resumed run sees exactly the same inputs).

A missing path, a folder without images or an unreadable image is a :class:`DataError`
naming the file. There is no synthetic data in this module.

The public entry points are :func:`open_dataset` (a :class:`DataSource`: the dataset and
its identity, recorded in run files and ratings) and :class:`ShardSampler` (the
deterministic, resumable, rank-sharded batch order training and rating use).
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import logging
import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Sampler

from dna_zoo.errors import ConfigError, DataError

log = logging.getLogger(__name__)

BUILTIN_NAMES = ("builtin", "fashion-mnist")
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
#: Fashion-MNIST pixel mean and std (of the 60k training images, in [0, 1]).
FASHION_MNIST_MEAN = 0.2860
FASHION_MNIST_STD = 0.3530
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def fashion_mnist_dir() -> Path:
    return Path(os.environ.get("DNA_ZOO_FASHION_MNIST", FASHION_MNIST_DIR))


def read_idx(path: str | Path) -> torch.Tensor:
    """Read one (optionally gzipped) IDX file (the MNIST format) into a uint8 tensor."""
    p = Path(path)
    try:
        raw = gzip.open(p).read() if p.suffix == ".gz" else p.read_bytes()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read {p}: {e}") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{p} is not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    n = 1
    for d in dims:
        n *= d
    body = raw[4 + 4 * ndim :]
    if len(body) != n:
        raise DataError(f"{p} is truncated: {len(body)} bytes of data, header says {n}")
    return torch.frombuffer(bytearray(body), dtype=torch.uint8).reshape(dims)


class FashionMNIST(Dataset):
    """Fashion-MNIST at ``input_size`` px, normalised, 3 (or ``in_chans``) channels.

    Images are resized once (bilinear, antialiased) and kept as uint8, so the 60k training
    images cost 60 MB at 32 px. ``limit`` keeps the first ``limit`` images (tests, benches).
    """

    def __init__(
        self,
        split: str = "train",
        *,
        input_size: int = 32,
        in_chans: int = 3,
        limit: int | None = None,
        root: str | Path | None = None,
    ) -> None:
        if split not in _FILES:
            raise DataError(f"unknown Fashion-MNIST split '{split}'", hint="use 'train' or 'test'")
        root = Path(root) if root is not None else fashion_mnist_dir()
        img_file, lbl_file = (root / f for f in _FILES[split])
        for f in (img_file, lbl_file):
            if not f.is_file():
                raise DataError(
                    f"built-in data file {f} is missing",
                    hint="run scripts/setup.sh (installs Debian's dataset-fashion-mnist) "
                    "or set DNA_ZOO_FASHION_MNIST",
                )
        images = read_idx(img_file)
        labels = read_idx(lbl_file)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(f"{img_file} and {lbl_file} do not hold matching images and labels")
        if limit is not None:
            images, labels = images[:limit], labels[:limit]
        self.split = split
        self.input_size = int(input_size)
        self.in_chans = int(in_chans)
        self.labels = labels.long()
        self.files = (img_file, lbl_file)
        self.images = self._resize(images, self.input_size)

    @staticmethod
    def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
        if images.shape[-1] == size and images.shape[-2] == size:
            return images.contiguous()
        out = []
        for chunk in images.split(4096):
            x = F.interpolate(
                chunk[:, None].float(),
                size=(size, size),
                mode="bilinear",
                antialias=True,
                align_corners=False,
            )
            out.append(x.round_().clamp_(0, 255).to(torch.uint8)[:, 0])
        return torch.cat(out)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def normalization(self) -> dict[str, list[float]]:
        """Per-channel mean and std this dataset normalises with (recorded with trained nets)."""
        return {"mean": [FASHION_MNIST_MEAN] * self.in_chans, "std": [FASHION_MNIST_STD] * self.in_chans}

    def save_images(self, folder: str | Path, count: int = 16) -> list[Path]:
        """The first ``count`` images as PNG files (at ``input_size``, before normalisation),
        named ``<index>_<label>.png``: what a trained net is checked on after export."""
        from PIL import Image

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        out = []
        for i in range(min(count, len(self))):
            path = folder / f"{i:03d}_{int(self.labels[i])}.png"
            Image.fromarray(self.images[i].numpy(), mode="L").save(path)
            out.append(path)
        return out

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x = (self.images[index].float() / 255.0 - FASHION_MNIST_MEAN) / FASHION_MNIST_STD
        return x.expand(self.in_chans, -1, -1).contiguous(), int(self.labels[index])

    def batch(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """A whole batch at once (faster than collating items)."""
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        x = (self.images[idx].float() / 255.0 - FASHION_MNIST_MEAN) / FASHION_MNIST_STD
        return x[:, None].expand(-1, self.in_chans, -1, -1).contiguous(), self.labels[idx]


def _file_digest(paths: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


@dataclass
class DataSource:
    """A dataset plus what identifies it (recorded in run.json and ratings files), and the
    normalisation its images carry (what a model trained on it must be fed: the retrain
    output records these) and its class names where the source knows them."""

    dataset: Dataset
    identity: dict[str, Any] = field(default_factory=dict)
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    classes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def batch(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Load the samples ``indices`` as one (images, labels) batch."""
        fast = getattr(self.dataset, "batch", None)
        if fast is not None:
            return fast(indices)
        items = [self.dataset[i] for i in indices]
        return torch.stack([x for x, _ in items]), torch.as_tensor([int(y) for _, y in items])


def is_builtin(data: str | Path) -> bool:
    return str(data) in BUILTIN_NAMES


def open_dataset(
    data: str | Path,
    *,
    split: str = "train",
    input_size: int = 32,
    in_chans: int = 3,
    limit: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> DataSource:
    """Open ``data`` (``builtin`` or a folder timm reads) for ``split`` (``train``/``val``).

    For folders, ``mean``/``std`` are the teacher's normalisation (from its pretrained
    config); the built-in data has its own.
    """
    if split not in ("train", "val"):
        raise DataError(f"unknown split '{split}'", hint="use 'train' or 'val'")
    if is_builtin(data):
        ds = FashionMNIST(
            "train" if split == "train" else "test", input_size=input_size, in_chans=in_chans, limit=limit
        )
        ident = {
            "kind": "fashion-mnist",
            "split": ds.split,
            "num_samples": len(ds),
            "sha256": _file_digest(ds.files),
            "input_size": input_size,
            "in_chans": in_chans,
        }
        return DataSource(
            ds, ident, mean=(FASHION_MNIST_MEAN,) * in_chans, std=(FASHION_MNIST_STD,) * in_chans,
            classes=FASHION_MNIST_CLASSES,
        )  # fmt: skip
    return _open_folder(Path(data), split, input_size, in_chans, limit, mean, std)


class _StrictImageDataset(Dataset):
    """timm's image dataset, but an unreadable image is an error naming the file.

    (timm's own ``ImageDataset`` logs and skips a bad sample; a distillation run should
    stop on bad data rather than quietly train on something else.)
    """

    def __init__(self, base: Any, transform: Any, in_chans: int) -> None:
        self.base = base
        self.reader = base.reader
        self.transform = transform
        self.mode = "L" if in_chans == 1 else "RGB"

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image, UnidentifiedImageError

        name = self.reader.filename(index, absolute=True)
        try:
            fp, target = self.reader[index]
            img = Image.open(fp).convert(self.mode)
        except (OSError, UnidentifiedImageError, ValueError) as e:
            raise DataError(f"cannot read image {name}: {e}") from e
        return self.transform(img), int(target if target is not None else -1)


def _open_folder(
    root: Path,
    split: str,
    input_size: int,
    in_chans: int,
    limit: int | None,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
) -> DataSource:
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_dataset, create_transform

    if not root.exists():
        raise DataError(
            f"data path {root} does not exist",
            hint="pass an image folder, or --data builtin for Fashion-MNIST",
        )
    if not root.is_dir():
        raise DataError(f"data path {root} is not a folder", hint="pass an image folder (class sub-folders)")
    try:
        base = create_dataset("", root=str(root), split="train" if split == "train" else "validation")
    except (OSError, RuntimeError, ValueError) as e:
        raise DataError(f"cannot read data folder {root}: {e}") from e
    if len(base) == 0:
        raise DataError(f"data folder {root} holds no images", hint="expected class sub-folders of images")
    mean = tuple(mean) if mean else IMAGENET_DEFAULT_MEAN
    std = tuple(std) if std else IMAGENET_DEFAULT_STD
    transform = create_transform(
        input_size,
        is_training=False,
        mean=mean,
        std=std,
        crop_pct=1.0 if input_size < 64 else 0.875,
    )
    ds: Dataset = _StrictImageDataset(base, transform, in_chans)
    ds[0]  # a broken folder fails now, not after the first hours of training
    if limit is not None and limit < len(ds):
        ds = torch.utils.data.Subset(ds, range(limit))
    files = [base.reader.filename(i) for i in range(len(base.reader))]
    ident = {
        "kind": "image-folder",
        "path": str(root.resolve()),
        "split": split,
        "num_samples": len(ds),  # type: ignore[arg-type]
        "files_sha256": hashlib.sha256("\n".join(map(str, files)).encode()).hexdigest()[:16],
        "input_size": input_size,
        "in_chans": in_chans,
    }
    mapping = getattr(base.reader, "class_to_idx", None) or {}
    classes = tuple(sorted(mapping, key=mapping.get))
    return DataSource(ds, ident, mean=tuple(mean)[:in_chans], std=tuple(std)[:in_chans], classes=classes)


class ShardSampler(Sampler[list[int]]):
    """Deterministic batches of one epoch, for one rank (and micro-batch), resumable.

    Epoch ``e`` shuffles the dataset with seed ``seed + e`` and cuts it into global batches
    of ``global_batch`` samples (the last partial batch is dropped, so every rank does the
    same number of steps). Each global batch is split into ``shards`` interleaved shards
    (``world_size x accum_steps``); this sampler yields shard ``shard`` of every global batch
    from global batch ``start`` on. A 2-rank run and a 1-rank run with 2 accumulation steps
    therefore see exactly the same samples in each step.
    """

    def __init__(
        self,
        num_samples: int,
        global_batch: int,
        *,
        shard: int = 0,
        shards: int = 1,
        seed: int = 0,
        epoch: int = 0,
        start: int = 0,
        shuffle: bool = True,
    ) -> None:
        if global_batch < shards or global_batch % shards:
            raise DataError(f"global batch {global_batch} does not split into {shards} equal shards")
        if num_samples < global_batch:
            raise DataError(
                f"{num_samples} samples are fewer than one batch of {global_batch}",
                hint="use a smaller --batch-size or more data",
            )
        self.num_samples = num_samples
        self.global_batch = global_batch
        self.shard = shard
        self.shards = shards
        self.seed = seed
        self.epoch = epoch
        self.start = start
        self.shuffle = shuffle

    @staticmethod
    def batches_per_epoch(num_samples: int, global_batch: int) -> int:
        return num_samples // global_batch

    def __len__(self) -> int:
        return max(0, self.batches_per_epoch(self.num_samples, self.global_batch) - self.start)

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.num_samples, generator=g)
        else:
            order = torch.arange(self.num_samples)
        n = self.batches_per_epoch(self.num_samples, self.global_batch)
        for b in range(self.start, n):
            batch = order[b * self.global_batch : (b + 1) * self.global_batch]
            yield batch[self.shard :: self.shards].tolist()


def first_batches(source: DataSource, n: int, batch_size: int, seed: int) -> list[torch.Tensor]:
    """The first ``n`` batches of ``source`` in :class:`ShardSampler` order for ``seed`` (images only)."""
    if len(source) < batch_size:
        raise ConfigError(
            f"{len(source)} images are fewer than one rating batch of {batch_size}",
            hint="use a smaller --batch-size",
        )
    sampler = ShardSampler(len(source), batch_size, seed=seed)
    out = []
    for idx in itertools.islice(iter(sampler), n):
        out.append(source.batch(idx)[0])
    if len(out) < n:
        log.warning("only %d batches of %d images available (asked for %d)", len(out), batch_size, n)
    return out
