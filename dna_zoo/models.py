"""DNA-a..d and searched DNA-family networks as timm models.

The networks are timm's own ``EfficientNet`` built from ``arch_def`` strings; nothing here
re-implements a layer. Importing :mod:`dna_zoo` registers ``dna_a``..``dna_d`` and the
generic ``dna_net`` (any :class:`~dna_zoo.arch.ArchEncoding`) with timm's registry.
"""

from __future__ import annotations

import json
from functools import lru_cache, partial
from importlib import resources
from pathlib import Path
from typing import Any

import torch.nn as nn
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._builder import pretrained_cfg_for_features
from timm.models._efficientnet_blocks import SqueezeExcite
from timm.models._efficientnet_builder import decode_arch_def, round_channels
from timm.models.efficientnet import EfficientNet, EfficientNetFeatures

from dna_zoo.arch import ArchEncoding, load_encoding
from dna_zoo.errors import UnknownNameError
from dna_zoo.pretrained import fetch_hub_weights
from dna_zoo.weights import checkpoint_filter_fn, read_state_dict

HF_ORG = "dna-zoo"
#: The architecture ``dna_net`` builds when given none.
DEFAULT_NET_ARCH = "dna_b"
LICENSE = "apache-2.0"


@lru_cache(maxsize=1)
def published_models() -> dict[str, Any]:
    """The published DNA-a..d: architecture strings and the paper's figures."""
    text = resources.files("dna_zoo").joinpath("data/published.json").read_text()
    return json.loads(text)


#: The published zoo (``dna_a``..``dna_d``), in the order of ``data/published.json``: the one list
#: every command, table and test reads. Each name also has its timm entrypoint below (timm's
#: three-line style); tests/zoo/test_models.py checks the two agree.
PUBLISHED: tuple[str, ...] = tuple(published_models()["models"])


def published_encoding(name: str) -> ArchEncoding:
    """The :class:`ArchEncoding` of a published model (``dna_a``..``dna_d``)."""
    data = published_models()
    models = data["models"]
    if name not in models:
        raise UnknownNameError("DNA model", name, models)
    common = data["common"]
    return ArchEncoding.from_arch_def(
        models[name]["arch_def"],
        stem_size=common["stem_size"],
        num_features=common["num_features"],
        name=name,
    )


def _cfg(**kwargs: Any) -> dict[str, Any]:
    common = published_models()["common"]
    return {
        "num_classes": common["num_classes"],
        "input_size": tuple(common["input_size"]),
        "pool_size": (7, 7),
        "crop_pct": common["crop_pct"],
        "interpolation": common["interpolation"],
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "first_conv": "conv_stem",
        "classifier": "classifier",
        "license": LICENSE,
        "paper_ids": "arXiv:1911.13053",
        "paper_name": "Block-wisely Supervised Neural Architecture Search with Knowledge Distillation",
        "origin_url": "https://github.com/changlin31/DNA",
        **kwargs,
    }


default_cfgs = generate_default_cfgs(
    {
        **{f"{n}.in1k": _cfg(hf_hub_id=f"{HF_ORG}/{n}.in1k") for n in PUBLISHED},
        # A searched network has no weights of its own until it is trained and pushed.
        "dna_net.untrained": _cfg(),
    }
)


def model_kwargs(enc: ArchEncoding, kwargs: dict[str, Any]) -> dict[str, Any]:
    common = published_models()["common"]
    return dict(
        block_args=decode_arch_def(enc.to_arch_def()),
        stem_size=enc.stem_size,
        num_features=enc.num_features,
        act_layer=kwargs.pop("act_layer", nn.SiLU),
        norm_layer=kwargs.pop(
            "norm_layer",
            partial(nn.BatchNorm2d, eps=common["bn_eps"], momentum=common["bn_momentum"]),
        ),
        se_layer=kwargs.pop("se_layer", partial(SqueezeExcite, rd_round_fn=round)),
        round_chs_fn=round_channels,
        **kwargs,
    )


def _default_hub_id(variant: str, kwargs: dict[str, Any]) -> str | None:
    """The Hub repo timm would download ``variant``'s weights from (None: no registered weights)."""
    from timm.models import get_pretrained_cfg

    if kwargs.get("pretrained_cfg") is not None:
        return None  # the caller chose a config; timm resolves it
    cfg = get_pretrained_cfg(variant, allow_unregistered=True)
    return getattr(cfg, "hf_hub_id", None) if cfg is not None else None


def create_dna_model(
    variant: str, enc: ArchEncoding, pretrained: bool = False, **kwargs: Any
) -> EfficientNet | EfficientNetFeatures:
    """Build a DNA-family network through timm's ``build_model_with_cfg``."""
    overlay = kwargs.get("pretrained_cfg_overlay") or {}
    hub_id = overlay.get("hf_hub_id") or _default_hub_id(variant, kwargs)
    if pretrained and hub_id and not (overlay.get("file") or overlay.get("state_dict")):
        # Resolve the Hub file here: from the cache or after one fast check, never timm's
        # ~40 s of retries per file when the Hub cannot be reached.
        overlay = {**overlay, "file": str(fetch_hub_weights(variant, hub_id))}
        kwargs["pretrained_cfg_overlay"] = overlay
    if pretrained and overlay.get("file") and not overlay.get("state_dict"):
        # Read local files with our safe reader so a corrupt or unsafe file is a clear error.
        sd = read_state_dict(overlay["file"])
        kwargs["pretrained_cfg_overlay"] = {**overlay, "state_dict": sd}
    features_mode = ""
    model_cls: type[nn.Module] = EfficientNet
    kwargs_filter = None
    if kwargs.pop("features_only", False):
        if "feature_cfg" in kwargs or "feature_cls" in kwargs:
            features_mode = "cfg"
        else:
            kwargs_filter = ("num_classes", "num_features", "head_conv", "global_pool")
            model_cls = EfficientNetFeatures
            features_mode = "cls"
    model = build_model_with_cfg(
        model_cls,
        variant,
        pretrained,
        features_only=features_mode == "cfg",
        pretrained_strict=features_mode != "cls",
        pretrained_filter_fn=checkpoint_filter_fn,
        kwargs_filter=kwargs_filter,
        **model_kwargs(enc, kwargs),
    )
    if features_mode == "cls":
        model.pretrained_cfg = model.default_cfg = pretrained_cfg_for_features(model.pretrained_cfg)
    model.dna_arch = enc  # type: ignore[attr-defined]
    return model


@register_model
def dna_a(pretrained: bool = False, **kwargs: Any) -> EfficientNet:
    """DNA-a: 4.2M params, 348M MACs, 77.1% ImageNet top-1 (published)."""
    return create_dna_model("dna_a", published_encoding("dna_a"), pretrained, **kwargs)


@register_model
def dna_b(pretrained: bool = False, **kwargs: Any) -> EfficientNet:
    """DNA-b: 4.9M params, 394M MACs, 77.5% ImageNet top-1 (published)."""
    return create_dna_model("dna_b", published_encoding("dna_b"), pretrained, **kwargs)


@register_model
def dna_c(pretrained: bool = False, **kwargs: Any) -> EfficientNet:
    """DNA-c: 5.3M params, 466M MACs, 77.8% ImageNet top-1 (published)."""
    return create_dna_model("dna_c", published_encoding("dna_c"), pretrained, **kwargs)


@register_model
def dna_d(pretrained: bool = False, **kwargs: Any) -> EfficientNet:
    """DNA-d: 6.4M params, 611M MACs, 78.4% ImageNet top-1 (published)."""
    return create_dna_model("dna_d", published_encoding("dna_d"), pretrained, **kwargs)


@register_model
def dna_net(
    pretrained: bool = False, arch: ArchEncoding | dict | str | Path | None = None, **kwargs: Any
) -> EfficientNet:
    """Any DNA-family network: ``timm.create_model("dna_net", arch=...)``.

    ``arch`` is an :class:`ArchEncoding`, its dict form, a JSON string, or a JSON file (a
    search result works as is). Hub repos of searched nets store it in
    ``config.json`` ``model_args``, so ``hf-hub:`` names rebuild them. Without ``arch`` it
    is DNA-b's architecture (untrained), so timm's generic "build every entry with
    defaults" works for it like for any registered model.
    """
    enc = published_encoding(DEFAULT_NET_ARCH) if arch is None else load_encoding(arch)
    return create_dna_model("dna_net", enc, pretrained, **kwargs)
