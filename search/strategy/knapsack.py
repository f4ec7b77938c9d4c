"""The constrained search: an exact multiple-choice knapsack over the block ratings.

A network is one candidate per block; its loss (rating) and each of its costs (latency,
params, MACs) are a fixed part plus one term per block. Finding the lowest-loss network
under one or several cost budgets is a multiple-choice knapsack. It is solved exactly:

* Candidates dominated inside their block (another candidate of the same block is no
  worse in every cost and in loss) can never be part of a unique optimum; they are
  pruned first. In the paper's space this leaves a few dozen of 1,548 per block.
* One cost: the Pareto front of the whole network is built block by block from exact
  Pareto sets (Nemhauser-Ullmann dynamic programming over sums, no discretisation of
  the budget, so no rounding can make an answer infeasible or suboptimal). The optimum
  under a budget is the front point with the lowest loss that fits.
* Several costs: depth-first branch-and-bound over the blocks, candidates in order of
  loss, with a lower bound per remaining budget taken from the exact one-cost fronts of
  the remaining blocks (the loss the rest needs is at least the largest of the losses
  it needs under each budget alone). The front along the first cost is walked down by
  re-solving just below the last point.

Every answer's cost is re-added with :func:`math.fsum` and checked against its budget
(an exactness check: a float sum in another order can land on the other side of a
budget that equals a network's cost exactly).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dna_zoo.errors import ConfigError


class InfeasibleBudgetError(ConfigError):
    """No network of the space fits the budget(s)."""

    def __init__(self, message: str, *, smallest: dict[str, float], hint: str | None = None):
        super().__init__(message, hint=hint)
        self.smallest = smallest


@dataclass(frozen=True)
class KnapsackProblem:
    """Per block: candidate labels, costs ``(n, m)`` and losses ``(n,)``; plus fixed costs ``(m,)``.

    ``fixed_loss`` is added to every network's loss (0 for ratings).
    """

    labels: tuple[tuple[str, ...], ...]
    costs: tuple[np.ndarray, ...]
    losses: tuple[np.ndarray, ...]
    fixed: np.ndarray
    cost_names: tuple[str, ...]
    fixed_loss: float = 0.0

    def __post_init__(self) -> None:
        m = len(self.cost_names)
        if not (len(self.labels) == len(self.costs) == len(self.losses)) or not self.labels:
            raise ConfigError("a knapsack problem needs labels, costs and losses for the same blocks")
        for b, (lab, c, ls) in enumerate(zip(self.labels, self.costs, self.losses, strict=True)):
            if c.ndim != 2 or c.shape != (len(lab), m) or ls.shape != (len(lab),) or not len(lab):
                raise ConfigError(f"block {b}: need {len(lab)} candidates x {m} costs and as many losses")
            if not (np.isfinite(c).all() and np.isfinite(ls).all()):
                raise ConfigError(f"block {b} has a non-finite cost or loss")
        if self.fixed.shape != (m,):
            raise ConfigError(f"fixed costs must have {m} entries")

    @property
    def num_blocks(self) -> int:
        return len(self.labels)

    @property
    def num_costs(self) -> int:
        return len(self.cost_names)

    def num_networks(self) -> int:
        return math.prod(len(lab) for lab in self.labels)

    def total_costs(self, choice: Sequence[int]) -> tuple[float, ...]:
        """Exact (``fsum``) total of each cost for one candidate index per block."""
        return tuple(
            math.fsum([float(self.fixed[j])] + [float(self.costs[b][i, j]) for b, i in enumerate(choice)])
            for j in range(self.num_costs)
        )

    def total_loss(self, choice: Sequence[int]) -> float:
        return math.fsum([self.fixed_loss] + [float(self.losses[b][i]) for b, i in enumerate(choice)])

    def smallest_costs(self) -> tuple[float, ...]:
        """The smallest achievable total of each cost on its own."""
        return tuple(
            math.fsum([float(self.fixed[j])] + [float(c[:, j].min()) for c in self.costs])
            for j in range(self.num_costs)
        )

    def solution(self, choice: Sequence[int]) -> Solution:
        choice = tuple(int(i) for i in choice)
        return Solution(
            choice=choice,
            labels=tuple(self.labels[b][i] for b, i in enumerate(choice)),
            loss=self.total_loss(choice),
            costs=self.total_costs(choice),
        )


@dataclass(frozen=True)
class Solution:
    """One network: the chosen candidate index and label per block, its loss and total costs."""

    choice: tuple[int, ...]
    labels: tuple[str, ...]
    loss: float
    costs: tuple[float, ...]

    def fits(self, budgets: Sequence[float | None]) -> bool:
        return all(b is None or c <= b for c, b in zip(self.costs, budgets, strict=True))


# --- pruning --------------------------------------------------------------------------------
def nondominated(costs: np.ndarray, losses: np.ndarray) -> np.ndarray:
    """Indices of the candidates no other candidate dominates (ties: the first one stays).

    ``j`` dominates ``i`` when it is no worse in every cost and in loss, and either strictly
    better somewhere or equal everywhere with a smaller index.
    """
    vals = np.concatenate([costs, losses[:, None]], axis=1)
    n = len(vals)
    if vals.shape[1] == 2:  # one cost: a sort and a running minimum
        order = np.lexsort((np.arange(n), vals[:, 1], vals[:, 0]))
        loss_sorted = vals[order, 1]
        best_before = np.minimum.accumulate(np.r_[np.inf, loss_sorted[:-1]])
        return np.sort(order[loss_sorted < best_before])
    keep = np.ones(n, dtype=bool)
    idx = np.arange(n)
    chunk = max(1, 2_000_000 // max(1, n * vals.shape[1]))
    for start in range(0, n, chunk):  # rows i of the chunk against every j, in one array op
        rows = vals[start : start + chunk]
        le = (vals[None, :, :] <= rows[:, None, :]).all(axis=2)
        lt = (vals[None, :, :] < rows[:, None, :]).any(axis=2)
        ids = idx[start : start + chunk, None]
        dominated = le & (lt | (idx[None, :] < ids)) & (idx[None, :] != ids)
        keep[start : start + chunk] = ~dominated.any(axis=1)
    return np.flatnonzero(keep)


def prune(problem: KnapsackProblem) -> tuple[KnapsackProblem, list[np.ndarray]]:
    """The problem without dominated candidates, and each block's kept original indices."""
    kept = [nondominated(c, ls) for c, ls in zip(problem.costs, problem.losses, strict=True)]
    pruned = KnapsackProblem(
        labels=tuple(tuple(lab[i] for i in k) for lab, k in zip(problem.labels, kept, strict=True)),
        costs=tuple(c[k] for c, k in zip(problem.costs, kept, strict=True)),
        losses=tuple(ls[k] for ls, k in zip(problem.losses, kept, strict=True)),
        fixed=problem.fixed,
        cost_names=problem.cost_names,
        fixed_loss=problem.fixed_loss,
    )
    return pruned, kept


# --- one cost: exact Pareto front by merging block fronts -----------------------------------
@dataclass(frozen=True)
class Front:
    """Pareto front along one cost: costs ascending, losses strictly descending.

    ``choices[k]`` holds the candidate index per block (in the problem it was built from)
    of the k-th point; costs include the fixed part.
    """

    costs: np.ndarray
    losses: np.ndarray
    choices: np.ndarray

    def __len__(self) -> int:
        return len(self.costs)

    def best_under(self, budget: float) -> int | None:
        """Index of the lowest-loss point with cost <= budget (the last one that fits)."""
        i = int(np.searchsorted(self.costs, budget, side="right")) - 1
        return i if i >= 0 else None


def _merge_fronts(
    costs: Sequence[np.ndarray], losses: Sequence[np.ndarray], cap: float = math.inf
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact Pareto set of sums over blocks (one cost per candidate), partial sums above
    ``cap`` minus the cheapest rest dropped. Returns costs, losses, choice matrix."""
    rest_min = np.cumsum([0.0] + [float(c.min()) for c in reversed(costs)])[::-1]
    f_cost = np.zeros(1)
    f_loss = np.zeros(1)
    f_choice = np.zeros((1, 0), dtype=np.int64)
    for b, (bc, bl) in enumerate(zip(costs, losses, strict=True)):
        c = (f_cost[:, None] + bc[None, :]).ravel()
        ls = (f_loss[:, None] + bl[None, :]).ravel()
        parent, item = np.divmod(np.arange(c.size), bc.size)
        if math.isfinite(cap):
            ok = c + rest_min[b + 1] <= cap * (1 + 1e-12) + 1e-12
            c, ls, parent, item = c[ok], ls[ok], parent[ok], item[ok]
            if not c.size:
                return np.zeros(0), np.zeros(0), np.zeros((0, len(costs)), dtype=np.int64)
        order = np.lexsort((ls, c))
        c, ls, parent, item = c[order], ls[order], parent[order], item[order]
        best_before = np.minimum.accumulate(np.r_[np.inf, ls[:-1]])
        keep = ls < best_before
        f_cost, f_loss = c[keep], ls[keep]
        f_choice = np.concatenate([f_choice[parent[keep]], item[keep, None]], axis=1)
    return f_cost, f_loss, f_choice


def front_along(
    problem: KnapsackProblem, axis: int = 0, *, cap: float = math.inf, pruned: bool = False
) -> Front:
    """Exact Pareto front (loss vs cost ``axis``) of the whole network, ignoring other costs.

    Choices index the candidates of ``problem`` (pruning is done internally unless the
    problem is already ``pruned``). Points above ``cap`` are left out.
    """
    if pruned:
        work, kept = problem, [np.arange(len(lab)) for lab in problem.labels]
    else:
        single = KnapsackProblem(
            problem.labels,
            tuple(c[:, axis : axis + 1] for c in problem.costs),
            problem.losses,
            problem.fixed[axis : axis + 1],
            (problem.cost_names[axis],),
            problem.fixed_loss,
        )
        work, kept = prune(single)
        axis = 0
    fixed = float(work.fixed[axis])
    c, ls, ch = _merge_fronts([x[:, axis] for x in work.costs], work.losses, cap - fixed)
    choices = np.stack([kept[b][ch[:, b]] for b in range(problem.num_blocks)], axis=1) if len(c) else ch
    return Front(c + fixed, ls + problem.fixed_loss, choices)


# --- several costs: branch-and-bound ---------------------------------------------------------
class _BranchAndBound:
    def __init__(self, problem: KnapsackProblem, budgets: Sequence[float]):
        self.p = problem
        self.budgets = np.asarray(budgets, dtype=float) - problem.fixed
        n = problem.num_blocks
        # candidates of each block in order of loss (the first ones are the promising ones)
        self.order = [np.argsort(ls, kind="stable") for ls in problem.losses]
        self.costs = [c[o] for c, o in zip(problem.costs, self.order, strict=True)]
        self.losses = [ls[o] for ls, o in zip(problem.losses, self.order, strict=True)]
        self.rest_min_loss = np.r_[np.cumsum([float(ls.min()) for ls in reversed(self.losses)])[::-1], 0.0]
        self.rest_min_cost = np.vstack(
            [np.cumsum([c.min(axis=0) for c in reversed(self.costs)], axis=0)[::-1], np.zeros(len(budgets))]
        )
        # exact one-cost fronts of blocks k.. for every cost: lower bounds on the rest's loss
        self.rest_fronts: list[list[tuple[np.ndarray, np.ndarray]]] = []
        for k in range(n):
            per_cost = []
            for j in range(problem.num_costs):
                bc = [c[:, j] for c in problem.costs[k:]]
                bl = list(problem.losses[k:])
                keep = [nondominated(c[:, None], ls) for c, ls in zip(bc, bl, strict=True)]
                fc, fl, _ = _merge_fronts(
                    [c[i] for c, i in zip(bc, keep, strict=True)],
                    [ls[i] for ls, i in zip(bl, keep, strict=True)],
                    self.budgets[j],
                )
                per_cost.append((fc, fl))
            self.rest_fronts.append(per_cost)
        self.best_loss = math.inf
        self.best: list[int] | None = None

    def rest_bound(self, k: int, remaining: np.ndarray) -> float:
        """Lowest loss blocks k.. can reach with ``remaining`` budget per cost (a lower bound)."""
        if k >= self.p.num_blocks:
            return 0.0
        bound = self.rest_min_loss[k]
        for j, (fc, fl) in enumerate(self.rest_fronts[k]):
            i = int(np.searchsorted(fc, remaining[j] * (1 + 1e-12) + 1e-12, side="right")) - 1
            if i < 0:
                return math.inf
            bound = max(bound, float(fl[i]))
        return bound

    def run(self, budgets: Sequence[float] | None = None) -> list[int] | None:
        """Solve; ``budgets`` (total, like the constructor's) may be tighter than those the
        bounds were built for, never looser."""
        if budgets is not None:
            self.budgets = np.asarray(budgets, dtype=float) - self.p.fixed
        self.best_loss, self.best = math.inf, None
        self._visit(0, 0.0, np.zeros(self.p.num_costs), [])
        return self.best

    def _visit(self, k: int, loss: float, cost: np.ndarray, picked: list[int]) -> None:
        if k == self.p.num_blocks:
            choice = [int(self.order[b][i]) for b, i in enumerate(picked)]
            total = self.p.total_costs(choice)
            full_budget = self.budgets + self.p.fixed
            if all(t <= b for t, b in zip(total, full_budget, strict=True)):
                exact_loss = self.p.total_loss(choice)
                if exact_loss < self.best_loss:
                    self.best_loss, self.best = exact_loss, choice
            return
        slack = 1e-12 * (1 + np.abs(self.budgets))
        rest_min_loss = self.rest_min_loss[k + 1]
        for i, (c_i, l_i) in enumerate(zip(self.costs[k], self.losses[k], strict=True)):
            new_loss = loss + float(l_i)
            if new_loss + rest_min_loss >= self.best_loss:
                break  # candidates come in order of loss: none after this one can do better
            new_cost = cost + c_i
            remaining = self.budgets - new_cost
            if (remaining - self.rest_min_cost[k + 1] < -slack).any():
                continue
            if new_loss + self.rest_bound(k + 1, remaining) >= self.best_loss:
                continue
            picked.append(i)
            self._visit(k + 1, new_loss, new_cost, picked)
            picked.pop()


# --- the public entry points -------------------------------------------------------------------
def _check_budgets(problem: KnapsackProblem, budgets: Sequence[float | None]) -> list[float]:
    if len(budgets) != problem.num_costs:
        raise ConfigError(f"need one budget per cost ({problem.num_costs}), got {len(budgets)}")
    out = []
    for name, b in zip(problem.cost_names, budgets, strict=True):
        if b is None:
            out.append(math.inf)
            continue
        if not isinstance(b, (int, float)) or math.isnan(b) or b <= 0:
            raise ConfigError(f"the {name} budget must be a positive number, got {b}")
        out.append(float(b))
    return out


def fmt_number(v: float) -> str:
    """Costs in messages: exact counts for big numbers (params, MACs), 6 digits otherwise (ms)."""
    return f"{v:,.0f}" if abs(v) >= 1e4 else f"{v:.6g}"


def _infeasible(problem: KnapsackProblem, budgets: Sequence[float]) -> InfeasibleBudgetError:
    smallest = dict(zip(problem.cost_names, problem.smallest_costs(), strict=True))
    over = [n for n, b in zip(problem.cost_names, budgets, strict=True) if smallest[n] > b]
    if over:
        parts = [
            f"{n} budget {fmt_number(budgets[problem.cost_names.index(n)])} is below the smallest "
            f"achievable {fmt_number(smallest[n])}"
            for n in over
        ]
        return InfeasibleBudgetError(
            "no network of the space fits: " + "; ".join(parts),
            smallest=smallest,
            hint="raise the budget to at least the smallest achievable cost",
        )
    return InfeasibleBudgetError(
        "no network of the space fits all budgets at once (each alone is achievable: "
        + ", ".join(f"smallest {n} {fmt_number(v)}" for n, v in smallest.items())
        + ")",
        smallest=smallest,
        hint="relax one of the budgets",
    )


def _restrict(problem: KnapsackProblem, dims: Sequence[int]) -> KnapsackProblem:
    """The same problem with only the costs ``dims`` (in that order)."""
    dims = list(dims)
    return KnapsackProblem(
        problem.labels,
        tuple(c[:, dims] for c in problem.costs),
        problem.losses,
        problem.fixed[dims],
        tuple(problem.cost_names[j] for j in dims),
        problem.fixed_loss,
    )


def solve(problem: KnapsackProblem, budgets: Sequence[float | None]) -> Solution:
    """The lowest-loss network whose every cost is within its budget (``None`` = no limit).

    Raises :class:`InfeasibleBudgetError` (with the smallest achievable costs) if none fits.
    """
    caps = _check_budgets(problem, budgets)
    limited = [j for j, b in enumerate(caps) if math.isfinite(b)]
    if not limited:  # no constraint: every block takes its best candidate
        return problem.solution([int(np.argmin(ls)) for ls in problem.losses])
    if len(limited) == 1:
        j = limited[0]
        front = front_along(problem, j, cap=caps[j])
        i = front.best_under(caps[j] * (1 + 1e-12) + 1e-12) if len(front) else None
        # exactness check: the fsum total must fit; else take the next point down the front
        while i is not None and problem.total_costs(front.choices[i])[j] > caps[j]:
            i = i - 1 if i > 0 else None
        if i is None:
            raise _infeasible(problem, caps)
        return problem.solution(front.choices[i])
    pruned, kept = prune(_restrict(problem, limited))
    best = _BranchAndBound(pruned, [caps[j] for j in limited]).run()
    if best is None:
        raise _infeasible(problem, caps)
    return problem.solution([int(kept[b][i]) for b, i in enumerate(best)])


def pareto_front(
    problem: KnapsackProblem,
    budgets: Sequence[float | None] | None = None,
    *,
    axis: int = 0,
    max_points: int = 5000,
) -> list[Solution]:
    """Every Pareto-optimal network (loss vs cost ``axis``), cheapest first.

    The other costs' budgets (if given) restrict the networks; the budget on ``axis`` itself
    is ignored, so the front shows what more or less of that cost would buy.
    """
    caps = _check_budgets(problem, budgets if budgets is not None else [None] * problem.num_costs)
    caps[axis] = math.inf
    others = [j for j, b in enumerate(caps) if math.isfinite(b)]
    if not others:
        return _clean_front([problem.solution(ch) for ch in front_along(problem, axis).choices], axis)
    # walk down the front: the best network, then the best one strictly cheaper, ... (the
    # pruning and the bounds are built once, for the loosest budget on the axis)
    dims = [axis, *others]
    sub = _restrict(problem, dims)
    pruned, kept = prune(sub)
    bnb = _BranchAndBound(pruned, [caps[j] for j in dims])
    sub_caps = [caps[j] for j in dims]
    points: list[Solution] = []
    while len(points) < max_points:
        best = bnb.run(sub_caps)
        if best is None:
            break
        sol = problem.solution([int(kept[b][i]) for b, i in enumerate(best)])
        points.append(sol)
        sub_caps[0] = math.nextafter(sol.costs[axis], -math.inf)
        if sub_caps[0] <= 0:
            break
    return _clean_front(points, axis)


def _clean_front(points: list[Solution], axis: int) -> list[Solution]:
    """Cheapest first, losses strictly falling, judged on the exact (fsum) totals: float sums
    in another order can make two equal networks look different."""
    out: list[Solution] = []
    for s in sorted(points, key=lambda s: (s.costs[axis], s.loss)):
        if not out or s.loss < out[-1].loss:
            out.append(s)
    return out


def brute_force(problem: KnapsackProblem, budgets: Sequence[float | None]) -> Solution:
    """Every network, one by one: the reference for small problems (raises if none fits)."""
    import itertools

    caps = _check_budgets(problem, budgets)
    best: tuple[float, tuple[int, ...]] | None = None
    for choice in itertools.product(*(range(len(lab)) for lab in problem.labels)):
        costs = problem.total_costs(choice)
        if all(c <= b for c, b in zip(costs, caps, strict=True)):
            loss = problem.total_loss(choice)
            if best is None or loss < best[0]:
                best = (loss, choice)
    if best is None:
        raise _infeasible(problem, caps)
    return problem.solution(best[1])
