"""Helpers of the hub tests as fixtures: point huggingface_hub's real client at a local Hub
server (hub_server.py, next to this file) and build every input with its real producer: a
searched net from a real constrained search (tests/conftest.py), ONNX artifacts from
``dna_zoo.export``, a retrain output from its writer with a top-1 measured on real images."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch

# pytest's default (prepend) import mode puts this folder, which has a conftest.py and no
# __init__.py, on sys.path: hub_server.py next to it imports as a top-level module.
from hub_server import HubServer

if TYPE_CHECKING:
    from dna_zoo.arch import ArchEncoding

_TOKEN = "hf_dnazooTESTtoken7f3a9c1e5b2d4"  # recognisable: the tests grep for it
_OTHER_TOKEN = "hf_notTheRightOne000000000000"


@pytest.fixture(scope="session")
def token() -> str:
    """The token the local Hub accepts (``HF_TOKEN`` inside ``local_hub``)."""
    return _TOKEN


@pytest.fixture(scope="session")
def other_token() -> str:
    """A well-formed token the local Hub rejects."""
    return _OTHER_TOKEN


# --- huggingface_hub's client ----------------------------------------------------------------
def _set_offline(mp: pytest.MonkeyPatch, offline: bool) -> None:
    from huggingface_hub import constants

    if offline:
        mp.setenv("HF_HUB_OFFLINE", "1")
    else:
        mp.delenv("HF_HUB_OFFLINE", raising=False)
    mp.setattr(constants, "HF_HUB_OFFLINE", offline)


def _client_env(mp: pytest.MonkeyPatch, endpoint: str, home: Path, *, offline: bool = False) -> None:
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
    _set_offline(mp, offline)


@contextmanager
def _local_hub(mp: pytest.MonkeyPatch, home: Path) -> Iterator[HubServer]:
    """A running local Hub that huggingface_hub's client talks to, with a valid HF_TOKEN."""
    server = HubServer(tokens={_TOKEN: "tester"}).start()
    try:
        _client_env(mp, server.endpoint, home)
        mp.setenv("HF_TOKEN", _TOKEN)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def client_env() -> Callable[..., None]:
    return _client_env


@pytest.fixture(scope="session")
def set_offline() -> Callable[[pytest.MonkeyPatch, bool], None]:
    return _set_offline


@pytest.fixture(scope="session")
def local_hub() -> Callable[[pytest.MonkeyPatch, Path], AbstractContextManager[HubServer]]:
    """``with local_hub(monkeypatch, home) as server``: a started server, stopped at exit."""
    return _local_hub


# --- weights and outputs ---------------------------------------------------------------------
def _random_weights(path: Path, model_name: str, seed: int = 0, **kwargs) -> Path:
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


@pytest.fixture(scope="session")
def random_weights() -> Callable[..., Path]:
    return _random_weights


@pytest.fixture(scope="session")
def tiny_encoding(searched_result) -> Callable[..., ArchEncoding]:
    """The searched net's encoding."""

    def tiny_encoding(name: str = "tiny-net") -> ArchEncoding:
        from dna_zoo.search.result import SearchResult

        return SearchResult.load(searched_result()).arch

    return tiny_encoding


@pytest.fixture(scope="session")
def write_search_result(searched_result) -> Callable[[Path], Path]:
    """A copy of the real search's ``best.json`` at ``path``."""

    def write_search_result(path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(searched_result(), path)
        return path

    return write_search_result


@pytest.fixture(scope="session")
def reference_output(tiny_encoding) -> Callable[..., torch.Tensor]:
    """The torch output of ``model_name`` with ``weights`` on ``x`` (dna_net: the searched net)."""

    def reference_output(model_name: str, weights: Path, x: torch.Tensor, **kwargs) -> torch.Tensor:
        import timm

        from dna_zoo.weights import load_weights

        if model_name == "dna_net":
            kwargs["arch"] = tiny_encoding()
        model = timm.create_model(model_name, **kwargs)
        load_weights(model, weights)
        with torch.no_grad():
            return model.eval()(x)

    return reference_output


@pytest.fixture(scope="session")
def write_retrain_output(searched_result, tiny_encoding) -> Callable[[Path, Path], Path | None]:
    """``config.json`` of the retrain output for ``weights``, written by its real writer, with the
    top-1 of those weights measured on 64 real Fashion-MNIST test images (None without the data)."""

    def write_retrain_output(folder: Path, weights: Path) -> Path | None:
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

    return write_retrain_output


# --- manifests -------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def write_manifest(tmp_path_factory, searched_result, onnx_artifact) -> Callable[..., Path]:
    """A manifest for ``path``: a real export's manifest with these fields changed."""

    @cache
    def real_manifest() -> str:
        onnx = onnx_artifact(tmp_path_factory.mktemp("manifest") / "onnx", searched_result(), None)
        return onnx.with_name(onnx.name + ".manifest.json").read_text()

    def write_manifest(path: Path, *, format: str, precision: str, **extra) -> Path:
        from dna_zoo.io import sha256_file

        manifest = json.loads(real_manifest())
        manifest.update(file=path.name, sha256=sha256_file(path), format=format, precision=precision, **extra)
        manifest["files"] = {path.name: {"sha256": manifest["sha256"], "bytes": path.stat().st_size}}
        for name in extra.get("extra_files", []):
            p = path.with_name(name)
            manifest["files"][name] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        manifest.pop("extra_files", None)
        mpath = path.with_name(path.name + ".manifest.json")
        mpath.write_text(json.dumps(manifest, indent=1))
        return mpath

    return write_manifest


@pytest.fixture(scope="session")
def engine_artifact(write_manifest) -> Callable[..., Path]:
    """Stand-in bytes for a TensorRT engine (TensorRT cannot run here) with a real export's
    manifest, changed to say what an engine manifest says."""

    def engine_artifact(folder: Path, *, version: str, gpu: str, cc: str) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "model.engine"
        path.write_bytes(b"not-a-real-engine:" + version.encode() + gpu.encode())
        write_manifest(
            path, format="engine", precision="fp16", latency={},
            trt={"version": version, "gpu": gpu, "compute_capability": cc},
        )  # fmt: skip
        return path

    return engine_artifact
