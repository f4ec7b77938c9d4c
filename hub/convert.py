"""Convert an original DNA checkpoint (``DNA_b.pth.tar``) into a Hub-ready folder.

The folder holds ``model.safetensors`` (the EMA weights when the checkpoint has them, as the
original evaluation used, with ``module.`` prefixes removed) and a timm ``config.json``.
Checkpoints are read with ``torch.load(weights_only=True)`` through dna_zoo.weights: nothing
is unpickled beyond tensors and plain containers.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from dna_zoo.errors import OutputExistsError, WeightsError
from dna_zoo.hub.config import hub_config, write_config
from dna_zoo.io import replace_dir, sha256_file, staging_dir
from dna_zoo.weights import save_safetensors

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


@dataclass(frozen=True)
class ConvertResult:
    out: Path
    files: tuple[str, ...]
    model: str
    num_classes: int
    params: int
    sha256: str


def convert_checkpoint(
    checkpoint: str | os.PathLike[str], model: str, out: str | os.PathLike[str], *, force: bool = False
) -> ConvertResult:
    """Write ``out/model.safetensors`` and ``out/config.json`` from an original checkpoint.

    ``model`` is a zoo name (``dna_b``) or a searched-net / encoding JSON file. The weights
    must fit that architecture exactly (one clear :class:`WeightsError` otherwise). ``out``
    appears complete or not at all.
    """
    from dna_zoo.complexity import count_params
    from dna_zoo.models import PUBLISHED
    from dna_zoo.zoo import build_model, resolve_source

    out_dir = Path(out)
    if out_dir.exists() and not force:
        raise OutputExistsError(out_dir)
    src = resolve_source(model)
    if src.arch is None:
        raise WeightsError(
            f"'{model}' is not a DNA-family model", hint="use dna_a..dna_d or a searched-net .json"
        )
    net = build_model(src, weights=checkpoint)
    sd = net.state_dict()
    tmp = staging_dir(out_dir)
    try:
        save_safetensors(sd, tmp / WEIGHTS_NAME, metadata={"format": "pt"})
        write_config(hub_config(net, src.arch, searched=model not in PUBLISHED), tmp / CONFIG_NAME)
        replace_dir(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("converted %s -> %s", checkpoint, out_dir)
    return ConvertResult(
        out=out_dir,
        files=(WEIGHTS_NAME, CONFIG_NAME),
        model=src.display_name,
        num_classes=int(net.num_classes),
        params=count_params(net),
        sha256=sha256_file(out_dir / WEIGHTS_NAME),
    )
