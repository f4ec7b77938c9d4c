"""Isolation for every test, and the helpers used by tests in more than one folder.

Helpers are factory fixtures: the fixture returns the function, so a test that takes
``tiny_space`` calls ``tiny_space()``. They are session-scoped, so fixtures of any scope can
use them; the ones that cost seconds (real Lite0 weights, a real ONNX export, a real search)
make their result once per test process.

Nothing heavy is imported at the top of this file: the environment below has to be set
before huggingface_hub is first imported.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from dna_zoo.export.artifact import Artifact
    from dna_zoo.search.latency.table import LatencyTable, TableSpec
    from dna_zoo.search.ratings import Ratings
    from dna_zoo.search.result import SearchResult
    from dna_zoo.search.space import SearchSpace

# Never touch the user's Hugging Face or dna-zoo caches from tests. huggingface_hub reads
# these variables once, at import (timm imports it while test modules are collected), so
# they are set here, before any test module is imported; each test then gets its own dirs.
_SESSION_HOME = tempfile.mkdtemp(prefix="dna-zoo-tests-")
os.environ["HF_HOME"] = os.path.join(_SESSION_HOME, "hf")
os.environ["HF_HUB_CACHE"] = os.path.join(_SESSION_HOME, "hf", "hub")
os.environ["DNA_ZOO_CACHE"] = os.path.join(_SESSION_HOME, "dna_zoo")
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

# The teacher path a search result must not carry into what is published.
_TEACHER_PATH = "/home/someone/.cache/dna-zoo/teachers/efficientnet_b0.safetensors"


@pytest.fixture(autouse=True)
def _isolated_hf_home(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("hf_home")
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "xdg"))
    monkeypatch.setenv("DNA_ZOO_CACHE", str(home / "dna_zoo"))


@pytest.fixture(autouse=True)
def _seed():
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(2)


# --- a reduced space and latency tables ------------------------------------------------------
def _tiny_net():
    """A three-block net of the small space's first two ops (8-64 channels): quick to retrain."""
    from dna_zoo.search.space import BlockSpec, SearchSpace, small_space

    space = SearchSpace(
        "tiny",
        blocks=(BlockSpec(16, 2, (1,)), BlockSpec(24, 2, (2,)), BlockSpec(32, 2, (1,))),
        ops=small_space().ops[:2],
        stem_size=8,
        num_features=64,
    )
    return space.to_encoding([next(space.block_candidates(b)) for b in range(3)], name="tiny_net")


@pytest.fixture(scope="session")
def tiny_net():
    """The encoding of :func:`_tiny_net` (retraining and export tests)."""
    return _tiny_net()


def _tiny_space() -> SearchSpace:
    """Two blocks, two ops: 9 table entries (stem, first layer, 6 block layers, head)."""
    from dna_zoo.arch import Op
    from dna_zoo.search.space import BlockSpec, SearchSpace

    return SearchSpace(
        name="tiny",
        blocks=(BlockSpec(24, 2, (1, 2)), BlockSpec(40, 2, (1,))),
        ops=(Op("ir", 3, 3, 0.25), Op("ir", 5, 6, 0.25)),
    )


def _tiny_spec(**kw) -> TableSpec:
    """A table spec for this CPU on onnxruntime, 32 px unless ``input_size`` says otherwise."""
    from dna_zoo.search.latency.build import resolve_spec

    return resolve_spec("cpu", "onnxruntime", input_size=kw.pop("input_size", 32), **kw)


def _fake_table(space: SearchSpace, spec: TableSpec, *, estimated: bool = False) -> LatencyTable:
    """A table whose entries are distinct known numbers (no measuring)."""
    from dna_zoo.search.latency.devices import get_device, identify
    from dna_zoo.search.latency.items import items_for
    from dna_zoo.search.latency.table import Calibration, Entry, LatencyTable

    items = items_for(space, spec, include_published=False)
    entries = {
        it.key: Entry(0.01 * (i + 1), 0.001, 21, "estimated" if estimated else "measured")
        for i, it in enumerate(items)
    }
    return LatencyTable(
        spec=spec,
        device_identity=identify(get_device(spec.device)).to_dict(),
        runtime_version="1.0",
        entries=entries,
        calibration=Calibration(1.1, 0.05, "test", ({"name": "n", "sum_ms": 1.0, "measured_ms": 1.15},)),
        estimated=estimated,
        method={"kind": "marginal-in-graph", "copies": 4},
    )


@pytest.fixture(scope="session")
def tiny_space() -> Callable[[], SearchSpace]:
    return _tiny_space


@pytest.fixture(scope="session")
def tiny_spec() -> Callable[..., TableSpec]:
    return _tiny_spec


@pytest.fixture(scope="session")
def fake_table() -> Callable[..., LatencyTable]:
    return _fake_table


# --- ratings ---------------------------------------------------------------------------------
def _synthetic_ratings(space: SearchSpace | str = "small", *, seed: int = 0, input_size: int = 32) -> Ratings:
    """Ratings for every candidate of ``space``.

    The losses are made up (a smooth function of the ops plus seeded noise): they are input
    data for the solver, not a result being faked. Real ratings come from `dna supernet rate`.
    """
    import numpy as np

    from dna_zoo.search.ratings import Ratings
    from dna_zoo.search.space import get_space

    sp = get_space(space) if isinstance(space, str) else space
    rng = np.random.default_rng(seed)
    losses = {}
    for b in range(len(sp.blocks)):
        for c in sp.block_candidates(b):
            bigger = sum(1.0 / (op.expansion * op.kernel) for op in c.ops) / len(c.ops)
            losses[c.key] = float(bigger + 0.3 / len(c.ops) + rng.normal(0, 0.02))
    return Ratings(sp, losses, input_size=input_size, data={"name": "synthetic-for-tests"})


def _write_ratings(path: Path, space: str = "small", **kw) -> Path:
    """A ratings file written by ``Ratings.save``."""
    return _synthetic_ratings(space, **kw).save(path)


@pytest.fixture(scope="session")
def synthetic_ratings() -> Callable[..., Ratings]:
    return _synthetic_ratings


@pytest.fixture(scope="session")
def write_ratings() -> Callable[..., Path]:
    return _write_ratings


# --- files -----------------------------------------------------------------------------------
def _files_in(folder: Path) -> list[str]:
    """Every file name in ``folder`` (hidden staging leftovers included)."""
    return sorted(p.name for p in Path(folder).rglob("*") if p.is_file()) if Path(folder).exists() else []


@pytest.fixture(scope="session")
def files_in() -> Callable[[Path], list[str]]:
    return _files_in


# --- real Lite0 weights and their ONNX export (export and CLI tests) ------------------------
@pytest.fixture(scope="session")
def lite0_weights(tmp_path_factory) -> Callable[[], Path]:
    """Real ImageNet EfficientNet-Lite0 weights as safetensors (from the built-in package)."""

    @cache
    def lite0_weights() -> Path:
        from dna_zoo.sample_images import write_lite0_safetensors

        return write_lite0_safetensors(tmp_path_factory.mktemp("lite0") / "lite0.safetensors")

    return lite0_weights


@pytest.fixture(scope="session")
def lite0_onnx(tmp_path_factory, lite0_weights) -> Callable[[], Artifact]:
    """tf_efficientnet_lite0 (real weights) exported to ONNX with a dynamic batch."""

    @cache
    def lite0_onnx() -> Artifact:
        from dna_zoo.export import export_artifact

        folder = tmp_path_factory.mktemp("lite0_onnx") / "onnx"
        return export_artifact(
            "tf_efficientnet_lite0", "onnx", folder, weights=lite0_weights(), dynamic=True, latency=False
        )

    return lite0_onnx


# --- a real search and a real export of its net (search contracts and hub tests) ------------
def _run_search(folder: Path) -> SearchResult:
    """A real search: ratings written and read back by the Ratings contract, an estimated
    latency table for a CPU + onnxruntime, the exact constrained search."""
    from dna_zoo.search.latency.build import resolve_spec
    from dna_zoo.search.latency.cost import LatencyCost
    from dna_zoo.search.latency.estimate import estimate_table
    from dna_zoo.search.ratings import Ratings
    from dna_zoo.search.strategy.constrained import Constraint, constrained_search
    from dna_zoo.search.strategy.cost import MacsCost

    space = _tiny_space()
    ratings = _synthetic_ratings(space, input_size=32)
    ratings.teacher = {
        "name": "efficientnet_b0",
        "weights": _TEACHER_PATH,
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


@pytest.fixture(scope="session")
def searched_result(tmp_path_factory) -> Callable[[], Path]:
    """``best.json`` of a real search over the tiny space (made once per test process)."""

    @cache
    def searched_result() -> Path:
        folder = tmp_path_factory.mktemp("search")
        return _run_search(folder).save(folder / "best.json")

    return searched_result


def _onnx_artifact(folder: Path, spec: Path, weights: Path | None) -> Path:
    """A real ``dna_zoo.export`` ONNX export of ``spec`` (32 px), manifest and latency included."""
    from dna_zoo.export import export_artifact

    art = export_artifact(str(spec), "onnx", folder, weights=weights, force=True, input_size=32)
    return art.path


@pytest.fixture(scope="session")
def onnx_artifact() -> Callable[[Path, Path, Path | None], Path]:
    return _onnx_artifact
