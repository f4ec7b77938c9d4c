"""Search on real cost models: result file round trip, timm builds it, plot, references."""

from __future__ import annotations

import itertools
import json

import pytest
import timm
import torch

import dna_zoo  # noqa: F401
from dna_zoo.arch import load_encoding
from dna_zoo.complexity import count_params, encoding_cost
from dna_zoo.errors import ConfigError
from dna_zoo.search.result import SearchResult
from dna_zoo.search.space import BlockSpec, SearchSpace, paper_space, small_space
from dna_zoo.search.strategy.constrained import Constraint, build_problem, constrained_search
from dna_zoo.search.strategy.cost import MacsCost, ParamsCost
from dna_zoo.search.strategy.knapsack import InfeasibleBudgetError, brute_force, fmt_number
from dna_zoo.search.strategy.plot import pareto_plot
from dna_zoo.zoo import build_model


@pytest.fixture(scope="module")
def small_result(synthetic_ratings):
    r = synthetic_ratings("small")
    params = ParamsCost(r.space)
    smallest = build_problem(r, [params]).smallest_costs()[0]
    return r, constrained_search(r, [Constraint(params, smallest * 1.3)], extra_models=[MacsCost(r.space)])


TINY = SearchSpace(
    "tiny",
    blocks=(BlockSpec(24, 2, (1, 2)), BlockSpec(40, 2, (1,)), BlockSpec(80, 2, (1, 2))),
    ops=small_space().ops[:3],
)  # 12 x 3 x 12 = 432 networks


@pytest.mark.parametrize("seed", [0, 1])
def test_search_matches_brute_force_with_real_costs(seed, synthetic_ratings):
    r = synthetic_ratings(TINY, seed=seed)
    params, macs = ParamsCost(TINY), MacsCost(TINY)
    problem = build_problem(r, [params, macs])
    lo = problem.smallest_costs()
    for f in (1.05, 1.2, 1.5):
        budgets = [lo[0] * f, lo[1] * (2.2 - f)]
        try:
            ref = brute_force(problem, budgets)
        except InfeasibleBudgetError:
            continue
        res = constrained_search(r, [Constraint(params, budgets[0]), Constraint(macs, budgets[1])])
        assert res.rating == pytest.approx(ref.loss, abs=1e-12)
        assert res.params == res.cost("params").value <= budgets[0]


def test_result_describes_the_network_it_names(small_result):
    r, res = small_result
    # the figures in the result are those of the network it names
    enc = res.arch
    assert r.space.from_encoding(enc) and [c.key for c in r.space.from_encoding(enc)] == list(res.candidates)
    assert res.cost("params").value == encoding_cost(enc).params == res.params
    assert res.cost("params").value <= res.cost("params").budget
    assert res.cost("macs").value == encoding_cost(enc).macs and res.cost("macs").budget is None
    assert res.rating == pytest.approx(sum(r.losses[k] for k in res.candidates))


def test_front_is_sorted_nondominated_and_holds_the_answer(small_result):
    _, res = small_result
    xs = [p.costs["params"] for p in res.front]
    ys = [p.rating for p in res.front]
    assert xs == sorted(xs) and all(a > b for a, b in itertools.pairwise(ys))
    assert any(p.candidates == res.candidates for p in res.front)


def test_result_file_round_trip_and_timm_builds_it(small_result, tmp_path):
    _, res = small_result
    path = res.save(tmp_path / "best.json")
    again = SearchResult.load(path)
    assert again.to_dict() == json.loads(path.read_text()) == res.to_dict()
    d = json.loads(path.read_text())
    assert d["format"] == "dna-zoo-search-result" and d["arch_def"] == res.arch.to_arch_def()
    assert load_encoding(path) == res.arch
    model = timm.create_model("dna_net", arch=str(path))
    assert count_params(model) == res.params
    m2 = build_model(str(path), num_classes=10, in_chans=1)  # the zoo's resolver takes the file too
    assert m2(torch.randn(2, 1, 32, 32)).shape == (2, 10)


def test_corrupt_result_file_is_a_clear_error(tmp_path):
    p = tmp_path / "best.json"
    p.write_text("{not json")
    with pytest.raises(ConfigError, match="not a valid search result"):
        SearchResult.load(p)
    p.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ConfigError, match="not a dna-zoo search result"):
        SearchResult.load(p)


def test_pareto_plot_is_a_png(small_result, tmp_path):
    _, res = small_result
    p = pareto_plot(res, tmp_path / "pareto.png")
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000
    assert not [x for x in tmp_path.iterdir() if x.name.startswith(".")]  # no temp file left


def test_default_space_macs_and_params_with_references(synthetic_ratings):
    r = synthetic_ratings("default", seed=1)
    macs, params = MacsCost(r.space), ParamsCost(r.space)
    res = constrained_search(r, [Constraint(macs, 400e6), Constraint(params, 5e6)])
    assert res.cost("macs").value <= 400e6 and res.cost("params").value <= 5e6
    assert res.front and all(p.costs["params"] <= 5e6 for p in res.front)
    refs = {x.name: x for x in res.references}
    assert set(refs) == {"dna_a", "dna_b", "dna_c", "dna_d"}
    # costed by the same models as the search
    from dna_zoo.models import published_encoding

    assert refs["dna_b"].costs["macs"] == encoding_cost(published_encoding("dna_b")).macs
    # DNA-a/b/d use 96-channel stages the default space does not have: no rating; DNA-c is in it
    assert refs["dna_a"].rating is None
    assert refs["dna_c"].rating == pytest.approx(
        sum(r.losses[c.key] for c in r.space.from_encoding(published_encoding("dna_c")))
    )


def test_infeasible_budget_states_the_smallest_cost(synthetic_ratings):
    r = synthetic_ratings("small")
    params = ParamsCost(r.space)
    smallest = build_problem(r, [params]).smallest_costs()[0]
    with pytest.raises(InfeasibleBudgetError) as e:
        constrained_search(r, [Constraint(params, smallest - 1)])
    assert f"smallest achievable {smallest:,.0f}" in str(e.value) and fmt_number(smallest - 1) in str(e.value)


def test_cost_model_of_another_space_is_refused(synthetic_ratings):
    r = synthetic_ratings("small")
    with pytest.raises(ConfigError, match="search space"):
        build_problem(r, [ParamsCost(paper_space())])


def test_incomplete_ratings_are_refused(synthetic_ratings):
    r = synthetic_ratings("small")
    r.losses.pop(next(iter(r.losses)))
    with pytest.raises(ConfigError, match="lack 1 candidate"):
        build_problem(r, [ParamsCost(small_space())])
