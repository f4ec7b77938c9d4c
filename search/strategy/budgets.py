"""The search's budgets, checked once, and the constraints they become.

`dna search --ratings`, `dna search --data` and the pipeline all go through
:class:`Budgets` (the checks and their messages) and :func:`budget_constraints` (the cost
models, the latency table's choice, the ``"auto"`` latency budget).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dna_zoo.errors import ConfigError
from dna_zoo.progress import Reporter
from dna_zoo.search.ratings import Ratings
from dna_zoo.search.strategy.constrained import Constraint, build_problem
from dna_zoo.search.strategy.cost import CostModel, MacsCost, ParamsCost
from dna_zoo.search.strategy.knapsack import front_along

AUTO = "auto"


@dataclass(frozen=True)
class Budgets:
    """The search budgets; ``latency_ms="auto"`` means halfway along the achievable range."""

    latency_ms: float | str | None = None
    device: str | None = None
    runtime: str | None = None
    precision: str = "fp32"
    threads: int | None = None
    macs: float | None = None
    params: float | None = None

    def __post_init__(self) -> None:
        if self.latency_ms is None and (self.device or self.runtime):
            raise ConfigError("--device/--runtime need a latency budget", hint="add --latency-ms")
        if self.latency_ms is None and self.macs is None and self.params is None:
            raise ConfigError(
                "give at least one budget", hint="--latency-ms 20 --device cpu, --macs 400M or --params 5M"
            )
        for name in ("macs", "params"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise ConfigError(f"the {name} budget must be positive, got {v}")
        lat = self.latency_ms
        if isinstance(lat, str) and lat != AUTO:
            raise ConfigError(f"cannot read the latency budget '{lat}'", hint="give milliseconds or 'auto'")
        if isinstance(lat, (int, float)) and not (math.isfinite(lat) and lat > 0):
            raise ConfigError(f"the latency budget must be positive, got {lat} ms")
        if lat is not None and not self.device:
            raise ConfigError("a latency budget needs a device", hint="add --device cpu (or jetson, ...)")


@dataclass(frozen=True)
class BudgetConstraints:
    """The constraints of a search, in budget order latency, MACs, params; ``latency`` is the
    latency cost model (None without a latency budget) and ``latency_info`` how its table was
    found (:func:`~dna_zoo.search.latency.cost.latency_cost_for`)."""

    constraints: list[Constraint]
    latency: Any = None
    latency_info: dict[str, Any] | None = None
    auto_budget_ms: float | None = None


def auto_latency_budget(ratings: Ratings, model: CostModel) -> float:
    """Halfway between the fastest and the slowest network of the ratings' Pareto front."""
    front = front_along(build_problem(ratings, [model]), 0)
    return float(front.costs[0] + 0.5 * (front.costs[-1] - front.costs[0]))


def budget_constraints(
    ratings: Ratings,
    budgets: Budgets,
    *,
    input_size: int,
    in_chans: int = 3,
    num_classes: int = 1000,
    batch: int = 1,
    mac_convention: str = "conv_linear",
    force_table: bool = False,
    build_table: bool = False,
    progress: Reporter | None = None,
) -> BudgetConstraints:
    """The cost models and budgets of a search over ``ratings`` at this resolution/classifier.

    The latency model comes from the measured table of the device (built first with
    ``build_table`` when the device is this machine), else a roofline estimate."""
    from dna_zoo.search.latency.cost import latency_cost_for

    space = ratings.space
    kw = dict(input_size=input_size, in_chans=in_chans, num_classes=num_classes)
    constraints: list[Constraint] = []
    latency, info, auto = None, None, None
    if budgets.latency_ms is not None:
        latency, info = latency_cost_for(
            space, device=str(budgets.device), runtime=budgets.runtime, precision=budgets.precision,
            batch=batch, threads=budgets.threads, force=force_table, build=build_table, progress=progress,
            **kw,
        )  # fmt: skip
        budget = budgets.latency_ms
        if budget == AUTO:
            budget = auto = auto_latency_budget(ratings, latency)
        constraints.append(Constraint(latency, float(budget)))
    if budgets.macs is not None:
        constraints.append(Constraint(MacsCost(space, convention=mac_convention, **kw), float(budgets.macs)))
    if budgets.params is not None:
        constraints.append(Constraint(ParamsCost(space, **kw), float(budgets.params)))
    return BudgetConstraints(constraints, latency, info, auto)


def budget_report(
    space, constraints: Sequence[Constraint], *, draws: int = 20000, seed: int = 0
) -> dict[str, Any]:
    """How much the first budget binds: the space's cheapest and dearest network along its
    cost, their ratio, and the share of the space's networks (uniform over candidates per
    block, i.e. over networks; ``draws`` seeded samples) the budget excludes."""
    c = constraints[0]
    model, fixed = c.model, c.model.fixed_cost()
    per_block = [[model.cost(cand) for cand in space.block_candidates(b)] for b in range(len(space.blocks))]
    lo, hi = fixed + sum(min(b) for b in per_block), fixed + sum(max(b) for b in per_block)
    rng = random.Random(seed)
    over = sum(fixed + sum(rng.choice(b) for b in per_block) > c.budget for _ in range(draws))
    return {
        "cost": model.name, "unit": model.unit, "budget": c.budget, "space_min": lo, "space_max": hi,
        "span": hi / lo if lo > 0 else float("inf"), "excluded_share": over / draws, "draws": draws,
        "input_size": model.input_size,
    }  # fmt: skip
