"""Real (small) builds on ONNX Runtime: measured entries, cache, kill-and-resume, validate, CLI."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from dna_zoo.arch import load_encoding
from dna_zoo.cli.main import app
from dna_zoo.search.latency.build import build_table, resolve_spec
from dna_zoo.search.latency.cache import complete_path, partial_path
from dna_zoo.search.latency.cost import latency_cost_for
from dna_zoo.search.latency.items import items_for, random_network
from dna_zoo.search.latency.measurement import anchor_entries, measure_item
from dna_zoo.search.latency.runtimes import RuntimeOptions, TorchEager
from dna_zoo.search.latency.table import Entry, LatencyTable
from dna_zoo.search.latency.validate import save_report, validate_table
from dna_zoo.timing import TimingConfig

QUICK = TimingConfig.quick()
CAL = TimingConfig(warmup=1, runs_per_round=2, min_rounds=3, max_rounds=3, rel_tol=1.0)


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_space, tiny_spec):
    """One real build of the tiny space at 32x32 on ORT, in its own cache folder."""
    cache = tmp_path_factory.mktemp("latency_cache")
    spec = tiny_spec()
    table = build_table(
        tiny_space(), spec, include_published=False, timing=QUICK, calibration_timing=CAL, cache_dir=cache
    )
    return cache, spec, table


@pytest.mark.slow
def test_small_real_build(built, tiny_space):
    cache, spec, table = built
    keys = {it.key for it in items_for(tiny_space(), spec, include_published=False)}
    assert set(table.entries) == keys and len(keys) == 9
    assert all(e.source == "measured" and e.runs > 0 and e.median_ms >= 0 for e in table.entries.values())
    assert sum(e.median_ms for e in table.entries.values()) > 0
    assert not table.estimated and table.method["kind"] == "marginal-in-graph"
    assert table.calibration.method != "none" and len(table.calibration.networks) == 4
    assert table.runtime_version and table.library_versions["onnxruntime"]
    path = complete_path(spec, cache)
    assert path.is_file() and not partial_path(path).exists()
    assert LatencyTable.load(path, expect=spec).to_dict() == table.to_dict()
    # a second build finds everything cached and measures nothing
    again = build_table(tiny_space(), spec, include_published=False, timing=QUICK, cache_dir=cache)
    assert again.to_dict() == table.to_dict()


def test_cost_model_uses_the_cached_table(built, monkeypatch, tiny_space):
    cache, _spec, table = built
    monkeypatch.setenv("DNA_ZOO_CACHE", str(cache))
    cost = latency_cost_for(tiny_space(), device="cpu", runtime="onnxruntime", input_size=32)[0]
    assert cost.estimated is False and cost.table.to_dict() == table.to_dict()
    assert cost.unit == "ms" and cost.fixed_cost() > 0


def test_torch_eager_runtime_measures_a_layer(tmp_path, tiny_space):
    spec = resolve_spec("cpu", "torch", input_size=32)
    item = items_for(tiny_space(), spec, include_published=False)[3]
    rt = TorchEager(RuntimeOptions(threads=2))
    entry = measure_item(item, spec, rt, tmp_path, timing=QUICK)
    assert entry.source == "measured" and entry.runs == 9


@pytest.mark.slow
def test_torch_compile_runtime_times_the_compiled_module(tmp_path, tiny_space):
    from dna_zoo.search.latency.runtimes import get_runtime

    spec = resolve_spec("cpu", "compile", input_size=32)  # alias
    assert spec.runtime == "torch-compile"
    rt = get_runtime(spec.runtime, RuntimeOptions(threads=2))
    item = items_for(tiny_space(), spec, include_published=False)[3]
    calls = []
    import torch

    real = torch.compile
    try:
        torch.compile = lambda m, **kw: calls.append(kw) or real(m, **kw)
        entry = measure_item(item, spec, rt, tmp_path, timing=QUICK, copies=2)
    finally:
        torch.compile = real
    # the 1-copy and the k-copy models, both compiled
    assert calls == [{"dynamic": False, "backend": "inductor"}] * 2
    assert entry.source == "measured" and entry.runs == 9 and entry.median_ms >= 0
    assert "inductor" in rt.version()


# argv: the cache folder, the space file, the table spec as JSON (the test's own tiny_space / tiny_spec)
_KILL_SCRIPT = """
import json, sys
from dna_zoo.search.latency.build import build_table
from dna_zoo.search.latency.table import TableSpec
from dna_zoo.search.space import SearchSpace
from dna_zoo.timing import TimingConfig
space, spec = SearchSpace.load(sys.argv[2]), TableSpec(**json.loads(sys.argv[3]))
slow = TimingConfig(warmup=5, runs_per_round=5, min_rounds=30, max_rounds=30, rel_tol=0.0)
build_table(space, spec, include_published=False, timing=slow, cache_dir=sys.argv[1])
"""


@pytest.mark.slow
def test_killed_build_resumes(tmp_path, monkeypatch, tiny_space, tiny_spec):
    spec = tiny_spec()
    final = complete_path(spec, tmp_path)
    part = partial_path(final)
    space_file = tiny_space().save(tmp_path / "tiny-space.json")
    args = [str(tmp_path), str(space_file), json.dumps(spec.to_dict())]
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, *args])
    try:
        deadline = time.time() + 90
        done: dict = {}
        while time.time() < deadline and proc.poll() is None:
            if part.exists():
                done = json.loads(part.read_text())["entries"]
                if len(done) >= 2:
                    break
            time.sleep(0.1)
        assert proc.poll() is None, "the build finished before it could be killed"
        assert len(done) >= 2
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not final.exists()  # nothing in the cache looks complete
    kept = LatencyTable.load(part).entries
    assert 2 <= len(kept) < 9
    # the cost model does not take the partial file for a table: it falls back to an estimate
    monkeypatch.setenv("DNA_ZOO_CACHE", str(tmp_path))
    assert latency_cost_for(tiny_space(), device="cpu", runtime="ort", input_size=32)[0].estimated

    resumed = build_table(
        tiny_space(), spec, include_published=False, timing=QUICK, calibration_timing=CAL, cache_dir=tmp_path
    )
    assert final.exists() and not part.exists()
    assert set(resumed.entries) == {it.key for it in items_for(tiny_space(), spec, include_published=False)}
    ref_ms = resumed.meta["reference_ms"]
    for k, e in kept.items():  # measured before the kill, kept (only put on the build's time base)
        r = resumed.entries[k]
        assert (r.relative, r.runs) == (e.relative, e.runs) and e.relative is not None
        assert r.median_ms == pytest.approx(e.relative * ref_ms, rel=1e-4)  # both rounded in the file
    assert resumed.method["reference"] in resumed.entries


def test_anchor_entries_share_one_time_base():
    # the same layer ratios measured while the machine ran at three different speeds
    entries = {
        "a": Entry(2.0, 0.2, 7, "measured", 1.0),  # reference cost 2.0 ms in its rounds
        "b": Entry(1.5, 0.0, 7, "measured", 0.5),  # reference 3.0 ms (machine slower)
        "c": Entry(5.0, 0.5, 7, "measured", 2.0),  # reference 2.5 ms
        "d": Entry(0.7, 0.0, 7, "measured"),  # not reference-relative: left alone
    }
    ref = anchor_entries(entries)
    assert ref == pytest.approx(2.5)
    assert [entries[k].median_ms for k in "abc"] == pytest.approx([2.5, 1.25, 5.0])
    assert entries["c"].spread_ms == pytest.approx(0.5)
    assert entries["d"].median_ms == 0.7


@pytest.mark.slow
def test_validate_writes_json_and_png(built, tmp_path, tiny_space):
    _, _spec, table = built
    report = validate_table(table, tiny_space(), samples=4, timing=CAL)
    m = report.metrics
    assert m["n"] == 4 and 0 <= m["within_10pct"] <= 1 and -1 <= m["spearman_rho"] <= 1
    assert report.repeatability["mean_abs_pct_diff_between_passes"] >= 0
    assert report.estimator and report.estimator["raw"]["n"] == 4
    assert report.drift and report.drift["reference_networks"] == 4  # the calibration networks, again
    assert report.drift["machine_speed_ratio_now_vs_build"] > 0
    js, png = save_report(report, tmp_path / "val")
    assert json.loads(js.read_text())["metrics"] == m
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(Exception, match="already exists"):
        save_report(report, tmp_path / "val")


@pytest.mark.slow
def test_cli_validate_and_predict_on_a_built_table(built, tmp_path, tiny_space):
    cache, spec, _table = built
    space_file = tiny_space().save(tmp_path / "tiny.json")
    path = complete_path(spec, cache)
    runner = CliRunner()
    out = tmp_path / "v"
    args = ["latency", "validate", "--device", "cpu", "--runtime", "ort", "--input-size", "32"]
    args += [
        "--space",
        str(space_file),
        "--samples",
        "3",
        "--table",
        str(path),
        "--out",
        str(out),
        "--json",
        "-q",
    ]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert (
        data["metrics"]["n"] == 3
        and (out / "validation.png").is_file()
        and (out / "validation.json").is_file()
    )
    # predict a network of the space from the table, per stage
    net = tmp_path / "net.json"
    net.write_text(random_network(tiny_space(), random.Random(0), name="n0").to_json())
    r = runner.invoke(
        app, ["latency", "predict", str(net), "--input-size", "32", "--table", str(path), "--json"]
    )
    assert r.exit_code == 0, r.output
    (pred,) = json.loads(r.stdout)  # one object per network
    assert pred["estimated"] is False and pred["warning"] is None
    assert set(pred["stages_ms"]) == {"stem", "stage 0", "stage 1", "stage 2", "head", "overhead"}
    assert sum(pred["stages_ms"].values()) == pytest.approx(pred["latency_ms"], abs=1e-3)


def test_pipeline_measures_against_the_tables_own_speed(built):
    """The pipeline times its nets together with the table's calibration networks: the
    speed ratio is theirs now vs at build time (about 1 on one machine minutes apart)."""
    import timm

    from dna_zoo.search.pipeline import PipelineConfig, measure_latency

    _, spec, table = built
    assert table.calibration.networks and all("arch" in n for n in table.calibration.networks)
    enc = load_encoding(table.calibration.networks[0]["arch"])
    net = timm.create_model("dna_net", arch=enc, num_classes=spec.num_classes, in_chans=spec.in_chans)
    measured, speed = measure_latency({"net": net}, PipelineConfig(), spec.to_dict(), table)
    assert set(measured) == {"net"} and measured["net"] > 0
    assert speed is not None and 0.2 < speed < 5.0
    _, none = measure_latency({"net": net}, PipelineConfig(), spec.to_dict())
    assert none is None


def test_normalise_rounds_takes_out_a_speed_change_common_to_a_round():
    from dna_zoo.timing import normalise_rounds

    true = [1.0, 2.0, 3.0]
    speeds = [1.0, 1.3, 0.8, 1.0, 1.1]  # the machine's speed in each round
    rounds = [[t * s for t in true] for s in speeds]
    out = normalise_rounds(rounds)
    for r in out:  # every round now at the median round's speed (1.0)
        assert r == pytest.approx(true)
    one = [[0.5], [0.7]]
    assert normalise_rounds(one) == one  # a lone network has nothing to be normalised against
