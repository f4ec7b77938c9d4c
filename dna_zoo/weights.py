"""Weights I/O without arbitrary unpickling.

Reads safetensors, and legacy ``.pth``/``.pth.tar`` checkpoints (the original DNA code's
format: a dict with ``state_dict`` and/or ``state_dict_ema``, keys maybe prefixed
``module.``) through ``torch.load(weights_only=True)``. A pickle that needs more than
tensors and plain containers is refused.
"""

from __future__ import annotations

import argparse
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from dna_zoo.errors import WeightsError

_NESTED_KEYS = ("state_dict_ema", "model_ema", "state_dict", "model")


def _torch_load(path: Path) -> Any:
    # argparse.Namespace holds the original training args in DNA/timm-0.1 checkpoints; it
    # is a plain attribute bag, so it is the one extra type allowed.
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle_errors() as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            raise WeightsError(
                f"{path} holds Python objects beyond tensors, refused for safety ({msg[:120]})",
                hint="convert it to safetensors in a trusted environment",
            ) from e
        raise WeightsError(
            f"{path} is not a readable checkpoint ({msg[:160]})",
            hint="the file may be truncated or corrupt; download it again",
        ) from e


def pickle_errors() -> tuple[type[BaseException], ...]:
    import pickle

    return (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError)


def read_state_dict(path: str | os.PathLike[str], *, use_ema: bool = True) -> dict[str, torch.Tensor]:
    """Read a state dict from safetensors or a legacy checkpoint, safely.

    For legacy checkpoints the EMA weights are preferred when present (``use_ema``), as
    the original DNA evaluation did.
    """
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"weights file {p} does not exist")
    if p.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(p))
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise WeightsError(
                f"{p} is not a valid safetensors file ({str(e)[:160]})",
                hint="the file may be truncated or corrupt; download it again",
            ) from e
    obj = _torch_load(p)
    return extract_state_dict(obj, use_ema=use_ema, source=str(p))


def extract_state_dict(
    obj: Any, *, use_ema: bool = True, source: str = "checkpoint"
) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint object, unwrapped and with ``module.`` prefixes removed."""
    if isinstance(obj, Mapping):
        keys = _NESTED_KEYS if use_ema else tuple(k for k in _NESTED_KEYS if "ema" not in k)
        for key in keys:
            if isinstance(obj.get(key), Mapping) and obj[key]:
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise WeightsError(f"{source} holds no state dict")
    out: dict[str, torch.Tensor] = {}
    for k, v in obj.items():
        if not isinstance(v, torch.Tensor):
            continue
        k = k[len("module.") :] if k.startswith("module.") else k
        out[k] = v
    if not out:
        raise WeightsError(f"{source} holds no tensors")
    return out


def checkpoint_filter_fn(state_dict: Mapping[str, Any], model: nn.Module) -> dict[str, torch.Tensor]:
    """timm ``pretrained_filter_fn``: accept original DNA checkpoints as they are.

    Shapes are checked here, before timm loads, so a checkpoint of another architecture is
    one clear error. The classifier and first conv are left to timm, which adapts them to
    ``num_classes`` and ``in_chans``.
    """
    sd = extract_state_dict(state_dict, use_ema=True)
    adaptable = ("classifier.", "conv_stem.")
    own = {k: v for k, v in model.state_dict().items() if not k.startswith(adaptable)}
    theirs = {k: v for k, v in sd.items() if not k.startswith(adaptable)}
    check_fits(own, theirs, source="pretrained checkpoint")
    return sd


def load_weights(model: nn.Module, path: str | os.PathLike[str], *, strict: bool = True) -> nn.Module:
    """Load a weights file into ``model``; a mismatch is one clear :class:`WeightsError`."""
    sd = read_state_dict(path)
    check_fits(model.state_dict(), sd, source=str(path))
    model.load_state_dict(sd, strict=strict)
    return model


def check_fits(
    own: Mapping[str, torch.Tensor], sd: Mapping[str, torch.Tensor], *, source: str = "weights"
) -> None:
    """Raise a :class:`WeightsError` naming what does not fit (missing, unexpected, shape).

    ``own`` is the model's state dict, ``sd`` the one to load.
    """
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    wrong = [k for k in own if k in sd and tuple(own[k].shape) != tuple(sd[k].shape)]
    if not (missing or unexpected or wrong):
        return
    parts = []
    if wrong:
        k = wrong[0]
        parts.append(
            f"{len(wrong)} tensors have the wrong shape (e.g. {k}: {tuple(sd[k].shape)} in file, "
            f"{tuple(own[k].shape)} in model)"
        )
    if missing:
        parts.append(f"{len(missing)} tensors missing (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[0]})")
    raise WeightsError(
        f"{source} does not fit the model: " + "; ".join(parts),
        hint="check that the weights belong to this architecture and number of classes",
    )


def save_safetensors(
    state_dict: Mapping[str, torch.Tensor],
    path: str | os.PathLike[str],
    *,
    metadata: dict | None = None,
) -> Path:
    """Write a state dict as safetensors atomically (temp file + rename)."""
    from safetensors.torch import save_file

    from dna_zoo.io import atomic_save

    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    meta = {k: str(v) for k, v in (metadata or {}).items()}
    return atomic_save(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
