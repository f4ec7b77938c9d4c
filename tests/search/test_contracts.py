"""Every versioned file: written by its real producer, read back by its one reader; a file of
another version (the real file with its version number altered) is one line saying how to redo it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dna_zoo.errors import DataError, DnaZooError, FileFormatError
from dna_zoo.search.ratings import Ratings
from dna_zoo.search.result import SearchResult


def _search(tmp_path: Path, ratings: Ratings) -> Path:
    from dna_zoo.search.strategy.constrained import Constraint, constrained_search
    from dna_zoo.search.strategy.cost import MacsCost

    ratings.teacher = {"name": "efficientnet_b0", "weights": "/home/x/t.safetensors", "weights_sha256": "ab"}
    path = ratings.save(tmp_path / "ratings.json")
    macs = MacsCost(ratings.space, input_size=32, num_classes=10)
    result = constrained_search(Ratings.load(path), [Constraint(macs, 1e12)], ratings_path=str(path))
    return result.save(tmp_path / "best.json")


def _altered(path: Path, key: str, value, out: Path | None = None) -> Path:
    d = json.loads(path.read_text())
    node = d
    *parents, last = key.split(".")
    for k in parents:
        node = node[k]
    node[last] = value
    out = out or path.with_name("altered-" + path.name)
    out.write_text(json.dumps(d))
    return out


def _one_line(e: pytest.ExceptionInfo) -> str:
    text = str(e.value)
    assert "\n" not in text and "hint:" in text
    return text


def test_ratings_and_search_result_versions(tmp_path, synthetic_ratings):
    best = _search(tmp_path, synthetic_ratings("small", input_size=32))
    r = SearchResult.load(best)
    assert r.ratings["file"] == "ratings.json" and "/home" not in best.read_text()
    for path, reader, redo in (
        (tmp_path / "ratings.json", Ratings.load, "dna supernet rate"),
        (best, SearchResult.load, "dna search"),
    ):
        for version, word in ((0, "version 0"), (99, "upgrade dna-zoo")):
            with pytest.raises(FileFormatError) as e:
                reader(_altered(path, "version", version))
            assert word in _one_line(e) and redo in str(e.value)


def test_a_version_1_search_result_with_local_paths_loads_portable(tmp_path, synthetic_ratings):
    """A result written before the summary was portable (ratings path, teacher weights path)."""
    best = _search(tmp_path, synthetic_ratings("small", input_size=32))
    old = _altered(best, "ratings.path", "/home/x/run/ratings.json")
    old = _altered(
        old, "ratings.teacher", {"name": "t", "weights": "/home/x/t.pt", "weights_sha256": "ab"}, old
    )
    r = SearchResult.load(old)
    assert r.ratings["file"] == "ratings.json" and r.ratings["teacher"] == {
        "name": "t",
        "weights_sha256": "ab",
    }
    assert "/home" not in json.dumps(r.to_dict())


def test_supernet_run_version(tmp_path):
    from dna_zoo.search.supernet.run import RunDir

    rd = RunDir(tmp_path / "run")
    rd.create({"space": {}, "options": {}})
    assert rd.read()["version"] == 1
    _altered(rd.run_json, "version", 7, rd.run_json)
    with pytest.raises(FileFormatError) as e:
        rd.read()
    assert "dna supernet train" in _one_line(e)


def test_latency_table_version(tmp_path, fake_table, tiny_space, tiny_spec):
    from dna_zoo.search.latency.table import LatencyTable

    path = fake_table(tiny_space(), tiny_spec()).save(tmp_path / "t.json")
    assert LatencyTable.load(path).spec == tiny_spec()
    with pytest.raises(DnaZooError) as e:  # already versioned: its own LatencyTableError
        LatencyTable.load(_altered(path, "version", 0))
    assert "dna latency build" in _one_line(e)


def _retrain_output(tmp_path: Path) -> Path:
    from dna_zoo.search.retrain import DataInfo, RetrainOutput
    from dna_zoo.search.space import small_space
    from dna_zoo.search.supernet.data import open_dataset

    try:
        train = open_dataset("builtin", split="train", input_size=32, limit=8)
    except DataError as e:
        pytest.skip(str(e))
    space = small_space()  # the space of synthetic_ratings("small")
    enc = space.to_encoding([next(iter(space.block_candidates(b))) for b in range(6)])
    out = RetrainOutput(
        enc, 10, 3, DataInfo.from_source("builtin", train, input_size=32), 81.5, {"kept": "ema"}
    )
    return out.save(tmp_path / "config.json")


def test_retrain_output_records_the_data_sources_normalisation(tmp_path):
    from dna_zoo.search.retrain import RetrainOutput

    path = _retrain_output(tmp_path)
    out = RetrainOutput.load(tmp_path)
    assert out.data.mean == (0.286,) * 3 and out.data.std == (0.353,) * 3 and out.top1 == 81.5
    assert len(out.data.classes) == 10 and out.data.name == "fashion-mnist"
    cfg = json.loads(path.read_text())
    assert cfg["pretrained_cfg"]["mean"] == [0.286] * 3  # what timm normalises with
    # the previous version (no format/version in the dna_zoo section) loads
    old = json.loads(path.read_text())
    del old["dna_zoo"]["format"], old["dna_zoo"]["version"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert RetrainOutput.load(tmp_path / "old.json").top1 == 81.5
    with pytest.raises(FileFormatError) as e:
        RetrainOutput.load(_altered(path, "dna_zoo.version", 5))
    assert "dna retrain" in _one_line(e)


def test_export_manifest_versions(tmp_path, onnx_artifact, searched_result):
    """A real export's manifest (v2), the same file as v1 (no artifact name: the first runner
    timed is the artifact's), and an unknown version refused."""
    from dna_zoo.export import load_manifest

    art = onnx_artifact(tmp_path / "x", searched_result(), None)
    m = load_manifest(art)
    assert m.version == 2 and m.own_timing is not None and m.own_timing.runner == "onnxruntime fp32"
    mpath = art.with_name(art.name + ".manifest.json")
    raw = json.loads(mpath.read_text())
    assert "/" not in raw["source"]["model"]
    raw["manifest_version"] = 1
    del raw["latency"]["artifact"]
    mpath.write_text(json.dumps(raw))
    assert load_manifest(art).own_timing.runner == "onnxruntime fp32"
    _altered(mpath, "manifest_version", 3, mpath)
    with pytest.raises(DataError) as e:
        load_manifest(art)
    assert "dna export" in _one_line(e)
