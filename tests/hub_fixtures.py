"""Helpers shared by the hub tests: point huggingface_hub's real client at the local server,
make weights, and build every input with its real producer: a searched net from a real
constrained search over a ratings file (written by ``Ratings.save``) and an estimated latency
table, ONNX artifacts from ``dna_zoo.export``, a retrain output from its writer with a top-1
measured on real images."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

TOKEN = "hf_dnazooTESTtoken7f3a9c1e5b2d4"  # recognisable: the tests grep for it
OTHER_TOKEN = "hf_notTheRightOne000000000000"

TEACHER_PATH = "/home/someone/.cache/dna-zoo/teachers/efficientnet_b0.safetensors"  # must not leak
_CACHE: dict[str, Path] = {}


def _cache_dir() -> Path:
    import tempfile

    if "dir" not in _CACHE:
        _CACHE["dir"] = Path(tempfile.mkdtemp(prefix="dna-hub-fixtures-"))
    return _CACHE["dir"]


def client_env(mp: pytest.MonkeyPatch, endpoint: str, home: Path, *, offline: bool = False) -> None:
    """Configure huggingface_hub as a fresh process with HF_ENDPOINT / HF_HOME set would be.

    The client reads these environment variables once, at import; tests in one process set
    the variables and the values the client derived from them at import.
    """
    from huggingface_hub import constants

    home.mkdir(parents=True, exist_ok=True)
    mp.setenv("HF_ENDPOINT", endpoint)
    mp.setenv("HF_HOME", str(home))
    mp.setenv("HF_HUB_CACHE", str(home / "hub"))
    mp.setattr(constants, "ENDPOINT", endpoint)
    mp.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    )
    mp.setattr(constants, "HF_HOME", str(home))
    mp.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    mp.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    mp.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    set_offline(mp, offline)


@contextmanager
def local_hub(mp: pytest.MonkeyPatch, home: Path) -> Iterator:
    """A running local Hub that huggingface_hub's client talks to, with a valid HF_TOKEN."""
    from hub_server import HubServer

    server = HubServer(tokens={TOKEN: "tester"}).start()
    try:
        client_env(mp, server.endpoint, home)
        mp.setenv("HF_TOKEN", TOKEN)
        yield server
    finally:
        server.stop()


def set_offline(mp: pytest.MonkeyPatch, offline: bool) -> None:
    from huggingface_hub import constants

    if offline:
        mp.setenv("HF_HUB_OFFLINE", "1")
    else:
        mp.delenv("HF_HUB_OFFLINE", raising=False)
    mp.setattr(constants, "HF_HUB_OFFLINE", offline)


def use_cache(mp: pytest.MonkeyPatch, cache: Path) -> None:
    from huggingface_hub import constants

    mp.setenv("HF_HUB_CACHE", str(cache))
    mp.setattr(constants, "HF_HUB_CACHE", str(cache))


def run_search(folder: Path):
    """A real search: ratings written and read back by the Ratings contract, an estimated
    latency table for a CPU + onnxruntime, the exact constrained search. Returns the result."""
    from latency_helpers import tiny_space
    from search_helpers import synthetic_ratings

    from dna_zoo.search.latency.build import resolve_spec
    from dna_zoo.search.latency.cost import LatencyCost
    from dna_zoo.search.latency.estimate import estimate_table
    from dna_zoo.search.ratings import Ratings
    from dna_zoo.search.strategy.constrained import Constraint, constrained_search
    from dna_zoo.search.strategy.cost import MacsCost

    space = tiny_space()
    ratings = synthetic_ratings(space, input_size=32)
    ratings.teacher = {
        "name": "efficientnet_b0",
        "weights": TEACHER_PATH,
        "weights_sha256": "0123456789abcdef",
    }
    path = ratings.save(folder / "ratings.json")
    ratings = Ratings.load(path)
    spec = resolve_spec("cpu", "onnxruntime", input_size=32, num_classes=10)
    latency = LatencyCost(space, estimate_table(space, spec, include_published=False))
    macs = MacsCost(space, input_size=32, num_classes=10)
    return constrained_search(
        ratings, [Constraint(latency, 1e9)], extra_models=[macs],
        name="tiny-net", ratings_path=str(path),
    )  # fmt: skip


def searched_result() -> Path:
    """``best.json`` of the real search (made once per test process)."""
    if "result" not in _CACHE:
        folder = _cache_dir() / "search"
        folder.mkdir(parents=True, exist_ok=True)
        _CACHE["result"] = run_search(folder).save(folder / "best.json")
    return _CACHE["result"]


def tiny_encoding(name: str = "tiny-net"):
    """The searched net's encoding."""
    from dna_zoo.search.result import SearchResult

    return SearchResult.load(searched_result()).arch


def write_search_result(path: Path) -> Path:
    """A copy of the real search's ``best.json`` at ``path``."""
    import shutil

    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(searched_result(), path)
    return path


def random_weights(path: Path, model_name: str, seed: int = 0, **kwargs) -> Path:
    """Weights of a randomly initialised model (BN statistics perturbed so they matter)."""
    import timm

    import dna_zoo  # noqa: F401
    from dna_zoo.weights import save_safetensors

    torch.manual_seed(seed)
    model = timm.create_model(model_name, **kwargs)
    sd = model.state_dict()
    g = torch.Generator().manual_seed(seed)
    for k, v in sd.items():
        if k.endswith("running_mean"):
            v.copy_(torch.randn(v.shape, generator=g) * 0.1)
        elif k.endswith("running_var"):
            v.copy_(torch.rand(v.shape, generator=g) + 0.5)
    save_safetensors(sd, path)
    return path


def reference_output(model_name: str, weights: Path, x: torch.Tensor, **kwargs) -> torch.Tensor:
    import timm

    from dna_zoo.weights import load_weights

    if model_name == "dna_net":
        kwargs["arch"] = tiny_encoding()

    model = timm.create_model(model_name, **kwargs)
    load_weights(model, weights)
    with torch.no_grad():
        return model.eval()(x)


def onnx_artifact(folder: Path, spec: Path, weights: Path | None) -> Path:
    """A real ``dna_zoo.export`` ONNX export of ``spec`` (32 px), manifest and latency included."""
    from dna_zoo.export import export_artifact

    art = export_artifact(str(spec), "onnx", folder, weights=weights, force=True, input_size=32)
    return art.path


def write_retrain_output(folder: Path, weights: Path) -> Path | None:
    """``config.json`` of the retrain output for ``weights``, written by its real writer, with the
    top-1 of those weights measured on 64 real Fashion-MNIST test images (None without the data)."""
    import shutil

    from dna_zoo.errors import DataError
    from dna_zoo.search.retrain import DataInfo, RetrainOutput, evaluate
    from dna_zoo.search.supernet.data import open_dataset
    from dna_zoo.zoo import build_model

    try:
        train = open_dataset("builtin", split="train", input_size=32, limit=64)
        val = open_dataset("builtin", split="val", input_size=32, limit=64)
    except DataError:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(weights, folder / "model.safetensors")
    enc = tiny_encoding()
    model = build_model(str(searched_result()), weights=weights)
    top1 = evaluate(model, val.dataset, batch_size=64, channels_last=False)
    out = RetrainOutput(
        enc, 10, 3, DataInfo.from_source("builtin", train, input_size=32), top1, {"kept": "model"}
    )
    out.save(folder / "config.json")
    return folder / "model.safetensors"


def _real_manifest_for(path: Path, **changes) -> Path:
    """The manifest of a real ONNX export, rewritten for ``path`` with ``changes``."""
    from dna_zoo.io import sha256_file

    if "onnx" not in _CACHE:
        _CACHE["onnx"] = onnx_artifact(_cache_dir() / "onnx", searched_result(), None)
    manifest = json.loads(_CACHE["onnx"].with_name(_CACHE["onnx"].name + ".manifest.json").read_text())
    manifest.update(file=path.name, sha256=sha256_file(path), **changes)
    manifest["files"] = {path.name: {"sha256": manifest["sha256"], "bytes": path.stat().st_size}}
    for name in changes.get("extra_files", []):
        p = path.with_name(name)
        manifest["files"][name] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    manifest.pop("extra_files", None)
    mpath = path.with_name(path.name + ".manifest.json")
    mpath.write_text(json.dumps(manifest, indent=1))
    return mpath


def write_manifest(path: Path, *, format: str, precision: str, **extra) -> Path:
    """A manifest for ``path``: a real export's manifest with these fields changed."""
    return _real_manifest_for(path, format=format, precision=precision, **extra)


def engine_artifact(folder: Path, *, version: str, gpu: str, cc: str) -> Path:
    """Stand-in bytes for a TensorRT engine (TensorRT cannot run here) with a real export's
    manifest, changed to say what an engine manifest says."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.engine"
    path.write_bytes(b"not-a-real-engine:" + version.encode() + gpu.encode())
    write_manifest(
        path, format="engine", precision="fp16", latency={},
        trt={"version": version, "gpu": gpu, "compute_capability": cc},
    )  # fmt: skip
    return path
