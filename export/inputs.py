"""Real images as model inputs: the model's own preprocessing through timm's data pipeline.

The data config comes from the model's pretrained cfg (``timm.data.resolve_data_config``)
and the eval transform from ``timm.data.create_transform``, so a model is fed exactly as
timm would evaluate it. The config is recorded in manifests, so an exported artifact can
be validated later without the torch model.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dna_zoo.errors import ConfigError, DataError
from dna_zoo.sample_images import LabeledImage, open_image, resolve_images

log = logging.getLogger(__name__)


def data_config(model: torch.nn.Module, input_size: int | None = None) -> dict[str, Any]:
    """The model's eval preprocessing (input size, interpolation, mean/std, crop), plain JSON types."""
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=model)
    chans = _input_channels(model)
    if chans is not None and chans != cfg["input_size"][0]:
        # e.g. a 1-channel net built with in_chans=1: its pretrained cfg still says 3 channels
        cfg["input_size"] = (chans, *cfg["input_size"][1:])
        for key in ("mean", "std"):
            if len(cfg[key]) != chans:
                cfg[key] = (sum(cfg[key]) / len(cfg[key]),) * chans
    if input_size is not None:
        if input_size < 16:
            raise ConfigError(f"input size {input_size} is too small", hint="use e.g. --input-size 224")
        cfg["input_size"] = (cfg["input_size"][0], input_size, input_size)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()}


def _input_channels(model: torch.nn.Module) -> int | None:
    """Input channels of the model's first convolution (``None`` if it has none)."""
    conv = next((m for m in model.modules() if isinstance(m, torch.nn.Conv2d)), None)
    return None if conv is None else int(conv.in_channels)


def eval_transform(cfg: dict[str, Any]):
    from timm.data import create_transform

    kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg.items()}
    return create_transform(**kw, is_training=False)


def load_batch(images: Sequence[LabeledImage], cfg: dict[str, Any]) -> np.ndarray:
    """Images preprocessed for the model, stacked as float32 NCHW."""
    tf = eval_transform(cfg)
    mode = "L" if cfg["input_size"][0] == 1 else "RGB"
    return np.stack([tf(open_image(im.path, mode)).numpy() for im in images]).astype(np.float32)


@dataclass(frozen=True)
class ImageSet:
    """Preprocessed real images with labels (``None`` where unknown) and where they came from."""

    x: np.ndarray
    labels: list[int | None]
    source: str

    @property
    def labelled(self) -> bool:
        return all(lbl is not None for lbl in self.labels)


def image_set(data: str | Path | None, cfg: dict[str, Any], limit: int | None = None) -> ImageSet:
    """Real images (``None``/``"builtin"`` or a folder) preprocessed with ``cfg``.

    Decoding and resizing cost seconds here and one export needs the same images several
    times (BatchNorm re-estimation, parity, benchmark), so recent sets are cached per
    process, keyed by the folder's file list and the preprocessing.
    """
    images, source = resolve_images(data)
    if limit is not None:
        images = _spread(images, limit)
    key = json.dumps(cfg, sort_keys=True, default=str)
    stamp = tuple(im.path.stat().st_mtime_ns if im.path.exists() else 0 for im in images)
    return _cached_set(tuple(images), stamp, key, source)


@functools.lru_cache(maxsize=8)
def _cached_set(images: tuple[LabeledImage, ...], stamp: tuple, cfg_key: str, source: str) -> ImageSet:
    x = load_batch(images, json.loads(cfg_key))
    x.flags.writeable = False  # shared between callers
    return ImageSet(x, [im.label for im in images], source)


def calibration_set(calib: str | Path | None, cfg: dict[str, Any], limit: int) -> ImageSet:
    """Calibration images: the user's folder, or the built-in real images with a warning."""
    if calib is None:
        log.warning(
            "no --calib folder given: calibrating on the 20 built-in ImageNet images; "
            "pass --calib DIR with a few hundred images of your own data for a better INT8 model"
        )
    elif not Path(calib).is_dir():
        raise DataError(f"calibration folder {calib} does not exist or is not a folder")
    if limit < 1:
        raise ConfigError(f"calibration size must be at least 1, got {limit}")
    return image_set(calib, cfg, limit)


def _spread(items: list, limit: int) -> list:
    """At most ``limit`` items spread evenly over the list (class folders are sorted)."""
    if len(items) <= limit:
        return items
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]


def random_sample(cfg: dict[str, Any], batch: int) -> torch.Tensor:
    """A deterministic example input of the model's shape (for tracing only)."""
    g = torch.Generator().manual_seed(0)
    return torch.randn(batch, *cfg["input_size"], generator=g)
