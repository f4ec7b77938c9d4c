"""The pipeline's orchestration: run directory checks, resume of finished stages, baseline
choice, ONNX export with parity, and the CLI's pipeline mode refusing bad input early.

The expensive stages (teacher, supernet, retraining) have their own tests; here a run
directory that already holds ratings skips them, as a resumed run does.
"""

from __future__ import annotations

import json

import pytest
import timm
import torch
from typer.testing import CliRunner

import dna_zoo  # noqa: F401
from dna_zoo.cli.main import app
from dna_zoo.errors import ConfigError
from dna_zoo.search.pipeline import (
    Budgets,
    PipelineConfig,
    baseline_network,
    export_onnx_checked,
    run_pipeline,
)
from dna_zoo.search.space import small_space
from dna_zoo.search.strategy.cost import ParamsCost


def _cfg(**kw):
    return PipelineConfig(
        teacher_weights="unused.safetensors", retrain_epochs=0, budgets=Budgets(params=3.2e6), **kw
    )


@pytest.mark.slow
def test_resumed_run_searches_exports_and_reports(tmp_path, write_ratings):
    run = tmp_path / "run"
    cfg = _cfg()
    run.mkdir()
    (run / "pipeline.json").write_text(json.dumps(cfg.to_dict()))
    write_ratings(run / "ratings.json", "small")  # as left by the supernet stage
    report = run_pipeline(run, cfg)
    assert report["supernet"] == {"reused": True}
    best = json.loads((run / "best.json").read_text())
    assert best["params"] <= 3.2e6 and (run / "pareto.png").is_file()
    for name, onnx in (("searched", "best.onnx"), ("baseline", "baseline.onnx")):
        assert report["export"][name]["max_abs_diff"] < 1e-4 and (run / onnx).is_file()
    b = report["baseline"]
    assert b["arch_def"] != best["arch_def"] and abs(b["predicted"] - best["params"]) / best["params"] < 0.05
    # the obvious choice under the same budget: the most MACs that fit
    mm = report["most_macs"]
    assert mm["predicted"] <= 3.2e6 and (mm["same_as_searched"] or (run / "most_macs.onnx").is_file())
    assert report["budget"]["cost"] == "params" and 0 <= report["budget"]["excluded_share"] <= 1
    assert json.loads((run / "report.json").read_text())["search"]["rating"] == best["rating"]


def test_run_dir_with_other_settings_is_refused(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "pipeline.json").write_text(json.dumps(_cfg().to_dict()))
    with pytest.raises(ConfigError, match="other settings"):
        run_pipeline(run, _cfg(seed=1))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "file.txt").write_text("x")
    with pytest.raises(ConfigError, match="not a pipeline run directory"):
        run_pipeline(tmp_path / "other", _cfg())


def test_baseline_is_the_closest_other_network():
    space = small_space()
    model = ParamsCost(space, input_size=32, num_classes=10)
    chosen = [next(space.block_candidates(b)).key for b in range(len(space.blocks))]
    costs = [[model.cost(c) for c in space.block_candidates(b)] for b in range(len(space.blocks))]
    target = model.fixed_cost() + sum((min(c) + max(c)) / 2 for c in costs)  # mid-range
    enc, cost = baseline_network(space, model, target, chosen, seed=0, draws=500)
    assert cost == model.network_cost(enc)
    assert [c.key for c in space.from_encoding(enc)] != chosen
    assert abs(cost - target) / target < 0.05


@pytest.mark.parametrize("in_chans", [3, 1])
def test_export_parity(tmp_path, in_chans):
    enc = small_space().to_encoding([next(small_space().block_candidates(b)) for b in range(6)])
    m = timm.create_model("dna_net", arch=enc, num_classes=10, in_chans=in_chans)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.01 * torch.randn_like(p))
    out = export_onnx_checked(m, tmp_path / "m.onnx", input_size=32, in_chans=in_chans)
    assert out["max_abs_diff"] < 1e-4 and (tmp_path / "m.onnx").stat().st_size > 100_000
    # dna_zoo.export's standard check: ONNX Runtime vs torch on the real built-in images
    assert (
        out["parity"]["passed"] and out["parity"]["n_images"] == 20 and "ImageNet" in out["parity"]["images"]
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # nothing left beside it


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--params", "0"], "must be positive"),
        (["--latency-ms", "5"], "needs a device"),
        ([], "at least one budget"),
        (["--ratings", "r.json", "--params", "5M"], "not both"),
    ],
)
def test_cli_pipeline_bad_input_fails_before_any_work(tmp_path, args, message):
    res = CliRunner().invoke(app, ["search", "--data", "builtin", "--out", str(tmp_path / "run"), *args])
    assert res.exit_code == 1 and message in res.output, res.output
    assert not (tmp_path / "run").exists()
