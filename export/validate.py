"""Top-1 / top-5 of a model, in any format, on an image folder, with the model's own preprocessing.

Preprocessing is the model's pretrained cfg through timm's data pipeline
(``resolve_data_config`` -> ``create_transform``); an ImageFolder-layout folder is read
with ``timm.data.create_dataset`` (classes are the sorted sub-folder names, so an ImageNet
``val/`` folder of synsets gives the standard indices). ``"builtin"`` is the 20 real
ImageNet validation images shipped with foolbox. An exported artifact is validated with
the preprocessing recorded in its manifest.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dna_zoo.accuracy import TopKAccuracy
from dna_zoo.errors import DataError
from dna_zoo.export.inputs import eval_transform
from dna_zoo.export.load import load_runner
from dna_zoo.export.runners import Runner, torch_runner
from dna_zoo.progress import Reporter, reporter_or_null
from dna_zoo.sample_images import builtin_images, open_image

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Accuracy:
    """Top-1 / top-5 in percent (top-5 None with fewer than 5 classes)."""

    model: str
    runner: str
    data: str
    n_images: int
    top1: float
    top5: float | None
    preprocess: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _dataset(data: str | Path):
    """(image-or-path, label) pairs and a source label."""
    if str(data) == "builtin":
        return [
            (im.path, im.label) for im in builtin_images()
        ], "builtin: 20 ImageNet val images (foolbox 3.3.4)"
    from timm.data import create_dataset

    root = Path(data)
    if not root.is_dir():
        raise DataError(
            f"image folder {root} does not exist or is not a folder", hint="pass --data DIR or builtin"
        )
    try:
        ds = create_dataset("", root=str(root), split="")
    except RuntimeError as e:
        raise DataError(
            f"no images in class sub-folders of {root}", hint="use the ImageFolder layout root/<class>/<img>"
        ) from e
    return [(Path(p), int(t)) for p, t in ds.reader.samples], str(root)


def evaluate(
    runner: Runner,
    data: str | Path,
    cfg: dict[str, Any],
    *,
    model_name: str,
    batch_size: int = 16,
    progress: Reporter | None = None,
) -> Accuracy:
    """Top-1 / top-5 accuracy of ``runner`` on ``data`` preprocessed with ``cfg``."""
    items, source = _dataset(data)
    tf = eval_transform(cfg)
    mode = "L" if cfg["input_size"][0] == 1 else "RGB"
    acc = TopKAccuracy((1, 5))
    starts = range(0, len(items), batch_size)
    for i in reporter_or_null(progress).track(starts, "validating", total=len(starts)):
        chunk = items[i : i + batch_size]
        x = np.stack([tf(open_image(p, mode)).numpy() for p, _ in chunk]).astype(np.float32)
        labels = np.asarray([lbl for _, lbl in chunk])
        acc.update(runner(x), labels)
    top1, top5 = acc.percent()
    if acc.num_classes is None or acc.num_classes < 5:
        top5 = None
    return Accuracy(model_name, runner.name, source, len(items), top1, top5, cfg)


def validate_accuracy(
    model: str,
    *,
    data: str | Path = "builtin",
    weights: Path | None = None,
    fmt: str | None = None,
    batch_size: int = 16,
    threads: int = 2,
    progress: Reporter | None = None,
) -> Accuracy:
    """Accuracy of a model (zoo/timm name, searched net, or an exported artifact file)."""
    from dna_zoo.export.api import prepare_model
    from dna_zoo.export.artifact import MANIFEST_SUFFIX, read_manifest
    from dna_zoo.export.inputs import data_config

    path = Path(model)
    if path.is_file() and Path(str(path) + MANIFEST_SUFFIX).is_file():
        manifest = read_manifest(path)
        runner = load_runner(path, threads=threads)
        return evaluate(
            runner,
            data,
            manifest["preprocess"],
            model_name=str(path),
            batch_size=batch_size,
            progress=progress,
        )
    if fmt is None or fmt == "torch":
        net = prepare_model(model, weights)
        runner = torch_runner(net, threads=threads)
        return evaluate(
            runner, data, data_config(net), model_name=model, batch_size=batch_size, progress=progress
        )
    from dna_zoo.export.api import export_artifact

    with tempfile.TemporaryDirectory(prefix="dna-validate-") as tmp:
        art = export_artifact(
            model, fmt, Path(tmp), weights=weights, dynamic=True, latency=False, threads=threads
        )
        runner = load_runner(art.path, threads=threads)
        return evaluate(
            runner,
            data,
            art.manifest["preprocess"],
            model_name=model,
            batch_size=batch_size,
            progress=progress,
        )
