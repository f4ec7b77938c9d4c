"""Resolve what a user names (a zoo model, a searched-net file, any timm model) to a model."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch.nn as nn

from dna_zoo.arch import ArchEncoding, load_encoding
from dna_zoo.complexity import encoding_cost
from dna_zoo.errors import UnknownNameError
from dna_zoo.models import PUBLISHED, published_encoding, published_models
from dna_zoo.progress import Reporter, reporter_or_null


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


_CFG_KEYS = ("input_size", "mean", "std", "crop_pct", "interpolation", "num_classes")


@dataclass(frozen=True)
class RecordedInputs:
    """What a network recorded about the inputs it was made for.

    ``pretrained_cfg``: timm pretrained-cfg entries (input size, mean/std, crop, ...) that
    override the defaults, so ``timm.data.resolve_data_config(model=...)`` and everything
    built on it (export, parity, cards) use them; ``images``: real images of the data it
    was trained on (written next to the weights by ``retrain``); ``source``: the file.
    """

    pretrained_cfg: dict[str, Any] = field(default_factory=dict)
    in_chans: int | None = None
    images: Path | None = None
    source: Path | None = None


def _read_json(path: Path) -> dict[str, Any] | None:
    import json

    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _from_timm_config(path: Path, data: dict[str, Any]) -> RecordedInputs:
    cfg = {k: data["pretrained_cfg"][k] for k in _CFG_KEYS if k in data["pretrained_cfg"]}
    if isinstance(cfg.get("input_size"), list):
        cfg["input_size"] = tuple(cfg["input_size"])
    for k in ("mean", "std"):
        if isinstance(cfg.get(k), list):
            cfg[k] = tuple(cfg[k])
    in_chans = (data.get("model_args") or {}).get("in_chans")
    if in_chans is None and cfg.get("input_size"):
        in_chans = int(cfg["input_size"][0])
    images = None
    samples = (data.get("dna_zoo") or {}).get("samples")
    if samples and (path.parent / samples).is_dir():
        images = path.parent / samples
    return RecordedInputs(cfg, None if in_chans is None else int(in_chans), images, path)


def recorded_inputs(spec: str | Path | None, weights: str | Path | None = None) -> RecordedInputs:
    """The recorded inputs of a searched/retrained net: from the ``config.json`` next to its
    weights (``retrain`` output), or from the spec file itself (a ``config.json``, or a
    search result's ``input_size``). Nothing recorded: an empty record (the defaults hold).
    """
    candidates: list[Path] = []
    if weights is not None:
        candidates.append(Path(weights).with_name("config.json"))
    if spec is not None and is_arch_file(str(spec)):
        candidates.append(Path(spec))
    for path in candidates:
        data = _read_json(path) if path.is_file() else None
        if data is None:
            continue
        if isinstance(data.get("pretrained_cfg"), dict) and "arch" in data:
            return _from_timm_config(path, data)
        if isinstance(data.get("input_size"), int) and "arch" in data:  # a search result
            size = int(data["input_size"])
            cfg: dict[str, Any] = {"input_size": (3, size, size)}
            if size < 64:
                cfg["crop_pct"] = 1.0  # small images are used whole, as the pipeline's data is
            return RecordedInputs(cfg, None, None, path)
    return RecordedInputs()


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
        rec = recorded_inputs(src.spec, weights)
        if rec.pretrained_cfg:
            overlay = {**rec.pretrained_cfg, **(kwargs.get("pretrained_cfg_overlay") or {})}
            kwargs["pretrained_cfg_overlay"] = overlay
        if rec.in_chans is not None:
            kwargs.setdefault("in_chans", rec.in_chans)
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


def weights_status(name: str) -> str:
    """Where pretrained weights for a zoo model come from, and whether they are cached."""
    from huggingface_hub import try_to_load_from_cache

    from dna_zoo.models import default_cfgs

    cfg = default_cfgs.get(name)
    hub_id = cfg.default.hf_hub_id if cfg is not None else None
    if not hub_id:
        return "none"
    cached = try_to_load_from_cache(hub_id, "model.safetensors")
    return f"hub:{hub_id}" + (" (cached)" if isinstance(cached, str) else "")


def zoo_overview() -> list[dict[str, Any]]:
    """Every published model at 224x224: analytic params and MACs (both conventions), the
    paper's figures and where its weights come from."""
    rows = []
    for name in PUBLISHED:
        cost = encoding_cost(resolve_arch(name))
        pub = published_figures(name)
        rows.append(
            {
                "name": name,
                "params": cost.params,
                "macs_conv_linear": cost.macs_as("conv_linear"),
                "macs_all": cost.macs_as("all"),
                "published_params_m": pub["params_m"],
                "published_macs_m": pub["macs_m"],
                "published_top1": pub["top1"],
                "weights": weights_status(name),
            }
        )
    return rows


def run_zoo(*, repeats: int = 5, progress: Reporter | None = None) -> list[dict[str, Any]]:
    """Build every zoo model, count its params and MACs, and time a torch eager forward pass
    at batch 1, 224x224 (median of ``repeats`` after one warm-up); checks the output is finite."""
    import time

    import timm
    import torch

    from dna_zoo.complexity import count_macs, count_params

    rows = []
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    for name in reporter_or_null(progress).track(PUBLISHED, "running the zoo"):
        model = timm.create_model(name).eval()
        with torch.inference_mode():
            model(x)  # warm-up
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                out = model(x)
                times.append(time.perf_counter() - t0)
        times.sort()
        rows.append(
            {
                "model": name,
                "params": count_params(model),
                "macs_conv_linear": count_macs(model),
                "latency_ms_torch_eager_bs1": round(1000 * times[len(times) // 2], 2),
                "output_finite": bool(torch.isfinite(out).all()),
            }
        )
    return rows
