"""``dna hub release FOLDER``: publish DNA-a..d from the authors' four original checkpoints.

For each of ``DNA_a.pth.tar`` .. ``DNA_d.pth.tar`` in ``FOLDER``:

1. convert it (checked strictly against its architecture: every key and shape);
2. check it on the built-in real ImageNet images and refuse a file whose top-1 there is
   obviously wrong (below ``min_top1``; chance level is 0.1%);
3. export ONNX, OpenVINO and the TensorRT-ready ONNX, each checked against torch, with the
   CPU latency measured here (in the manifests);
4. push the timm repo to the registered ``hf_hub_id`` with its card and the artifacts
   (``dry_run``: write the upload folder, upload nothing).

Everything is kept in ``FOLDER/release/<name>/`` with a ``state.json`` of the stages done
(and the checkpoint's sha256), so running the same command again after a failure resumes
where it stopped. Every checkpoint is looked at before anything is written: a missing one
is one clear error. The token is the client's (``HF_TOKEN`` / stored login) and never
written anywhere.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dna_zoo.errors import ConfigError, DataError, WeightsError
from dna_zoo.io import atomic_write_json, read_json, sha256_file

logger = logging.getLogger(__name__)

CHECKPOINTS = {f"dna_{x}": f"DNA_{x}.pth.tar" for x in "abcd"}
DEFAULT_FORMATS = ("onnx", "openvino", "trt-onnx")
#: Below this top-1 on the built-in ImageNet images a checkpoint is refused (the paper's nets reach ~77%).
DEFAULT_MIN_TOP1 = 0.25
STATE = "state.json"


@dataclass
class ReleasedModel:
    name: str
    repo_id: str
    checkpoint: Path
    top1: float | None = None
    n_images: int = 0
    artifacts: list[str] = field(default_factory=list)
    pushed: dict[str, Any] | None = None
    resumed: list[str] = field(default_factory=list)  # stages found done from an earlier run

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "repo_id": self.repo_id, "checkpoint": str(self.checkpoint),
            "top1_builtin": self.top1, "n_images": self.n_images, "artifacts": self.artifacts,
            "pushed": self.pushed, "resumed": self.resumed,
        }  # fmt: skip


def find_checkpoints(folder: str | os.PathLike[str]) -> dict[str, Path]:
    """The four original checkpoints in ``folder``; one error naming every missing one."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"release folder {root} does not exist or is not a folder")
    found = {name: root / file for name, file in CHECKPOINTS.items()}
    missing = [p.name for p in found.values() if not p.is_file()]
    if missing:
        raise DataError(
            f"{root} lacks {', '.join(missing)}: a release needs all four original checkpoints",
            hint="put DNA_a.pth.tar .. DNA_d.pth.tar (the authors' files) in the folder",
        )
    return found


def _export_options(fmt: str) -> tuple[str, dict[str, Any]]:
    if fmt == "trt-onnx":
        return "engine", {"onnx_only": True, "half": True}
    if fmt in ("onnx", "openvino"):
        return fmt, {}
    raise ConfigError(f"unknown release format '{fmt}'", hint=f"use {', '.join(DEFAULT_FORMATS)}")


def builtin_top1(model) -> tuple[float | None, int]:
    """Top-1 of ``model`` on the built-in labelled ImageNet images (None if they are unlabelled)."""
    import numpy as np

    from dna_zoo.export.inputs import data_config, image_set
    from dna_zoo.export.runners import torch_runner

    images = image_set(None, data_config(model))
    if not images.labelled:
        return None, len(images.labels)
    pred = torch_runner(model)(images.x).argmax(1)
    return float(np.mean(pred == np.asarray(images.labels))), len(images.labels)


def release(
    folder: str | os.PathLike[str],
    *,
    dry_run: bool = False,
    formats: Sequence[str] = DEFAULT_FORMATS,
    min_top1: float = DEFAULT_MIN_TOP1,
    latency: bool = True,
    say: Callable[[str], None] = lambda msg: None,
) -> list[ReleasedModel]:
    """Convert, check, export and push DNA-a..d from ``folder`` (see the module docstring)."""
    from dna_zoo.hub import client
    from dna_zoo.hub.convert import WEIGHTS_NAME, convert_checkpoint
    from dna_zoo.hub.push import push
    from dna_zoo.models import default_cfgs
    from dna_zoo.zoo import build_model

    checkpoints = find_checkpoints(folder)
    plans = [_export_options(f) for f in formats]
    if not dry_run:
        client.require_token()
    work = Path(folder) / "release"
    out: list[ReleasedModel] = []
    for name, ckpt in checkpoints.items():
        repo_id = default_cfgs[name].default.hf_hub_id
        rel = ReleasedModel(name, repo_id, ckpt)
        d = work / name
        digest = sha256_file(ckpt)
        state_path = d / STATE
        state = read_json(state_path, what="release state") if state_path.is_file() else {}
        if state.get("checkpoint_sha256") != digest:  # a new file: start this model again
            shutil.rmtree(d, ignore_errors=True)
            state = {"checkpoint_sha256": digest, "done": {}}
        d.mkdir(parents=True, exist_ok=True)
        done: dict[str, Any] = state["done"]

        def mark(stage: str, value: Any, d: Path = d, state: dict = state) -> None:
            state["done"][stage] = value
            atomic_write_json(d / STATE, state)

        weights = d / "model" / WEIGHTS_NAME
        if "convert" in done and weights.is_file():
            rel.resumed.append("convert")
        else:
            say(f"{name}: convert {ckpt.name} (strict)")
            convert_checkpoint(ckpt, name, d / "model", force=True)
            mark("convert", sha256_file(weights))

        if "check" in done:
            rel.top1, rel.n_images = done["check"]["top1"], done["check"]["n_images"]
            rel.resumed.append("check")
        else:
            say(f"{name}: check on the built-in ImageNet images")
            rel.top1, rel.n_images = builtin_top1(build_model(name, weights=weights))
            if rel.top1 is not None and rel.top1 < min_top1:
                raise WeightsError(
                    f"refusing {ckpt.name}: top-1 {rel.top1:.0%} on {rel.n_images} built-in ImageNet images "
                    f"is below {min_top1:.0%} (chance is 0.1%): these are not trained {name} weights",
                    hint="check the file; nothing of this model was exported or pushed",
                )
            if rel.top1 is None:
                logger.warning("the built-in images are unlabelled here: %s's accuracy is not checked", name)
            mark("check", {"top1": rel.top1, "n_images": rel.n_images})

        from dna_zoo.export import export_artifact
        from dna_zoo.export.registry import get_format

        arts = d / "artifacts"
        for label, (fmt, opts) in zip(formats, plans, strict=True):
            if label in done.get("export", {}) and Path(done["export"][label]).is_file():
                rel.resumed.append(f"export {label}")
            else:
                say(f"{name}: export {label} (parity with torch, CPU latency)")
                if "latency" in get_format(fmt).options:
                    opts = {**opts, "latency": latency}
                art = export_artifact(name, fmt, arts / label, weights=weights, force=True, **opts)
                mark("export", {**done.get("export", {}), label: str(art.path)})
            rel.artifacts.append(done["export"][label])

        say(f"{name}: {'write the upload folder' if dry_run else 'push'} {repo_id}")
        res = push(
            name, weights=weights, repo_id=repo_id, artifacts_dir=arts, dry_run=dry_run,
            out=d / "upload" if dry_run else None, force=True,
            commit_message=f"dna hub release: {name} from {ckpt.name}",
        )  # fmt: skip
        rel.pushed = res.to_dict()
        if not dry_run:
            mark("push", {"commit": res.commit})
        out.append(rel)
    return out
