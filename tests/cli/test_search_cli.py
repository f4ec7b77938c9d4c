"""`dna search` and `dna retrain` from the command line: happy paths and bad input."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from dna_zoo.cli.main import app
from dna_zoo.search.result import SearchResult

runner = CliRunner()


@pytest.fixture
def ratings(tmp_path, write_ratings):
    return write_ratings(tmp_path / "run" / "ratings.json", "small")


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_search_params_writes_result_and_plot(ratings):
    res = _run("search", "--ratings", ratings, "--params", "3.5M", "--quiet")
    assert res.exit_code == 0, res.output
    out = ratings.parent
    best = SearchResult.load(out / "best.json")
    assert best.params <= 3.5e6 and best.cost("params").budget == 3.5e6
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert "wrote" in res.output and "ir_r1" in res.output


def test_search_several_budgets_json(ratings, tmp_path):
    res = _run(
        "search", "--ratings", ratings, "--macs", "250M", "--params", "4M", "--out", tmp_path / "o", "--json"
    )
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    costs = {c["name"]: c for c in d["costs"]}
    assert costs["macs"]["value"] <= 250e6 and costs["params"]["value"] <= 4e6
    assert d["best"].endswith("best.json") and (tmp_path / "o" / "best.json").is_file()
    # the written file is what `dna info` and the zoo read
    info = _run("info", d["best"], "--json")
    assert info.exit_code == 0 and json.loads(info.stdout)["arch_def"] == d["arch_def"]


def test_existing_result_is_kept_without_force(ratings):
    assert _run("search", "--ratings", ratings, "--params", "3.5M", "-q").exit_code == 0
    before = (ratings.parent / "best.json").read_text()
    res = _run("search", "--ratings", ratings, "--params", "4M", "-q")
    assert res.exit_code == 1 and "already exists" in res.output and "--force" in res.output
    assert (ratings.parent / "best.json").read_text() == before
    assert _run("search", "--ratings", ratings, "--params", "4M", "-q", "--force").exit_code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--params", "0"], "must be positive"),
        (["--macs", "-5M"], "must be positive"),
        (["--params", "lots"], "cannot read the params budget"),
        (["--latency-ms", "-1", "--device", "cpu"], "must be positive"),
        (["--params", "100k"], "smallest achievable"),
        ([], "give at least one budget"),
        (["--latency-ms", "20"], "needs a device"),
    ],
)
def test_bad_input_is_one_clear_line(ratings, args, message):
    res = _run("search", "--ratings", ratings, *args, "-q")
    assert res.exit_code == 1, res.output
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], res.output
    assert not (ratings.parent / "best.json").exists()


def test_infeasible_budget_names_the_smallest_params(ratings):
    res = _run("search", "--ratings", ratings, "--params", "100k", "-q")
    assert "params budget 100,000 is below the smallest achievable 2," in res.output


def test_missing_and_corrupt_ratings(tmp_path):
    res = _run("search", "--ratings", tmp_path / "nope.json", "--params", "5M")
    assert res.exit_code == 1 and "does not exist" in res.output
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "dna-zoo-ratings", "version": 1, "space": {"space_version": 1}}')
    res = _run("search", "--ratings", bad, "--params", "5M")
    assert res.exit_code == 1 and res.output.startswith("error:")


def test_unknown_device_is_a_clear_error(ratings):
    res = _run("search", "--ratings", ratings, "--latency-ms", "20", "--device", "toaster", "-q")
    assert res.exit_code == 1 and "toaster" in res.output and len(res.output.strip().splitlines()) == 1


def test_parse_budget():
    from dna_zoo.cli.search import parse_budget

    assert parse_budget("400M", what="x") == 400e6
    assert parse_budget("5M", what="x") == 5e6
    assert parse_budget("1.5G", what="x") == 1.5e9
    assert parse_budget("20", what="x") == 20.0
    assert parse_budget("20ms", what="x", unit="ms") == 20.0
    assert parse_budget("250k", what="x") == 250e3


def test_latency_budget_on_an_unmeasured_device_is_estimated_and_says_so(ratings):
    res = _run(
        "search",
        "--ratings",
        ratings,
        "--latency-ms",
        "20",
        "--device",
        "jetson",
        "--runtime",
        "tensorrt",
        "-q",
    )
    assert res.exit_code == 0, res.output
    assert "ESTIMATED" in res.output
    best = json.loads((ratings.parent / "best.json").read_text())
    lat = best["predicted_latency"]
    assert lat["estimated"] is True and lat["ms"] <= 20 and "estimate" in lat["source"]
    assert best["costs"][0]["details"]["runtime"] == "tensorrt"


@pytest.fixture
def cached_table(fake_table, tiny_spec):
    """Puts a fake table for ``space`` where the search looks for this machine's table."""

    def cached_table(space):
        from dna_zoo.search.latency.cache import complete_path

        spec = tiny_spec()  # cpu / onnxruntime / 32 px, this machine's threads
        path = complete_path(spec)
        path.parent.mkdir(parents=True, exist_ok=True)
        fake_table(space, spec).save(path)
        return spec

    return cached_table


def test_latency_from_a_measured_table(ratings, cached_table):
    from dna_zoo.search.latency.cost import latency_cost_for
    from dna_zoo.search.space import small_space

    cached_table(small_space())
    args = ["--latency-ms", "3", "--device", "cpu", "--runtime", "onnxruntime", "--input-size", "32"]
    res = _run("search", "--ratings", ratings, *args, "-q")
    assert res.exit_code == 0, res.output
    assert "ESTIMATED" not in res.output
    best = SearchResult.load(ratings.parent / "best.json")
    lat = best.latency
    assert not lat.estimated and lat.value <= 3 and lat.details["device"] == "cpu"
    model = latency_cost_for(small_space(), device="cpu", runtime="onnxruntime", input_size=32)[0]
    assert lat.value == pytest.approx(model.network_cost(best.arch))


def test_table_of_another_space_is_one_clear_line(ratings, tiny_space, cached_table):
    cached_table(tiny_space())  # ratings are for the 'small' space
    args = ["--latency-ms", "1.5", "--device", "cpu", "--runtime", "onnxruntime", "--input-size", "32"]
    res = _run("search", "--ratings", ratings, *args, "-q")
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "no entry" in lines[0], res.output
    assert not (ratings.parent / "best.json").exists()


@pytest.mark.slow
def test_headline_search_on_a_fresh_install(tmp_path, monkeypatch):
    """`dna search --latency-ms 20 --device jetson` exactly as typed: no ratings, no cache."""
    monkeypatch.chdir(tmp_path)
    res = _run("search", "--latency-ms", "20", "--device", "jetson")
    assert res.exit_code == 0, res.output
    out = tmp_path / "runs" / "search-1"
    best = json.loads((out / "best.json").read_text())
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    lat = best["predicted_latency"]
    assert (lat["runtime"], lat["precision"], lat["estimated"]) == ("tensorrt", "fp16", True)
    assert best["input_size"] == 224 and best["num_classes"] == 1000 and best["space"]["name"] == "default"
    assert all(ref["costs"]["latency"] is not None for ref in best["references"])  # DNA-a..d on the axis
    prior = best["meta"]["imagenet_prior"]
    assert best["meta"]["objective"] == "prior" and 70 < prior["top1"] < 85 and prior["loo_rmse"] > 0
    text = " ".join(res.output.split())
    for needed in ("ESTIMATED", "leave-one-out", "zoo models within budget", "runs/search-1/best.json"):
        assert needed in text
    assert f"{prior['top1']:.1f}%" in text and f"{best['params']:,}" in text

    res = _run("search", "--latency-ms", "0.01", "--device", "jetson")
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert res.exit_code == 1 and len(lines) == 1
    assert "smallest achievable latency" in lines[0] and "jetson" in lines[0] and "--latency-ms" in lines[0]
    assert not (tmp_path / "runs" / "search-2").exists()


def test_help_says_the_jetson_defaults():
    res = _run("search", "--help")
    text = " ".join(res.output.split())
    assert "On a Jetson the latency is TensorRT fp16 by default" in text and "--objective" in text


def test_objective_rating_without_ratings_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = _run("search", "--latency-ms", "20", "--device", "jetson", "--objective", "rating")
    assert res.exit_code == 1 and "needs a ratings file" in res.stderr
    assert not (tmp_path / "runs").exists()
