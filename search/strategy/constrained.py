"""Constrained search over a ratings file: cost models + budgets -> :class:`SearchResult`.

Glue between the pure solver (:mod:`dna_zoo.search.strategy.knapsack`) and the project's data:
each candidate of the ratings' space is costed by every cost model (per distinct layer,
cached), the knapsack is solved exactly, and the answer is written up with its costs,
their sources, the Pareto front and DNA-a..d costed by the same models.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dna_zoo.arch import LayerInstance
from dna_zoo.complexity import encoding_cost
from dna_zoo.errors import ConfigError, DnaZooError
from dna_zoo.models import PUBLISHED, published_encoding
from dna_zoo.search.ratings import Ratings
from dna_zoo.search.result import CostFigure, FrontPoint, Reference, SearchResult
from dna_zoo.search.strategy.cost import CostModel
from dna_zoo.search.strategy.knapsack import KnapsackProblem, Solution, pareto_front, solve

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Constraint:
    """A cost model and its budget, in the model's unit (ms, params, MACs)."""

    model: CostModel
    budget: float

    def __post_init__(self) -> None:
        if not isinstance(self.budget, (int, float)) or not self.budget > 0:
            raise ConfigError(f"the {self.model.name} budget must be positive, got {self.budget}")


def candidate_costs(model: CostModel, ratings: Ratings) -> list[np.ndarray]:
    """Per block, the cost of every candidate (in ``space.block_candidates`` order).

    Layer costs are cached by what defines a layer (op, width, stride, input channels and
    resolution), so the default space's 6,234 candidates cost a few hundred lookups.
    """
    cache: dict[tuple, float] = {}

    def layer(inst: LayerInstance) -> float:
        key = (inst.layer, inst.in_chs, inst.in_res)
        if key not in cache:
            cache[key] = float(model.layer_cost(inst))
        return cache[key]

    space = ratings.space
    out = []
    for b in range(len(space.blocks)):
        out.append(
            np.array(
                [
                    sum(layer(i) for i in space.layer_instances(c, model.input_size))
                    for c in space.block_candidates(b)
                ],
                dtype=float,
            )
        )
    return out


def build_problem(ratings: Ratings, models: Sequence[CostModel]) -> KnapsackProblem:
    """The knapsack of a ratings file under the given cost models (all of the same space)."""
    space = ratings.space
    if not models:
        raise ConfigError("need at least one cost model")
    for m in models:
        if m.space.identity != space.identity:
            raise ConfigError(
                f"the {m.name} cost model is for search space '{m.space.name}' ({m.space.identity}), "
                f"the ratings are for '{space.name}' ({space.identity})",
                hint="rate and cost the same search space",
            )
    missing = ratings.missing()
    if missing:
        raise ConfigError(
            f"the ratings lack {len(missing)} candidate(s) of their space, e.g. {missing[0]}",
            hint="rate the whole space (`dna supernet rate`)",
        )
    per_model = [candidate_costs(m, ratings) for m in models]
    labels, costs, losses = [], [], []
    for b in range(len(space.blocks)):
        cands = list(space.block_candidates(b))
        labels.append(tuple(c.key for c in cands))
        costs.append(np.stack([pm[b] for pm in per_model], axis=1))
        losses.append(np.array([ratings.losses[c.key] for c in cands], dtype=float))
    return KnapsackProblem(
        labels=tuple(labels),
        costs=tuple(costs),
        losses=tuple(losses),
        fixed=np.array([float(m.fixed_cost()) for m in models]),
        cost_names=tuple(m.name for m in models),
    )


def reference_points(ratings: Ratings, models: Sequence[CostModel]) -> list[Reference]:
    """DNA-a..d costed by the same models; rated only if they are networks of the space."""
    from dna_zoo.search.space import Candidate

    refs = []
    for name in PUBLISHED:
        enc = published_encoding(name)
        costs: dict[str, float | None] = {}
        for m in models:
            try:
                costs[m.name] = float(m.network_cost(enc))
            except (DnaZooError, KeyError) as e:  # e.g. a latency table without these widths
                log.info("cannot cost %s with %s: %s", name, m.name, e)
                costs[m.name] = None
        rating = None
        try:
            cands: list[Candidate] = ratings.space.from_encoding(enc)
            if all(c.key in ratings.losses for c in cands):
                rating = float(sum(ratings.losses[c.key] for c in cands))
        except DnaZooError:
            pass
        refs.append(Reference(name, costs, rating))
    return refs


def _figure(m: CostModel, value: float, budget: float | None) -> CostFigure:
    details: dict[str, Any] = {}
    for attr in ("device", "runtime", "precision", "batch", "threads", "convention"):
        v = getattr(m, attr, None)
        if v is not None and isinstance(v, (str, int, float)):
            details[attr] = v
    spec = getattr(getattr(m, "table", None), "spec", None)  # latency: what the table was made for
    if spec is not None and hasattr(spec, "to_dict"):
        details.update({k: v for k, v in spec.to_dict().items() if v is not None})
    details["input_size"] = m.input_size
    estimate = getattr(m, "estimate", None)  # an estimated latency: estimator, held-out error, command
    if isinstance(estimate, dict):
        details["estimate"] = estimate
    return CostFigure(m.name, float(value), m.unit, str(m.source), bool(m.estimated), budget, details)


def constrained_search(
    ratings: Ratings,
    constraints: Sequence[Constraint],
    *,
    extra_models: Sequence[CostModel] = (),
    name: str | None = None,
    ratings_path: str | None = None,
) -> SearchResult:
    """The lowest-rated network within every budget, its Pareto front and the references.

    The front runs along the first constraint's cost (the others stay enforced). Cost models
    in ``extra_models`` are reported for the answer but do not constrain it. (No progress
    bar: costing the paper's space and solving take well under a second.)
    """
    if not constraints:
        raise ConfigError("give at least one budget", hint="e.g. --latency-ms 20, --macs 400M or --params 5M")
    names = [c.model.name for c in constraints]
    if len(set(names)) != len(names):
        raise ConfigError(f"each cost may be constrained once, got {names}")
    models = [c.model for c in constraints] + [m for m in extra_models if m.name not in names]
    budgets: list[float | None] = [c.budget for c in constraints] + [None] * (len(models) - len(constraints))
    t0 = time.perf_counter()
    problem = build_problem(ratings, models)
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    best: Solution = solve(problem, budgets)
    t_solve = time.perf_counter() - t0
    t0 = time.perf_counter()
    front = pareto_front(problem, budgets, axis=0)
    t_front = time.perf_counter() - t0

    space = ratings.space
    from dna_zoo.search.space import Candidate

    cands = [Candidate.parse(k) for k in best.labels]
    enc = space.to_encoding(cands, name=name)
    first = models[0]
    cost = encoding_cost(
        enc, input_size=first.input_size, in_chans=first.in_chans, num_classes=first.num_classes
    )
    log.info(
        "search: build %.3fs, solve %.3fs, front %.3fs (%d points)", t_build, t_solve, t_front, len(front)
    )
    return SearchResult(
        arch=enc,
        candidates=best.labels,
        rating=best.loss,
        costs=tuple(_figure(m, v, b) for m, v, b in zip(models, best.costs, budgets, strict=True)),
        params=cost.params,
        macs={"conv_linear": cost.macs_as("conv_linear"), "all": cost.macs_as("all")},
        input_size=first.input_size,
        num_classes=first.num_classes,
        space={"name": space.name, "identity": space.identity, "num_networks": space.num_networks()},
        ratings=ratings.summary(ratings_path),
        front_axis=models[0].name,
        front=tuple(
            FrontPoint(dict(zip(problem.cost_names, s.costs, strict=True)), s.loss, s.labels) for s in front
        ),
        references=tuple(reference_points(ratings, models)),
        meta={
            "solver": "exact multiple-choice knapsack (Pareto DP / branch-and-bound)",
            "seconds": {"build": round(t_build, 4), "solve": round(t_solve, 4), "front": round(t_front, 4)},
        },
    )
