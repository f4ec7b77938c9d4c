"""The demo's comparisons: a difference inside the seed noise is never a win; the budget binds."""

from __future__ import annotations

import math

import pytest

from dna_zoo.search.comparison import compare_to_searched, judge, seed_noise
from dna_zoo.search.space import small_space
from dna_zoo.search.strategy.budgets import budget_report
from dna_zoo.search.strategy.constrained import Constraint
from dna_zoo.search.strategy.cost import MacsCost


def _runs(**top1):
    return {name: {"top1": t, "seed": i} for i, (name, t) in enumerate(top1.items())}


def test_difference_inside_the_seed_noise_is_not_a_win():
    cmp = compare_to_searched(
        _runs(searched=88.0, searched_seed1=87.0, most_macs=87.5, baseline=84.0), n_eval=10000
    )
    n = cmp["noise"]
    assert n["top1_by_seed"] == [88.0, 87.0] and n["from"] == "seeds"
    assert n["sd_one_run"] == pytest.approx(1 / math.sqrt(2))
    assert not cmp["vs"]["most_macs"]["beyond_noise"] and "not a win" in cmp["vs"]["most_macs"]["verdict"]
    assert cmp["vs"]["baseline"]["beyond_noise"] and cmp["vs"]["baseline"]["diff"] == pytest.approx(4.0)
    assert "searched_seed1" not in cmp["vs"] and "rough" in cmp["rule"]


def test_equal_seeds_fall_back_to_test_set_sampling_noise():
    n = seed_noise([90.0, 90.0], n_eval=10000)
    assert n["from"].startswith("test-set") and n["sd_one_run"] == pytest.approx(
        100 * math.sqrt(0.09 / 10000)
    )
    assert judge(-5.0, n["sd_one_run"])["verdict"].startswith("searched net worse")


def test_budget_report_counts_the_excluded_share():
    space = small_space()
    macs = MacsCost(space, input_size=224, num_classes=10)
    lo = budget_report(space, [Constraint(macs, 1.0)])
    assert lo["span"] > 2 and lo["space_min"] < lo["space_max"]
    assert lo["excluded_share"] == 1.0
    mid = budget_report(space, [Constraint(macs, (lo["space_min"] + lo["space_max"]) / 2)])
    assert 0.2 < mid["excluded_share"] < 0.8
    assert budget_report(space, [Constraint(macs, lo["space_max"])])["excluded_share"] == 0.0
