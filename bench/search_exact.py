"""Exact constrained search: correctness against brute force, speed against the original.

1. Reduced instances (random subsets of the default space's candidates, real MACs / params
   costs, seeded ratings): the exact solver's optimum equals exhaustive enumeration
   (numpy, every network) under one and two budgets.
2. The full default space (6,234 candidates, about 1.2e15 networks): time to cost every
   candidate, to solve exactly, and to build the Pareto front; next to a reimplementation
   of the authors' sorted traversal with pruning (``searching/process_potential.py`` in
   changlin31/DNA, generalised to any number of blocks), stopped after ``--traversal-limit``
   seconds per budget.

Ratings are synthetic unless ``--ratings`` names a real file: the solver's work depends on
the shape of the loss/cost trade-off, not on where the numbers came from.

    flock -x /tmp/dna-cpu.lock .venv/bin/python bench/search_exact.py
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import time
from pathlib import Path

import numpy as np

from dna_zoo.search.ratings import Ratings
from dna_zoo.search.space import get_space
from dna_zoo.search.strategy.constrained import build_problem
from dna_zoo.search.strategy.cost import MacsCost, ParamsCost
from dna_zoo.search.strategy.knapsack import KnapsackProblem, pareto_front, solve


def synthetic_ratings(space: str, *, seed: int) -> Ratings:
    """Made-up losses (a smooth function of the ops plus seeded noise) for every candidate:
    the same recipe as the tests' ``synthetic_ratings`` fixture."""
    sp = get_space(space)
    rng = np.random.default_rng(seed)
    losses = {}
    for b in range(len(sp.blocks)):
        for c in sp.block_candidates(b):
            bigger = sum(1.0 / (op.expansion * op.kernel) for op in c.ops) / len(c.ops)
            losses[c.key] = float(bigger + 0.3 / len(c.ops) + rng.normal(0, 0.02))
    return Ratings(sp, losses, input_size=32, data={"name": "synthetic-for-tests"})


# --- reference: every network, vectorised ----------------------------------------------------
def enumerate_all(problem: KnapsackProblem, budgets) -> float | None:
    """Lowest loss over all networks within the budgets (numpy over the full product)."""
    loss = np.zeros(1)
    cost = np.zeros((1, problem.num_costs))
    for c, ls in zip(problem.costs, problem.losses, strict=True):
        loss = (loss[:, None] + ls[None, :]).ravel()
        cost = (cost[:, None, :] + c[None, :, :]).reshape(-1, problem.num_costs)
    cost = cost + problem.fixed
    ok = np.ones(len(loss), dtype=bool)
    for j, b in enumerate(budgets):
        if b is not None:
            ok &= cost[:, j] <= b
    return float(loss[ok].min()) if ok.any() else None


def subset(problem: KnapsackProblem, rng, k: int) -> KnapsackProblem:
    keep = [np.sort(rng.choice(len(lab), size=min(k, len(lab)), replace=False)) for lab in problem.labels]
    return KnapsackProblem(
        tuple(tuple(lab[i] for i in kk) for lab, kk in zip(problem.labels, keep, strict=True)),
        tuple(c[kk] for c, kk in zip(problem.costs, keep, strict=True)),
        tuple(ls[kk] for ls, kk in zip(problem.losses, keep, strict=True)),
        problem.fixed,
        problem.cost_names,
    )


# --- the authors' sorted traversal, generalised ------------------------------------------------
class _Stop(Exception):
    pass


def sorted_traversal(problem: KnapsackProblem, budget: float, time_limit: float) -> dict:
    """The original search: per block, candidates sorted by loss; nested loops over blocks;
    a prefix is skipped when its cost exceeds the budget minus the cheapest rest; the
    innermost block takes its first (lowest-loss) feasible candidate and then only looks
    at lower-loss candidates for later prefixes (``max_layer`` shrinking, propagated
    outwards when it reaches 0). One cost only, as in the original."""
    n = problem.num_blocks
    order = [np.argsort(ls, kind="stable") for ls in problem.losses]
    cost = [problem.costs[b][order[b], 0].tolist() for b in range(n)]
    loss = [problem.losses[b][order[b]].tolist() for b in range(n)]
    rest_min = [sum(min(cost[j]) for j in range(b + 1, n)) for b in range(n)]
    limit = [budget - float(problem.fixed[0]) - rest_min[b] for b in range(n)]
    max_idx = [len(c) for c in cost]
    cur = [0] * n
    best = {"loss": math.inf, "choice": None}
    t_end = time.perf_counter() + time_limit
    visits = [0]

    def inner(prefix_cost: float, prefix_loss: float) -> None:
        k = n - 1
        for j in range(max_idx[k]):
            c = prefix_cost + cost[k][j]
            if c < limit[k]:
                total = prefix_loss + loss[k][j]
                if total < best["loss"]:
                    best["loss"], best["choice"] = total, [*cur[:k], j]
                max_idx[k] = j
                if j == 0 and k > 0:
                    max_idx[k - 1] = cur[k - 1]
                    max_idx[k] = len(cost[k])
                return

    def level(k: int, prefix_cost: float, prefix_loss: float) -> None:
        if k == n - 1:
            inner(prefix_cost, prefix_loss)
            return
        for i in range(len(cost[k])):
            if k > 0 and i >= max_idx[k]:
                if max_idx[k] == 0:
                    max_idx[k - 1] = cur[k - 1]
                    max_idx[k] = len(cost[k])
                break
            c = prefix_cost + cost[k][i]
            if c > limit[k]:
                continue
            cur[k] = i
            visits[0] += 1
            if visits[0] % 4096 == 0 and time.perf_counter() > t_end:
                raise _Stop
            level(k + 1, c, prefix_loss + loss[k][i])

    t0 = time.perf_counter()
    finished = True
    try:
        level(0, 0.0, 0.0)
    except _Stop:
        finished = False
    return {
        "seconds": time.perf_counter() - t0,
        "finished": finished,
        "loss": best["loss"],
        "outer_done": f"{cur[0]}/{len(cost[0])}",
        "inner_visits": visits[0],
    }


# --- main -----------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ratings", type=Path, help="a real ratings file of the default space (else synthetic)")
    ap.add_argument("--instances", type=int, default=12, help="random reduced instances")
    ap.add_argument("--per-block", type=int, default=7, help="candidates per block in reduced instances")
    ap.add_argument("--repeats", type=int, default=7, help="timing repeats (medians reported)")
    ap.add_argument("--traversal-limit", type=float, default=60.0, help="seconds per budget for the original")
    args = ap.parse_args()

    ratings = Ratings.load(args.ratings) if args.ratings else synthetic_ratings("default", seed=0)
    space = ratings.space
    print(f"space '{space.name}': {space.num_candidates()} candidates, {space.num_networks():.3g} networks")
    print(f"ratings: {'file ' + str(args.ratings) if args.ratings else 'synthetic (seeded)'}")

    # 1. exact == brute force on reduced instances
    rng = np.random.default_rng(0)
    checked = agree = 0
    max_dev = 0.0
    for inst in range(args.instances):
        r = synthetic_ratings("default", seed=100 + inst) if not args.ratings else ratings
        full = build_problem(r, [MacsCost(space), ParamsCost(space)])
        p = subset(full, rng, args.per_block)
        lo = p.smallest_costs()
        hi = [lo[j] + sum(float(c[:, j].max() - c[:, j].min()) for c in p.costs) for j in range(2)]
        for f1, f2 in itertools.product((0.15, 0.4, 0.7), (None, 0.5)):
            budgets = [lo[0] + f1 * (hi[0] - lo[0]), None if f2 is None else lo[1] + f2 * (hi[1] - lo[1])]
            ref = enumerate_all(p, budgets)
            try:
                got = solve(p, budgets).loss
            except ValueError:
                got = None
            checked += 1
            if (ref is None) == (got is None) and (ref is None or abs(ref - got) <= 1e-9):
                agree += 1
                max_dev = max(max_dev, 0.0 if ref is None else abs(ref - got))
    print(
        f"\n[1] reduced instances: {args.instances} x 6 budgets (one and two constraints), "
        f"{args.per_block}^6 = {args.per_block**6:,} networks each"
    )
    print(f"    exact optimum == brute force: {agree}/{checked} (max |loss diff| {max_dev:.1e})")

    # 2. full default space
    t0 = time.perf_counter()
    macs = MacsCost(space)
    problem = build_problem(ratings, [macs])
    t_build = time.perf_counter() - t0
    lo = problem.smallest_costs()[0]
    budgets = [350e6, 400e6, 450e6]
    print(f"\n[2] full default space, MACs (conv+linear, 224px); smallest achievable {lo / 1e6:.1f}M")
    print(f"    costing all {space.num_candidates()} candidates: {t_build:.3f} s")
    rows = []
    for b in budgets:
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            sol = solve(problem, [b])
            times.append(time.perf_counter() - t0)
        trav = sorted_traversal(problem, b, args.traversal_limit)
        rows.append((b, statistics.median(times), sol, trav))
    t0 = time.perf_counter()
    front = pareto_front(problem)
    t_front = time.perf_counter() - t0
    problem2 = build_problem(ratings, [macs, ParamsCost(space)])
    t2 = []
    for _ in range(3):
        t0 = time.perf_counter()
        sol2 = solve(problem2, [400e6, 5e6])
        t2.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    front2 = pareto_front(problem2, [None, 5e6])
    t_front2 = time.perf_counter() - t0

    print(f"    {'budget':>8} {'exact solve':>12} {'exact loss':>11} {'original traversal':>36} {'its':>10}")
    for b, t, sol, trav in rows:
        status = (
            f"{trav['seconds']:.2f} s (finished)"
            if trav["finished"]
            else f">{trav['seconds']:.0f} s (stopped, outer {trav['outer_done']})"
        )
        same = "same" if abs(trav["loss"] - sol.loss) < 1e-9 else f"{trav['loss']:.5f}"
        print(f"    {b / 1e6:>7.0f}M {1000 * t:>9.2f} ms {sol.loss:>11.5f} {status:>36} {same:>10}")
    print(f"    Pareto front (MACs): {len(front)} networks in {1000 * t_front:.1f} ms")
    print(
        f"    two budgets (MACs <= 400M, params <= 5M): solve {1000 * statistics.median(t2):.1f} ms "
        f"(loss {sol2.loss:.5f}); front under params <= 5M: {len(front2)} networks in {t_front2:.2f} s"
    )
    worst = max(t for _, t, _, _ in rows)
    print(f"\n    exact optimum, full default space: {1000 * worst:.1f} ms worst median (target < 1 s)")


if __name__ == "__main__":
    main()
