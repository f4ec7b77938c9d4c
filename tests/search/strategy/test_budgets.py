"""Budgets -> constraints, the one path of `dna search --ratings`, `--data` and the pipeline."""

from __future__ import annotations

import math

import pytest

from dna_zoo.errors import ConfigError, DnaZooError
from dna_zoo.search.latency.cache import complete_path
from dna_zoo.search.latency.cost import latency_cost_for
from dna_zoo.search.strategy.budgets import Budgets, budget_constraints


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({}, "give at least one budget"),
        ({"macs": 4e8, "device": "cpu"}, "need a latency budget"),
        ({"latency_ms": 20}, "needs a device"),
        ({"latency_ms": -1, "device": "cpu"}, "must be positive"),
        ({"latency_ms": math.inf, "device": "cpu"}, "must be positive"),
        ({"latency_ms": "fast", "device": "cpu"}, "cannot read the latency budget"),
        ({"params": 0}, "must be positive"),
    ],
)
def test_bad_budgets_are_one_clear_error(kw, message):
    with pytest.raises(ConfigError, match=message):
        Budgets(**kw)


@pytest.fixture
def cached_table(fake_table, tiny_spec):
    """Puts a fake table for ``space`` where the cost models look for this machine's table."""

    def cached_table(space, **kw):
        spec = tiny_spec(**kw)
        path = complete_path(spec)
        path.parent.mkdir(parents=True, exist_ok=True)
        fake_table(space, spec).save(path)
        return spec

    return cached_table


def test_constraints_in_budget_order_with_the_cached_table(synthetic_ratings, cached_table):
    ratings = synthetic_ratings("small")
    cached_table(ratings.space)
    b = Budgets(latency_ms=3.0, device="cpu", macs=3e8, params=4e6)
    chosen = budget_constraints(ratings, b, input_size=32)
    assert [c.model.name for c in chosen.constraints] == ["latency", "macs", "params"]
    assert [c.budget for c in chosen.constraints] == [3.0, 3e8, 4e6]
    assert (
        chosen.latency_info["table"] == "cached" and chosen.latency_info["spec"]["runtime"] == "onnxruntime"
    )
    assert not chosen.latency.estimated and chosen.auto_budget_ms is None


def test_auto_latency_budget_is_inside_the_achievable_range(synthetic_ratings, cached_table):
    ratings = synthetic_ratings("small")
    cached_table(ratings.space)
    chosen = budget_constraints(ratings, Budgets(latency_ms="auto", device="cpu"), input_size=32)
    model = chosen.latency
    fastest = model.fixed_cost() + sum(
        min(model.cost(c) for c in ratings.space.block_candidates(b))
        for b in range(len(ratings.space.blocks))
    )
    assert chosen.constraints[0].budget == chosen.auto_budget_ms > fastest


def test_a_table_of_another_space_is_refused_unless_it_may_be_rebuilt(
    synthetic_ratings, tiny_space, cached_table
):
    ratings = synthetic_ratings("small")
    cached_table(tiny_space())
    with pytest.raises(DnaZooError, match="no entry"):
        latency_cost_for(ratings.space, device="cpu", input_size=32)


def test_unmeasured_device_is_estimated(synthetic_ratings):
    ratings = synthetic_ratings("small")
    model, info = latency_cost_for(ratings.space, device="jetson", input_size=32, num_classes=10)
    assert model.estimated and info["table"] == "estimated"
    assert info["spec"]["runtime"] == "tensorrt" and info["spec"]["num_classes"] == 10
