"""timm-compatible ``config.json`` for a DNA-family model on the Hub.

Written with timm's own ``save_config_for_hf`` (architecture, num_classes, num_features,
pretrained_cfg, model_args), so ``timm.create_model("hf-hub:ORG/name", pretrained=True)``
reads it like any timm repo. For a searched network the architecture is the generic
``dna_net`` entry point and ``model_args`` carries ``{"arch": <ArchEncoding dict>}``: timm
passes ``model_args`` to the entry point as keyword arguments, so after ``import dna_zoo``
the network is rebuilt exactly.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import torch.nn as nn

from dna_zoo.arch import ArchEncoding


def hub_config(model: nn.Module, arch: ArchEncoding, *, searched: bool) -> dict[str, Any]:
    """The config.json dict of ``model`` (a DNA-family timm model built by dna-zoo)."""
    from timm.models._hub import save_config_for_hf

    model_args = {"arch": arch.to_dict()} if searched else {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.json"
        save_config_for_hf(model, str(path), model_args=model_args)
        cfg = json.loads(path.read_text())
    if not searched:
        # a zoo model is rebuilt from its registered name; its arch is not a constructor argument
        cfg.get("model_args", {}).pop("arch", None)
    pretrained_cfg = cfg.setdefault("pretrained_cfg", {})
    if pretrained_cfg.get("tag") == "untrained":  # dna_net's placeholder tag; these weights are trained
        pretrained_cfg.pop("tag")
    return cfg


def write_config(cfg: dict[str, Any], path: str | Path) -> Path:
    """Write config.json deterministically (same dict -> same bytes, so re-pushes are no-ops)."""
    p = Path(path)
    p.write_text(json.dumps(cfg, indent=2) + "\n")
    return p
