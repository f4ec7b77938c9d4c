"""Searching without a ratings file: the linearised ImageNet prior and MACs as objectives."""

from __future__ import annotations

import numpy as np
import pytest

from dna_zoo.errors import UnknownNameError
from dna_zoo.search.prior import predict_top1
from dna_zoo.search.space import small_space
from dna_zoo.search.strategy.constrained import Constraint, constrained_search
from dna_zoo.search.strategy.cost import MacsCost
from dna_zoo.search.strategy.objective import (
    check_objective,
    macs_ratings,
    middle_network,
    prior_ratings,
    prior_search,
)

SPACE = small_space()


def _random_nets(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    nets = []
    for _ in range(n):
        choice = []
        for b in range(len(SPACE.blocks)):
            cands = list(SPACE.block_candidates(b))
            choice.append(cands[rng.integers(len(cands))])
        nets.append((choice, SPACE.to_encoding(choice)))
    return nets


def test_linearised_prior_matches_the_exact_prior_near_its_centre():
    around = middle_network(SPACE)
    ratings = prior_ratings(SPACE, around=around)
    base = predict_top1(around).top1 + sum(ratings.loss(c) for c in SPACE.from_encoding(around))
    for choice, enc in _random_nets(20):
        linear = base - sum(ratings.loss(c) for c in choice)
        assert linear == pytest.approx(predict_top1(enc).top1, abs=0.15)


def test_prior_search_returns_the_best_predicted_net_within_the_budget():
    macs = MacsCost(SPACE, input_size=224, num_classes=1000)
    budget = float(np.median([macs.network_cost(e) for _, e in _random_nets(50, seed=1)]))
    constraints = [Constraint(macs, budget)]
    result, _, rounds = prior_search(SPACE, lambda r: constrained_search(r, constraints))
    assert result.macs["conv_linear"] <= budget and 1 <= len(rounds) <= 4
    best = predict_top1(result.arch).top1
    feasible = [e for _, e in _random_nets(300, seed=2) if macs.network_cost(e) <= budget]
    assert feasible and best >= max(predict_top1(e).top1 for e in feasible) - 0.02


@pytest.mark.slow
def test_macs_objective_takes_the_biggest_net_that_fits():
    macs = MacsCost(SPACE, input_size=224, num_classes=1000)
    nets = [e for _, e in _random_nets(50, seed=3)]
    budget = float(np.median([macs.network_cost(e) for e in nets]))
    result = constrained_search(macs_ratings(SPACE), [Constraint(macs, budget)])
    assert result.macs["conv_linear"] <= budget
    assert result.macs["conv_linear"] >= max(
        macs.network_cost(e) for e in nets if macs.network_cost(e) <= budget
    )


def test_unknown_objective():
    assert check_objective("prior") == "prior"
    with pytest.raises(UnknownNameError, match="did you mean prior"):
        check_objective("prio")


def test_default_objective_is_the_best_measured_one_for_the_inputs():
    from dna_zoo.search.strategy import objective

    assert set(objective.OBJECTIVE_PREFERENCE) == set(objective.OBJECTIVES) == set(objective.NEEDS)
    # nothing given: the ImageNet prior (LOO tau 0.763 vs MACs 0.755 on ImageNet-trained nets)
    assert objective.default_objective(ratings=False, calibration=False) == "prior"
    # a ratings file: MACs, which ranked better than the rating on bench/ranking_decisions.py
    assert objective.default_objective(ratings=True, calibration=False) == "macs"
    # a calibration decides on the user's own data
    assert objective.default_objective(ratings=True, calibration=True, predictor_beats_macs=False) == "macs"
    assert (
        objective.default_objective(ratings=True, calibration=True, predictor_beats_macs=True) == "predictor"
    )
