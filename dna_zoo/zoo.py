"""Resolve what a user names (a zoo model, a searched-net file, any timm model) to a model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch.nn as nn

from dna_zoo.arch import ArchEncoding, load_encoding
from dna_zoo.complexity import Cost, encoding_cost
from dna_zoo.errors import UnknownNameError
from dna_zoo.models import PUBLISHED, published_encoding, published_models


def is_arch_file(spec: str) -> bool:
    return spec.endswith(".json") or Path(spec).is_file()


def resolve_arch(spec: str | Path | ArchEncoding) -> ArchEncoding:
    """The architecture of a zoo name (``dna_b``) or of a searched-net / encoding file."""
    if isinstance(spec, ArchEncoding):
        return spec
    text = str(spec)
    if text in PUBLISHED:
        return published_encoding(text)
    if is_arch_file(text):
        enc = load_encoding(text)
        if enc.name is None:
            object.__setattr__(enc, "name", Path(text).stem)
        return enc
    raise UnknownNameError("DNA model", text, PUBLISHED, hint=_hint(text, PUBLISHED))


def _hint(name: str, known: tuple[str, ...] | list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.5)
    if close:
        return f"did you mean {close[0]}?"
    return "known: " + ", ".join(known) + ", or a searched-net .json file"


def known_model_names() -> list[str]:
    import timm

    return list(timm.list_models())


@dataclass(frozen=True)
class ModelSource:
    """What a user named, resolved: the timm name and (for DNA-family nets) the encoding."""

    spec: str
    timm_name: str
    arch: ArchEncoding | None = None

    @property
    def display_name(self) -> str:
        if self.arch is not None and self.arch.name:
            return self.arch.name
        return self.timm_name


def resolve_source(spec: str) -> ModelSource:
    """A zoo name, a searched-net JSON file, any timm model name, or an ``hf-hub:`` id."""
    import timm

    if spec in PUBLISHED:
        return ModelSource(spec, spec, published_encoding(spec))
    if is_arch_file(spec):
        return ModelSource(spec, "dna_net", resolve_arch(spec))
    if spec.startswith("hf-hub:") or timm.is_model(spec):
        return ModelSource(spec, spec)
    known = known_model_names()
    raise UnknownNameError("model", spec, known, hint=_hint(spec, [*PUBLISHED, *known]))


def build_model(
    spec: str | ModelSource,
    *,
    weights: str | Path | None = None,
    pretrained: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """Create the torch model a user named, with their weights file loaded if given."""
    import timm

    from dna_zoo.weights import load_weights

    src = resolve_source(spec) if isinstance(spec, str) else spec
    if src.arch is not None and src.timm_name == "dna_net":
        kwargs["arch"] = src.arch
    if weights is not None:
        kwargs.setdefault("num_classes", _num_classes_in(weights, default=kwargs.get("num_classes")))
    model = timm.create_model(src.timm_name, pretrained=pretrained, **kwargs)
    if weights is not None:
        load_weights(model, weights)
    return model.eval()


def _num_classes_in(weights: str | Path, default: int | None) -> int | None:
    """Classifier size stored in a weights file (so a 10-class checkpoint just loads)."""
    from dna_zoo.weights import read_state_dict

    sd = read_state_dict(weights)
    bias = sd.get("classifier.bias")
    if bias is not None and bias.ndim == 1:
        return int(bias.shape[0])
    return default


def published_figures(name: str) -> dict[str, Any]:
    return dict(published_models()["models"][name]["published"])


def arch_cost(spec: str | ArchEncoding, **kwargs: Any) -> Cost:
    return encoding_cost(resolve_arch(spec), **kwargs)
