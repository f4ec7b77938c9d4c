"""Helpers shared by the hub tests: point huggingface_hub's real client at the local server,
make weights, a small searched net, and an ONNX artifact with its manifest."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

TOKEN = "hf_dnazooTESTtoken7f3a9c1e5b2d4"  # recognisable: the tests grep for it
OTHER_TOKEN = "hf_notTheRightOne000000000000"

TINY_ARCH_DEF = [
    ["ds_r1_k3_s1_c16"],
    ["ir_r1_k3_s2_e3_c24_se0.25", "ir_r1_k5_s1_e6_c24_se0.25"],
    ["ir_r1_k5_s2_e6_c40_se0.25"],
]


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


def tiny_encoding(name: str = "tiny-net"):
    from dna_zoo.arch import ArchEncoding

    return ArchEncoding.from_arch_def(TINY_ARCH_DEF, stem_size=16, num_features=128, name=name)


def write_search_result(path: Path, **extra) -> Path:
    data = {
        "arch": tiny_encoding().to_dict(),
        "latency": {"device": "jetson-orin", "runtime": "tensorrt", "precision": "fp16", "ms": 1.85},
        "top1": 88.4,
        "dataset": "fashion_mnist",
        **extra,
    }
    path.write_text(json.dumps(data, indent=2))
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


def onnx_artifact(folder: Path, model: torch.nn.Module, x: torch.Tensor) -> Path:
    """A real ONNX export of ``model`` with the manifest the export library writes."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    torch.onnx.export(model.eval(), (x,), str(path), opset_version=17, dynamo=False, input_names=["input"])
    write_manifest(
        path,
        format="onnx",
        precision="fp32",
        parity={"max_abs_diff": 2.1e-6, "top1_agreement": 1.0},
        latency={"device": "cpu-2t", "runtime": "onnxruntime", "precision": "fp32", "ms": 0.9},
    )
    return path


def write_manifest(path: Path, *, format: str, precision: str, **extra) -> Path:
    manifest = {
        "format": format,
        "precision": precision,
        "file": path.name,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "source": "tiny-net",
        "parity": extra.pop("parity", {}),
        "versions": {"torch": torch.__version__},
        **extra,
    }
    mpath = path.with_name(path.name + ".manifest.json")
    mpath.write_text(json.dumps(manifest, indent=2))
    return mpath


def engine_artifact(folder: Path, *, version: str, gpu: str, cc: str) -> Path:
    """Stand-in bytes for a TensorRT engine (TensorRT cannot run here) with a real-format manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.engine"
    path.write_bytes(b"not-a-real-engine:" + version.encode() + gpu.encode())
    write_manifest(
        path,
        format="trt",
        precision="fp16",
        parity={"max_abs_diff": 1.2e-3},
        trt={"version": version, "gpu": gpu, "compute_capability": cc},
    )
    return path
