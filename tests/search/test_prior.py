"""The shipped ImageNet prior: recomputed from the shipped data by the real code."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from dna_zoo.complexity import encoding_cost
from dna_zoo.errors import ConfigError
from dna_zoo.models import PUBLISHED, published_encoding, published_models
from dna_zoo.search.prior import (
    ImageNetPrior,
    fit_prior,
    kendall_tau,
    load_prior,
    predict_top1,
    ranking_samples,
)
from dna_zoo.search.space import paper_space


@pytest.fixture(scope="module")
def refit() -> ImageNetPrior:
    return fit_prior(ranking_samples())


def test_shipped_data_is_the_23_nets_and_dna_a_to_d():
    samples = ranking_samples()
    short = [s for s in samples if s.protocol == "short_5ep"]
    assert len(short) == 23 and [s.name for s in samples[-4:]] == list(PUBLISHED)
    assert all(73.0 < s.top1 < 76.0 for s in short)


def test_loo_tau_beats_macs_alone(refit: ImageNetPrior):
    short = [s for s in ranking_samples() if s.protocol == "short_5ep"]
    macs_tau = kendall_tau([encoding_cost(s.arch).macs for s in short], [s.top1 for s in short])
    assert macs_tau == pytest.approx(0.755, abs=0.001)  # the figure the data's README states
    loo_pred = [refit.loo["predictions"][s.name] for s in short]
    assert kendall_tau(loo_pred, [s.top1 for s in short]) >= macs_tau
    assert refit.loo["tau_short_5ep"] >= refit.loo["macs_tau_short_5ep"]


def _assert_same_tree(got, want, where: str = "") -> None:
    """Equal structure, keys and text; floats equal to 1e-9 relative (the fit's last digits
    follow the CPU's vector width: AVX2 and AVX-512 builds of the same code differ there)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), where
        for k in want:
            _assert_same_tree(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _assert_same_tree(g, w, f"{where}[{i}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12), where
    else:
        assert got == want, where


def test_shipped_file_is_what_the_fit_produces(refit: ImageNetPrior):
    shipped = json.loads(resources.files("dna_zoo").joinpath("data/imagenet_prior.json").read_text())
    _assert_same_tree(json.loads(json.dumps(refit.to_dict())), shipped)
    assert load_prior() == ImageNetPrior.from_dict(shipped)


@pytest.mark.parametrize("name", PUBLISHED)
def test_dna_models_predicted_close_to_published(name: str):
    published = published_models()["models"][name]["published"]["top1"]
    pred = predict_top1(published_encoding(name))
    assert abs(pred.top1 - published) < 0.5
    assert not pred.extrapolated
    assert pred.loo_rmse == pytest.approx(load_prior().loo["rmse_long_500ep"])
    assert "leave-one-out" in pred.text()


def test_bigger_nets_of_the_default_space_rank_higher():
    space = paper_space()
    small = space.to_encoding([min(space.block_candidates(b), key=lambda c: c.depth) for b in range(6)])
    big = space.to_encoding([max(space.block_candidates(b), key=lambda c: c.depth) for b in range(6)])
    p_small, p_big = predict_top1(small), predict_top1(big)
    assert p_small.top1 < p_big.top1
    assert p_small.extrapolated  # far below the MACs of anything the prior saw


def test_kendall_tau_known_values():
    assert kendall_tau([1, 2, 3], [1, 2, 3]) == 1.0
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == -1.0
    with pytest.raises(ConfigError):
        kendall_tau([1], [1])


def test_prior_file_of_another_version_is_refused():
    with pytest.raises(ConfigError, match="ImageNet prior"):
        ImageNetPrior.from_dict({"prior_version": 99})


def test_fit_needs_both_protocols():
    with pytest.raises(ConfigError, match="both training protocols"):
        fit_prior([s for s in ranking_samples() if s.protocol == "short_5ep"])
