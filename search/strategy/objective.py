"""What the constrained search maximises when there is no ratings file: the ImageNet prior, or MACs.

The exact multiple-choice knapsack needs a score that adds up over blocks. A ratings file
is that already (sum of block losses). The ImageNet prior (:mod:`dna_zoo.search.prior`)
is a ridge over log MACs, log params and the number of expand-6 layers; here it is
linearised around a reference network (``log x ~ log x0 + (x - x0) / x0``), which makes it
a sum of per-candidate terms. :func:`prior_search` re-linearises around the chosen net
until the choice stops changing, and the chosen net's top-1 is then predicted with the
exact prior. ``macs``: the most MACs within the budgets (MACs alone rank ImageNet
accuracy in this space at Kendall tau 0.755).

Both come as a :class:`~dna_zoo.search.ratings.Ratings` whose losses are minus the score,
so every other part of the search (costs, Pareto front, references) is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dna_zoo.arch import ArchEncoding
from dna_zoo.complexity import encoding_cost
from dna_zoo.errors import UnknownNameError
from dna_zoo.search.prior import ImageNetPrior, load_prior
from dna_zoo.search.ratings import Ratings
from dna_zoo.search.space import Candidate, SearchSpace
from dna_zoo.search.strategy.cost import MacsCost, ParamsCost

OBJECTIVES = ("rating", "prior", "macs")
#: The prior was fitted on ImageNet at 224 px with 1000 classes; it is evaluated there.
PRIOR_KW = {"input_size": 224, "num_classes": 1000}


def check_objective(name: str) -> str:
    if name not in OBJECTIVES:
        raise UnknownNameError("objective", name, OBJECTIVES)
    return name


def _expand6(cand: Candidate) -> int:
    return sum(op.kind == "ir" and op.expansion == 6 for op in cand.ops)


def middle_network(space: SearchSpace) -> ArchEncoding:
    """A network halfway through the space: each block's candidate of median MACs."""
    macs = MacsCost(space, **PRIOR_KW)
    choice = []
    for b in range(len(space.blocks)):
        cands = sorted(space.block_candidates(b), key=macs.cost)
        choice.append(cands[len(cands) // 2])
    return space.to_encoding(choice, name="middle")


def prior_ratings(
    space: SearchSpace, *, around: ArchEncoding | None = None, prior: ImageNetPrior | None = None
) -> Ratings:
    """Per-candidate losses = minus the prior's top-1 terms, linearised around ``around``."""
    prior = load_prior() if prior is None else prior
    around = middle_network(space) if around is None else around
    cost0 = encoding_cost(around, **PRIOR_KW)
    slope = dict(zip(prior.features, np.array(prior.weights) / np.array(prior.std), strict=True))
    macs, params = MacsCost(space, **PRIOR_KW), ParamsCost(space, **PRIOR_KW)
    losses: dict[str, float] = {}
    for b in range(len(space.blocks)):
        for c in space.block_candidates(b):
            gain = (
                slope["log_macs"] * macs.cost(c) / cost0.macs
                + slope["log_params"] * params.cost(c) / cost0.params
                + slope["expand6_layers"] * _expand6(c)
            )
            losses[c.key] = -float(gain)
    return Ratings(
        space,
        losses,
        normalization="imagenet_prior",
        input_size=PRIOR_KW["input_size"],
        meta={
            "objective": "prior",
            "what": "minus the ImageNet prior's predicted top-1 terms (percent), linearised",
            "linearised_around": around.to_arch_def(),
        },
    )


def macs_ratings(space: SearchSpace) -> Ratings:
    """Per-candidate losses = minus MACs in millions (at 224 px): the biggest net that fits."""
    macs = MacsCost(space, **PRIOR_KW)
    losses = {c.key: -macs.cost(c) / 1e6 for b in range(len(space.blocks)) for c in space.block_candidates(b)}
    return Ratings(
        space, losses, normalization="macs", input_size=224, meta={"objective": "macs", "what": "-MACs (M)"}
    )


def prior_search(
    space: SearchSpace, search, *, max_rounds: int = 4
) -> tuple[Any, Ratings, list[Sequence[str]]]:
    """Run ``search(ratings)`` on the linearised prior, re-linearising around its answer.

    ``search`` is a function of a :class:`Ratings` returning a search result with
    ``.arch``; returns the last result, its ratings and the choices of every round.
    """
    around = middle_network(space)
    rounds: list[Sequence[str]] = []
    result, ratings = None, None
    for _ in range(max_rounds):
        ratings = prior_ratings(space, around=around)
        result = search(ratings)
        rounds.append(tuple(result.candidates))
        if len(rounds) > 1 and rounds[-1] == rounds[-2]:
            break
        around = result.arch
    return result, ratings, rounds


@dataclass(frozen=True)
class ObjectiveSearch:
    """A search's answer and what chose it: the objective and the constraints it ran under."""

    result: Any
    objective: str
    constraints: Any  # BudgetConstraints


def search_objective(
    budgets: Any,
    *,
    ratings: Ratings | None = None,
    ratings_path: str | None = None,
    objective: str | None = None,
    space: SearchSpace | None = None,
    input_size: int = 224,
    num_classes: int = 1000,
    batch: int = 1,
    mac_convention: str = "conv_linear",
    force_table: bool = False,
) -> ObjectiveSearch:
    """The best network within ``budgets`` (:class:`~dna_zoo.search.strategy.budgets.Budgets`)
    by ``objective``: ``rating`` (the ratings file), ``prior`` (the ImageNet prior, default
    without ratings) or ``macs``. An impossible latency budget names the smallest achievable
    latency on the device; the result records the objective and the prior's predicted top-1."""
    from dna_zoo.errors import ConfigError
    from dna_zoo.search.prior import predict_top1
    from dna_zoo.search.strategy.budgets import budget_constraints
    from dna_zoo.search.strategy.constrained import constrained_search
    from dna_zoo.search.strategy.knapsack import InfeasibleBudgetError

    objective = check_objective(objective or ("rating" if ratings is not None else "prior"))
    if objective == "rating" and ratings is None:
        raise ConfigError(
            "--objective rating needs a ratings file",
            hint="pass --ratings runs/s1/ratings.json, or --objective prior (the ImageNet prior)",
        )
    if space is None:
        if ratings is None:
            raise ConfigError("a search without ratings needs a search space")
        space = ratings.space
    base = {"rating": ratings, "macs": macs_ratings(space), "prior": prior_ratings(space)}[objective]
    chosen = budget_constraints(
        base, budgets, input_size=input_size, num_classes=num_classes, batch=batch,
        mac_convention=mac_convention, force_table=force_table,
    )  # fmt: skip
    try:
        if objective == "prior":
            result, _, _ = prior_search(space, lambda rr: constrained_search(rr, chosen.constraints))
        else:
            path = ratings_path if objective == "rating" else None
            result = constrained_search(base, chosen.constraints, ratings_path=path)
    except InfeasibleBudgetError as e:
        smallest = e.smallest.get("latency")
        if budgets.latency_ms is None or smallest is None or smallest <= float(budgets.latency_ms):
            raise
        estimated = ", estimated" if chosen.latency is not None and chosen.latency.estimated else ""
        where = f"{budgets.device} ({budgets.runtime} {budgets.precision}{estimated})"
        raise InfeasibleBudgetError(
            f"no network of the space fits {float(budgets.latency_ms):g} ms on {where}: "
            f"the smallest achievable latency there is {smallest:.3f} ms",
            smallest=e.smallest,
            hint=f"raise --latency-ms to at least {smallest:.3f}",
        ) from e
    result.meta["objective"] = objective
    if objective == "rating":  # a rating of the user's own data: the ImageNet prior says nothing there
        return ObjectiveSearch(result, objective, chosen)
    pred = predict_top1(result.arch)
    result.meta["imagenet_prior"] = {
        "top1": pred.top1, "loo_rmse": pred.loo_rmse, "extrapolated": pred.extrapolated,
        "protocol": "DNA's 500-epoch ImageNet retraining", "text": pred.text(),
    }  # fmt: skip
    return ObjectiveSearch(result, objective, chosen)
