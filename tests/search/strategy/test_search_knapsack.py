"""The exact constrained search against brute force, on random and real-cost instances."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from dna_zoo.search.strategy.knapsack import (
    InfeasibleBudgetError,
    KnapsackProblem,
    brute_force,
    nondominated,
    pareto_front,
    solve,
)


def random_problem(
    seed: int, *, blocks: int = 4, per_block: tuple[int, int] = (3, 9), costs: int = 1, ties=False
):
    rng = np.random.default_rng(seed)
    labels, cs, ls = [], [], []
    for b in range(blocks):
        n = int(rng.integers(*per_block))
        c = rng.uniform(1, 10, size=(n, costs))
        loss = rng.uniform(0, 1, size=n)
        if ties:  # coarse values: many equal costs / losses, the hard case for tie handling
            c, loss = np.round(c), np.round(loss, 1)
        labels.append(tuple(f"b{b}:{i}" for i in range(n)))
        cs.append(c)
        ls.append(loss)
    fixed = rng.uniform(0, 5, size=costs)
    return KnapsackProblem(tuple(labels), tuple(cs), tuple(ls), fixed, tuple(f"c{j}" for j in range(costs)))


def budgets_between(problem: KnapsackProblem, rng, k: int) -> list[list[float]]:
    lo = np.array(problem.smallest_costs())
    hi = lo + sum(c.max(axis=0) - c.min(axis=0) for c in problem.costs)
    return [list(lo + (hi - lo) * rng.uniform(0.0, 1.0, size=len(lo))) for _ in range(k)]


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("ncost", [1, 2, 3])
def test_exact_equals_brute_force(seed, ncost):
    problem = random_problem(seed, costs=ncost, ties=seed % 2 == 1)
    rng = np.random.default_rng(100 + seed)
    for budgets in budgets_between(problem, rng, 6):
        try:
            ref = brute_force(problem, budgets)
        except InfeasibleBudgetError:
            with pytest.raises(InfeasibleBudgetError):
                solve(problem, budgets)
            continue
        got = solve(problem, budgets)
        assert got.fits(budgets)
        assert math.isclose(got.loss, ref.loss, rel_tol=0, abs_tol=1e-12)
        assert got.costs == problem.total_costs(got.choice)
        assert got.loss == problem.total_loss(got.choice)


def test_budget_equal_to_a_network_cost_is_feasible():
    problem = random_problem(3, costs=1)
    rng = np.random.default_rng(0)
    for _ in range(20):
        choice = [int(rng.integers(len(lab))) for lab in problem.labels]
        budget = problem.total_costs(choice)[0]
        got, ref = solve(problem, [budget]), brute_force(problem, [budget])
        assert got.costs[0] <= budget
        assert math.isclose(got.loss, ref.loss, abs_tol=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_front_is_nondominated_and_holds_every_optimum(seed):
    problem = random_problem(seed, blocks=4, costs=1, ties=seed % 2 == 0)
    front = pareto_front(problem)
    costs = [s.costs[0] for s in front]
    losses = [s.loss for s in front]
    assert costs == sorted(costs) and all(a > b for a, b in itertools.pairwise(losses))
    # no network of the space dominates a front point
    all_nets = [problem.solution(ch) for ch in itertools.product(*(range(len(x)) for x in problem.labels))]
    for s in front:
        assert not any(
            (o.costs[0] <= s.costs[0] and o.loss < s.loss - 1e-12)
            or (o.costs[0] < s.costs[0] - 1e-9 and o.loss <= s.loss - 1e-12)
            for o in all_nets
        )
    # the optimum under any budget is on the front
    for budget in np.linspace(costs[0], costs[-1], 15):
        opt = solve(problem, [budget])
        assert any(math.isclose(opt.loss, s.loss, abs_tol=1e-12) for s in front)
    # and the front's cheapest point is the cheapest network
    assert math.isclose(costs[0], problem.smallest_costs()[0])


def test_front_with_a_second_constraint_respects_it():
    problem = random_problem(5, blocks=3, costs=2)
    lo = problem.smallest_costs()
    cap = lo[1] + 6.0
    front = pareto_front(problem, [None, cap])
    assert front and all(s.costs[1] <= cap for s in front)
    for s in front:
        ref = brute_force(problem, [s.costs[0], cap])
        assert math.isclose(ref.loss, s.loss, abs_tol=1e-12)


def test_infeasible_budget_names_the_smallest_cost():
    problem = random_problem(1, costs=1)
    smallest = problem.smallest_costs()[0]
    with pytest.raises(InfeasibleBudgetError) as e:
        solve(problem, [smallest * 0.99])
    assert e.value.smallest["c0"] == pytest.approx(smallest)
    assert f"{smallest:.6g}" in str(e.value)  # small numbers: 6 significant digits
    # exactly the smallest cost is feasible
    assert solve(problem, [smallest]).costs[0] == pytest.approx(smallest)


def test_jointly_infeasible_budgets_say_so():
    # block 0: cheap in c0 xor cheap in c1
    problem = KnapsackProblem(
        (("a", "b"),),
        (np.array([[1.0, 10.0], [10.0, 1.0]]),),
        (np.array([0.5, 0.5]),),
        np.zeros(2),
        ("c0", "c1"),
    )
    with pytest.raises(InfeasibleBudgetError, match="all budgets at once"):
        solve(problem, [2.0, 2.0])


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_nonpositive_budget_is_an_error(bad):
    with pytest.raises(ValueError, match="positive"):
        solve(random_problem(0), [bad])


def test_nondominated_pruning():
    costs = np.array([[1.0], [2.0], [2.0], [3.0], [1.0]])
    losses = np.array([5.0, 3.0, 4.0, 3.0, 5.0])
    # 0 and 4 tie (first stays); 2 and 3 are dominated by 1
    assert nondominated(costs, losses).tolist() == [0, 1]
    costs2 = np.array([[1.0, 5.0], [5.0, 1.0], [5.0, 5.0]])
    assert nondominated(costs2, np.array([1.0, 1.0, 0.5])).tolist() == [0, 1, 2]
    assert nondominated(costs2, np.array([1.0, 1.0, 1.0])).tolist() == [0, 1]
