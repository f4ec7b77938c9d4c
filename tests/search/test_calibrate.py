"""The calibrated accuracy predictor end to end, on a real tiny supernet run.

A real supernet of the tiny space (two blocks, 12 networks) distilled from a randomly
initialised teacher, rated by ``rate_run``, then ``calibrate_run`` trains 6 of its networks
alone for a few steps (real retrains on Fashion-MNIST). The figures are meaningless as
accuracy; what is tested is the plumbing, the statistics and the contracts.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import timm
import torch
from typer.testing import CliRunner

from dna_zoo.cli.main import app
from dna_zoo.errors import ConfigError, FileFormatError
from dna_zoo.search.calibrate import CALIBRATION, CalibrateConfig, calibrate_run, draw_networks, verdict
from dna_zoo.search.ratings import Ratings
from dna_zoo.search.result import SearchResult
from dna_zoo.search.strategy.cost import MacsCost
from dna_zoo.search.strategy.objective import predictor_beats_macs
from dna_zoo.search.strategy.predictor import (
    AccuracyPredictor,
    fit_predictor,
    kendall_tau,
    loo_predictions,
    network_features,
)
from dna_zoo.search.supernet.data import fashion_mnist_dir
from dna_zoo.weights import save_safetensors

pytestmark = pytest.mark.skipif(
    not (fashion_mnist_dir() / "train-images-idx3-ubyte.gz").is_file(),
    reason="Fashion-MNIST not installed (scripts/setup.sh installs Debian's dataset-fashion-mnist)",
)
runner = CliRunner()
#: As short as a real retrain gets: 2 steps of 16 images, evaluated on 256 held-out images.
CFG = CalibrateConfig(nets=6, epochs=1, steps_per_epoch=2, batch_size=16, eval_batches=1, seed=0)
CLI_CFG = ["--steps-per-epoch", "2", "--batch-size", "16", "--eval-batches", "1"]


@pytest.fixture(scope="module")
def rated_run(tmp_path_factory, tiny_space):
    """A real supernet run of the tiny space and its ratings (``dna supernet train`` + ``rate``)."""
    from dna_zoo.search.supernet.rate import RateConfig, rate_run
    from dna_zoo.search.supernet.train import train_supernet

    torch.set_num_threads(1)
    torch.manual_seed(0)
    tmp = tmp_path_factory.mktemp("calib")
    w = save_safetensors(
        timm.create_model("mobilenetv2_050", num_classes=10).state_dict(), tmp / "t.safetensors"
    )
    train_supernet(
        tmp / "run", space=tiny_space(), teacher="mobilenetv2_050", teacher_weights=w, data="builtin",
        config={"limit": 64, "batch_size": 16, "epochs": 1},
    )  # fmt: skip
    rate_run(tmp / "run", config=RateConfig(batch_size=16, bn_batches=2, eval_batches=2))
    return tmp / "run"


@pytest.fixture(scope="module")
def calibrated(rated_run):
    """The run after ``calibrate_run`` with :data:`CFG` (6 real retrains)."""
    torch.set_num_threads(1)
    res = calibrate_run(rated_run, config=CFG)
    return rated_run, res


def _snapshot(folder):
    return {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.rglob("*") if p.is_file()}


# --- drawing ---------------------------------------------------------------------------------------
def test_drawn_networks_span_the_macs_range_and_are_seeded(tiny_space):
    space = tiny_space()
    nets = draw_networks(space, 6, seed=0, input_size=32)
    cost = MacsCost(space, input_size=32, num_classes=10)
    macs = [cost.network_cost(e) for e in nets]
    every = [cost.network_cost(space.to_encoding(list(c))) for c in _all_nets(space)]
    assert len({json.dumps(e.to_arch_def()) for e in nets}) == 6
    assert min(macs) == min(every) and max(macs) == max(every)  # smallest and largest both drawn
    assert macs == sorted(macs)
    assert [e.to_arch_def() for e in draw_networks(space, 6, seed=0, input_size=32)] == [
        e.to_arch_def() for e in nets
    ]
    with pytest.raises(ConfigError, match="more than the 12 networks"):
        draw_networks(space, 13, seed=0, input_size=32)


def _all_nets(space):
    import itertools

    return itertools.product(*(list(space.block_candidates(b)) for b in range(len(space.blocks))))


# --- the predictor on a real calibration -------------------------------------------------------------
@pytest.mark.slow
def test_calibration_file_and_figures(calibrated):
    run, res = calibrated
    assert res.path == run / CALIBRATION and len(res.nets) == 6 and not any(n.reused for n in res.nets)
    pred = AccuracyPredictor.load(res.path, ratings=Ratings.load(run / "ratings.json"))
    encs = [n.arch for n in res.nets]
    y = np.array([n.top1 for n in res.nets])
    x, names = network_features(pred.ratings, encs, input_size=32)
    assert names == ["rating_b0", "rating_b1", "log_macs", "depth"] and x.shape == (6, 4)
    loo = loo_predictions(x, y)
    assert pred.loo["tau"] == pytest.approx(kendall_tau(loo, y))
    assert [n["loo_top1"] for n in pred.nets] == pytest.approx(list(loo))
    assert pred.loo["baselines"]["macs"]["tau"] == pytest.approx(kendall_tau(x[:, 2], y))
    rating_sum = x[:, :2].sum(axis=1)
    assert pred.loo["baselines"]["rating"]["tau"] == pytest.approx(kendall_tau(-rating_sum, y))
    for f in (pred.loo, pred.loo["baselines"]["rating"], pred.loo["baselines"]["macs"]):
        lo, hi = f["tau_ci"]
        assert -1 <= lo <= hi <= 1
    # the fitted ridge reproduces its own training targets better than their mean does
    assert np.mean((pred.predict(encs) - y) ** 2) <= np.var(y) + 1e-9
    assert pred.meta["seconds_per_net"] and len(pred.meta["seconds_per_net"]) == 6
    assert verdict(pred).count("MACs") == 2


@pytest.mark.slow
def test_loo_predictions_never_see_their_own_network(calibrated):
    _, res = calibrated
    ratings = Ratings.load(res.path.parent / "ratings.json")
    encs = [n.arch for n in res.nets]
    x, _ = network_features(ratings, encs, input_size=32)
    y = np.array([n.top1 for n in res.nets])
    base = loo_predictions(x, y)
    for k in range(len(y)):
        moved = y.copy()
        moved[k] += 50.0  # an absurd top-1 for net k changes every prediction but its own
        again = loo_predictions(x, moved)
        assert again[k] == pytest.approx(base[k])
        assert not np.allclose(np.delete(again, k), np.delete(base, k))


def test_loo_recovers_an_exact_linear_target(synthetic_ratings):
    ratings = synthetic_ratings("small")
    rng = np.random.default_rng(0)
    space = ratings.space
    encs = [
        space.to_encoding([list(space.block_candidates(b))[rng.integers(space.num_candidates(b))]
                           for b in range(len(space.blocks))])
        for _ in range(16)
    ]  # fmt: skip
    x, _ = network_features(ratings, encs, input_size=32)
    y = 80 + (x - x.mean(0)) / x.std(0) @ rng.normal(0, 1, x.shape[1])
    loo = loo_predictions(x, y, alpha=1e-6)
    assert np.abs(loo - y).max() < 1e-3
    assert kendall_tau(loo_predictions(x, y), y) > 0.9  # the inner LOO picks a small penalty here


def test_too_few_networks_to_fit(synthetic_ratings):
    ratings = synthetic_ratings("small")
    space = ratings.space
    encs = draw_networks(space, 7, seed=0, input_size=32)
    with pytest.raises(ConfigError, match="it needs at least 10"):
        fit_predictor(ratings, encs, list(range(7)), input_size=32, in_chans=3, num_classes=10)


@pytest.mark.slow
def test_contract_round_trip_and_wrong_version(calibrated, tmp_path, synthetic_ratings):
    run, res = calibrated
    ratings = Ratings.load(run / "ratings.json")
    pred = AccuracyPredictor.load(res.path, ratings=ratings)
    again = AccuracyPredictor.load(pred.save(tmp_path / "c.json"), ratings=ratings)
    assert again.to_dict() == pred.to_dict()
    encs = [n.arch for n in res.nets]
    assert again.predict(encs) == pytest.approx(pred.predict(encs))
    d = json.loads(res.path.read_text())
    (tmp_path / "v2.json").write_text(json.dumps({**d, "version": 2}))
    with pytest.raises(FileFormatError, match="version 2; this dna-zoo reads version 1"):
        AccuracyPredictor.load(tmp_path / "v2.json")
    (tmp_path / "other.json").write_text(json.dumps({**d, "format": "dna-zoo-ratings"}))
    with pytest.raises(FileFormatError, match="is not a dna-zoo accuracy predictor"):
        AccuracyPredictor.load(tmp_path / "other.json")
    with pytest.raises(ConfigError, match="is for search space 'tiny'"):
        AccuracyPredictor.load(res.path, ratings=synthetic_ratings("small"))
    moved = Ratings.load(run / "ratings.json")
    key = next(iter(moved.losses))
    moved.losses[key] += 0.1
    with pytest.raises(ConfigError, match="fitted with other ratings of this space"):
        AccuracyPredictor.load(res.path, ratings=moved)
    with pytest.raises(ConfigError, match="no ratings to compute features"):
        AccuracyPredictor.load(res.path).predict(encs)


# --- resuming ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_calibrate_resumes_without_retraining(calibrated):
    run, first = calibrated
    net = first.work_dir / "net_02"
    # killed after its last checkpoint, before its config/weights were written
    (net / "config.json").unlink()
    (net / "model.safetensors").unlink()
    before = {p: p.stat().st_mtime_ns for p in first.work_dir.rglob("net_0[!2]/model.safetensors")}
    res = calibrate_run(run, config=CFG)
    assert [n.reused for n in res.nets] == [True, True, False, True, True, True]
    assert res.nets[2].resumed and res.nets[2].top1 == pytest.approx(first.nets[2].top1)
    assert {p: p.stat().st_mtime_ns for p in before} == before  # finished nets not retrained
    assert res.predictor.loo["tau"] == pytest.approx(first.predictor.loo["tau"])
    assert (net / "config.json").is_file()


# --- the CLI: the self-check and bad input -------------------------------------------------------------
@pytest.mark.slow
def test_cli_calibrate_prints_the_self_check(calibrated):
    run, _ = calibrated
    r = runner.invoke(app, ["supernet", "calibrate", str(run), "--nets", "6", *CLI_CFG])
    assert r.exit_code == 0, r.output
    assert "calibrated predictor (leave-one-out)" in r.output and "plain rating" in r.output
    assert "MACs" in r.output and "verdict: " in r.output and "all nets reused" in r.output
    r = runner.invoke(app, ["supernet", "calibrate", str(run), "--nets", "6", *CLI_CFG, "--json"])
    d = json.loads(r.stdout)
    assert d["nets"] == 6 and d["nets_trained_now"] == 0 and len(d["predictor"]["tau_ci"]) == 2


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--nets", "13"], "--nets 13 is more than the 12 networks of space 'tiny'"),
        (["--nets", "5"], "needs at least 6 (4 features"),
        (["--nets", "6", "--ratings", "{tmp}/none.json"], "no ratings at"),
        (["--nets", "6", "--ratings", "{tmp}/small.json"], "rates search space 'small'"),
    ],
)
def test_cli_calibrate_bad_input(rated_run, tmp_path, write_ratings, args, message):
    write_ratings(tmp_path / "small.json", "small")
    before = _snapshot(rated_run)
    args = [a.format(tmp=tmp_path) for a in args]
    r = runner.invoke(app, ["supernet", "calibrate", str(rated_run), *args, *CLI_CFG])
    assert r.exit_code == 1 and message in r.output and r.output.count("\n") == 1, r.output
    assert _snapshot(rated_run) == before


@pytest.mark.slow
def test_a_pipeline_runs_ratings_are_found_beside_its_supernet(rated_run, tmp_path):
    from dna_zoo.search.calibrate import check_inputs
    from dna_zoo.search.supernet.rate import RateConfig, rate_run

    shutil.copytree(rated_run, tmp_path / "supernet", ignore=shutil.ignore_patterns("ratings.json", "calib*"))
    rate_run(
        tmp_path / "supernet", out=tmp_path / "ratings.json", config=RateConfig(bn_batches=1, eval_batches=1)
    )
    assert check_inputs(tmp_path / "supernet", CFG).ratings_path == tmp_path / "ratings.json"


def test_cli_calibrate_not_a_run(tmp_path):
    r = runner.invoke(app, ["supernet", "calibrate", str(tmp_path), "--nets", "6"])
    assert r.exit_code == 1 and "not a supernet run directory" in r.output


# --- the search objective ----------------------------------------------------------------------------
@pytest.mark.slow
def test_search_with_the_predictor_picks_its_best_net(calibrated, tmp_path):
    run, res = calibrated
    ratings = Ratings.load(run / "ratings.json")
    pred = AccuracyPredictor.load(res.path, ratings=ratings)
    space = ratings.space
    every = [space.to_encoding(list(c)) for c in _all_nets(space)]
    macs = MacsCost(space, input_size=32, num_classes=10)
    budget = float(np.median([macs.network_cost(e) for e in every]))
    out = tmp_path / "s"
    r = runner.invoke(
        app,
        ["search", "--ratings", str(run / "ratings.json"), "--objective", "predictor", "--macs", str(budget),
         "--input-size", "32", "--num-classes", "10", "--out", str(out)],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "predictor (the ratings calibrated" in r.output and "predicted top-1" in r.output
    best = SearchResult.load(out / "best.json")
    assert best.meta["objective"] == "predictor"
    fig = best.meta["predictor"]
    assert fig["top1"] == pytest.approx(float(pred.predict([best.arch])[0]))
    assert fig["loo_rmse"] == pytest.approx(pred.loo["rmse"]) and fig["k"] == 6
    feasible = [e for e in every if macs.network_cost(e) <= budget]
    assert fig["top1"] >= float(pred.predict(feasible).max()) - 1e-6  # the exact predictor's best
    # without --objective the calibration's own self-check decides: the predictor only where it
    # beat MACs on these nets, else MACs (the best-measured objective), saying why
    r = runner.invoke(
        app,
        ["search", "--ratings", str(run / "ratings.json"), "--macs", str(budget), "--input-size", "32",
         "--num-classes", "10", "--out", str(out), "--force"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    default = "predictor" if predictor_beats_macs(pred) else "macs"
    assert SearchResult.load(out / "best.json").meta["objective"] == default
    # the rating objective is still there on request, and says so
    r = runner.invoke(
        app,
        ["search", "--ratings", str(run / "ratings.json"), "--objective", "rating", "--macs", str(budget),
         "--input-size", "32", "--num-classes", "10", "--out", str(out), "--force"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert SearchResult.load(out / "best.json").meta["objective"] == "rating"
    assert "rating (sum of block losses)" in r.output


@pytest.mark.slow
def test_search_predictor_bad_input(calibrated, tmp_path, write_ratings):
    run, res = calibrated
    small = write_ratings(tmp_path / "small" / "ratings.json", "small")
    common = ["--macs", "1G", "--input-size", "32", "--num-classes", "10", "--out", str(tmp_path / "o")]

    def search(*args):
        return runner.invoke(app, ["search", *map(str, args), *common])

    r = search("--ratings", small, "--objective", "predictor")
    assert r.exit_code == 1 and "needs a calibration: no calibration.json" in r.output
    assert "dna supernet calibrate" in r.output
    r = search("--ratings", small, "--calibration", res.path)
    assert r.exit_code == 1 and "is for search space 'tiny'" in r.output
    other = Ratings.load(run / "ratings.json")
    other.losses[next(iter(other.losses))] += 0.1
    other_path = other.save(tmp_path / "other" / "ratings.json")
    r = search("--ratings", other_path, "--calibration", res.path)
    assert r.exit_code == 1 and "fitted with other ratings of this space" in r.output
    v2 = tmp_path / "v2.json"
    v2.write_text(json.dumps({**json.loads(res.path.read_text()), "version": 2}))
    r = search("--ratings", run / "ratings.json", "--calibration", v2)
    assert r.exit_code == 1 and "version 2" in r.output
    for r in (search("--objective", "predictor"), search("--calibration", res.path)):
        assert r.exit_code == 1 and "--ratings" in r.output
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_model_card_says_which_objective_chose_the_net(calibrated, tmp_path):
    from dna_zoo.hub.push import prepare_folder
    from dna_zoo.search.retrain import build_student

    run, _ = calibrated
    out = tmp_path / "s"
    r = runner.invoke(
        app,
        ["search", "--ratings", str(run / "ratings.json"), "--objective", "predictor", "--macs", "1G",
         "--input-size", "32", "--num-classes", "10", "--out", str(out)],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    best = SearchResult.load(out / "best.json")
    w = save_safetensors(
        build_student(best.arch, num_classes=10, in_chans=3).state_dict(), tmp_path / "w.safetensors"
    )
    shutil.rmtree(tmp_path / "repo", ignore_errors=True)
    prepared = prepare_folder(str(out / "best.json"), weights=w, repo_id="me/net", dest=tmp_path / "repo")
    text = (prepared.folder / "README.md").read_text()
    assert "| chosen by | DNA search, objective predictor (the ratings calibrated" in text
    assert f"| predicted top-1 at search | {best.meta['predictor']['text']} |" in text
