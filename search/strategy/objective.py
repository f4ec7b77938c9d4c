"""What the constrained search maximises: the rating, the calibrated accuracy predictor, the
ImageNet prior, or MACs.

The exact multiple-choice knapsack needs a score that adds up over blocks. A ratings file
is that already (sum of block losses). The calibrated accuracy predictor
(:mod:`dna_zoo.search.strategy.predictor`) is a ridge over per-block ratings (additive),
depth (additive) and log MACs (not additive): log MACs is linearised the same way as the
prior's below, re-linearised until the choice stops changing, and the chosen net's top-1 is
then predicted with the exact predictor. The ImageNet prior (:mod:`dna_zoo.search.prior`)
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

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dna_zoo.arch import ArchEncoding
from dna_zoo.complexity import encoding_cost
from dna_zoo.errors import ConfigError, UnknownNameError
from dna_zoo.search.prior import ImageNetPrior, load_prior
from dna_zoo.search.ratings import Ratings
from dna_zoo.search.space import Candidate, SearchSpace
from dna_zoo.search.strategy.cost import MacsCost, ParamsCost
from dna_zoo.search.strategy.predictor import AccuracyPredictor

OBJECTIVES = ("rating", "predictor", "prior", "macs")
#: The default objective is the first of these whose inputs exist (:data:`NEEDS`), decided by
#: measurement:
#: * bench/ranking_decisions.py (42 Fashion-MNIST nets trained alone with four seeds, 14 per
#:   latency band, AMD EPYC; bench/results/ranking_decisions-seeds4.json): within-band Kendall tau
#:   MACs 0.38 [0.13, 0.60], the DNA rating (sum of block losses) 0.24, calibrated predictor 0.30
#:   (0.32 with the last block rated by its label loss; pooled with two more bench spaces, 126
#:   nets in 9 bands, MACs 0.35 and that predictor -0.005 [-0.15, +0.13] vs MACs); no objective
#:   beat MACs (no paired delta-tau CI above 0; pooled, the DNA sum -0.18 [-0.38, +0.01]; the
#:   costlier stitched + finetune re-rating +0.015 [-0.19, +0.21], and measurably worse at
#:   picking in the wide space) and MACs ranks the whole space far better than the rating
#:   (global tau 0.67 vs 0.15), so with a ratings file the default is MACs, and the rating /
#:   predictor stay on request;
#: * without a ratings file, the ImageNet prior ranks the 23 ImageNet-trained nets of DNA's space
#:   at leave-one-out tau 0.763 vs MACs 0.755 (search/prior.py), so it comes before MACs;
#: * a calibration (``dna supernet calibrate``) is the user's own measurement: where its
#:   paired delta-tau to MACs has a 95% CI above 0, the predictor comes first
#:   (:func:`default_objective`).
OBJECTIVE_PREFERENCE = ("prior", "macs", "predictor", "rating")
#: Shown where the default passed over the ratings (the measured reason).
RATINGS_NOT_DEFAULT = (
    "MACs, not the rating, is the default with a ratings file: on bench/ranking_decisions.py (42 nets) "
    "the rating ranked no better than MACs within latency bands (tau 0.24 vs 0.38) and worse over the "
    "whole space (0.15 vs 0.67); pass --objective rating or predictor to use them, and `dna supernet "
    "calibrate RUN` checks which ranks better on your data"
)
#: The inputs each objective needs.
NEEDS: dict[str, tuple[str, ...]] = {
    "rating": ("ratings",),
    "predictor": ("ratings", "calibration"),
    "prior": (),
    "macs": (),
}
#: How tables and model cards name the objective that chose a net.
OBJECTIVE_TEXT = {
    "rating": "rating (sum of block losses)",
    "predictor": "predictor (the ratings calibrated on networks trained alone)",
    "prior": "prior (ImageNet prior)",
    "macs": "macs (most MACs within the budgets)",
}
_CALIBRATE_HINT = "calibrate the supernet run first: `dna supernet calibrate RUN --nets 10`"
#: The prior was fitted on ImageNet at 224 px with 1000 classes; it is evaluated there.
PRIOR_KW = {"input_size": 224, "num_classes": 1000}


def check_objective(name: str) -> str:
    if name not in OBJECTIVES:
        raise UnknownNameError("objective", name, OBJECTIVES)
    return name


def objective_text(name: str) -> str:
    """E.g. ``predictor (the ratings calibrated on networks trained alone)``."""
    return OBJECTIVE_TEXT.get(name, name)


def default_objective(*, ratings: bool, calibration: bool, predictor_beats_macs: bool = False) -> str:
    """The predictor where a calibration measured it beating MACs on the user's data (paired
    delta-tau CI above 0); else MACs where a ratings file is given (it ranked better than the
    rating on our benchmark); else the first objective of :data:`OBJECTIVE_PREFERENCE` that
    needs nothing."""
    if ratings and calibration and predictor_beats_macs:
        return "predictor"
    if ratings:
        return "macs"
    have = {"ratings": ratings, "calibration": calibration}
    return next(o for o in OBJECTIVE_PREFERENCE if all(have[n] for n in NEEDS[o]))


def predictor_beats_macs(predictor: Any) -> bool:
    """Whether a calibration's leave-one-out tau beats MACs' on the same nets (paired 95% CI of
    the difference above 0)."""
    ci = (getattr(predictor, "loo", None) or {}).get("tau_minus_macs_ci")
    return bool(ci) and float(ci[0]) > 0


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


def relinearised_search(
    linearise: Callable[[ArchEncoding], Ratings], start: ArchEncoding, search, *, max_rounds: int = 4
) -> tuple[Any, Ratings, list[Sequence[str]]]:
    """Run ``search(linearise(around))``, re-linearising around its answer until the choice stops
    changing (at most ``max_rounds``). Returns the last result, its ratings and every round's choice."""
    around = start
    rounds: list[Sequence[str]] = []
    result, ratings = None, None
    for _ in range(max_rounds):
        ratings = linearise(around)
        result = search(ratings)
        rounds.append(tuple(result.candidates))
        if len(rounds) > 1 and rounds[-1] == rounds[-2]:
            break
        around = result.arch
    return result, ratings, rounds


def prior_search(
    space: SearchSpace, search, *, max_rounds: int = 4
) -> tuple[Any, Ratings, list[Sequence[str]]]:
    """Run ``search(ratings)`` on the linearised prior, re-linearising around its answer.

    ``search`` is a function of a :class:`Ratings` returning a search result with
    ``.arch``; returns the last result, its ratings and the choices of every round.
    """
    return relinearised_search(
        lambda around: prior_ratings(space, around=around),
        middle_network(space),
        search,
        max_rounds=max_rounds,
    )


def _predictor_macs(predictor: AccuracyPredictor, space: SearchSpace) -> MacsCost:
    return MacsCost(
        space, input_size=predictor.input_size, in_chans=predictor.in_chans, num_classes=predictor.num_classes
    )


def predictor_ratings(
    predictor: AccuracyPredictor,
    ratings: Ratings,
    *,
    around: ArchEncoding | None = None,
    macs0: float | None = None,
) -> Ratings:
    """Per-candidate losses = minus the predictor's top-1 terms, log MACs linearised around ``around``.

    Per-block ratings and depth enter the ridge linearly, so their terms are exact; log MACs is
    ``log m0 + (m - m0) / m0`` around ``around``'s MACs (at the predictor's input size), or
    around ``macs0`` MACs.
    """
    predictor.check_ratings(ratings)
    space = ratings.space
    around = middle_network(space) if around is None else around
    macs = _predictor_macs(predictor, space)
    macs0 = macs.network_cost(around) if macs0 is None else float(macs0)
    slope = predictor.slopes()
    losses: dict[str, float] = {}
    for b in range(len(space.blocks)):
        for c in space.block_candidates(b):
            gain = (
                slope[f"rating_b{b}"] * ratings.loss(c)
                + slope["log_macs"] * macs.cost(c) / macs0
                + slope["depth"] * c.depth
            )
            losses[c.key] = -float(gain)
    return Ratings(
        space,
        losses,
        normalization="accuracy_predictor",
        input_size=ratings.input_size,
        teacher=ratings.teacher,
        data=ratings.data,
        meta={
            "objective": "predictor",
            "what": "minus the calibrated predictor's top-1 terms (percent), log MACs linearised",
            "linearised_around_macs": macs0,
        },
    )


#: Extra linearisation points of the predictor's log MACs, spread over the space's MACs range.
SWEEP_POINTS = 12


def predictor_search(
    predictor: AccuracyPredictor, ratings: Ratings, search, *, max_rounds: int = 4, sweep: int = SWEEP_POINTS
) -> tuple[Any, Ratings, list[Sequence[str]]]:
    """The best network by the exact predictor among the answers of the linearised searches.

    :func:`relinearised_search` from the space's middle network; its fixed point need not be
    the exact optimum (the tangent of log MACs is exact only at its own MACs), so the search is
    also run linearised around ``sweep`` MACs levels log-spaced from the smallest network of
    the space to the largest, and the answer of highest exact predicted top-1 is kept.
    Returns it, the ratings that found it and the fixed-point rounds' choices.
    """
    space = ratings.space
    result, used, rounds = relinearised_search(
        lambda around: predictor_ratings(predictor, ratings, around=around),
        middle_network(space), search, max_rounds=max_rounds,
    )  # fmt: skip
    macs = _predictor_macs(predictor, space)
    lo = macs.fixed_cost() + sum(
        min(macs.cost(c) for c in space.block_candidates(b)) for b in range(len(space.blocks))
    )
    hi = macs.fixed_cost() + sum(
        max(macs.cost(c) for c in space.block_candidates(b)) for b in range(len(space.blocks))
    )
    best = float(predictor.predict([result.arch])[0])
    for m0 in np.geomspace(lo, hi, sweep) if sweep > 0 else ():
        rr = predictor_ratings(predictor, ratings, macs0=float(m0))
        res = search(rr)
        top1 = float(predictor.predict([res.arch])[0])
        if top1 > best + 1e-12:
            result, used, best = res, rr, top1
    return result, used, rounds


def predictor_figures(predictor: AccuracyPredictor, enc: ArchEncoding, rounds: int) -> dict[str, Any]:
    """What a result records about the predictor: the exact prediction and its LOO figures."""
    top1 = float(predictor.predict([enc])[0])
    loo = predictor.loo
    lo, hi = loo["tau_ci"]
    return {
        "top1": top1,
        "loo_rmse": float(loo["rmse"]),
        "loo_tau": float(loo["tau"]),
        "loo_tau_ci": [float(lo), float(hi)],
        "k": predictor.k,
        "ratings_identity": predictor.ratings_identity,
        "linearisation_rounds": rounds,
        "text": (
            f"{top1:.1f}% +- {float(loo['rmse']):.2f} (calibrated on {predictor.k} nets trained alone; "
            f"leave-one-out RMSE, tau {float(loo['tau']):.2f} [{lo:.2f}, {hi:.2f}])"
        ),
    }


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
    calibration: AccuracyPredictor | None = None,
    objective: str | None = None,
    space: SearchSpace | None = None,
    input_size: int = 224,
    num_classes: int = 1000,
    batch: int = 1,
    mac_convention: str = "conv_linear",
    force_table: bool = False,
) -> ObjectiveSearch:
    """The best network within ``budgets`` (:class:`~dna_zoo.search.strategy.budgets.Budgets`)
    by ``objective``: ``rating`` (the ratings file), ``predictor`` (the ratings and their
    ``calibration``), ``prior`` (the ImageNet prior) or ``macs``; None: the measured default
    for the inputs given (:func:`default_objective`). An impossible latency budget names the
    smallest achievable latency on the device; the result records the objective and its
    predicted top-1 (the calibrated predictor's, or the ImageNet prior's)."""
    from dna_zoo.search.prior import predict_top1
    from dna_zoo.search.strategy.budgets import budget_constraints
    from dna_zoo.search.strategy.constrained import constrained_search
    from dna_zoo.search.strategy.knapsack import InfeasibleBudgetError

    if objective is None:
        objective = default_objective(
            ratings=ratings is not None, calibration=calibration is not None,
            predictor_beats_macs=calibration is not None and predictor_beats_macs(calibration),
        )  # fmt: skip
    objective = check_objective(objective)
    if objective in ("rating", "predictor") and ratings is None:
        raise ConfigError(
            f"--objective {objective} needs a ratings file",
            hint="pass --ratings runs/s1/ratings.json, or --objective prior (the ImageNet prior)",
        )
    if objective == "predictor":
        if calibration is None:
            raise ConfigError(
                "--objective predictor needs a calibration of the ratings (calibration.json beside them)",
                hint=_CALIBRATE_HINT,
            )
        calibration = calibration.with_ratings(ratings)
    if space is None:
        if ratings is None:
            raise ConfigError("a search without ratings needs a search space")
        space = ratings.space
    if objective == "predictor":
        base = predictor_ratings(calibration, ratings)
    else:
        base = {"rating": ratings, "macs": macs_ratings(space), "prior": prior_ratings(space)}[objective]
    chosen = budget_constraints(
        base, budgets, input_size=input_size, num_classes=num_classes, batch=batch,
        mac_convention=mac_convention, force_table=force_table,
    )  # fmt: skip
    try:
        if objective == "prior":
            result, _, _ = prior_search(space, lambda rr: constrained_search(rr, chosen.constraints))
        elif objective == "predictor":
            result, _, rounds = predictor_search(
                calibration,
                ratings,
                lambda rr: constrained_search(rr, chosen.constraints, ratings_path=ratings_path),
            )
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
    if objective == "predictor":
        result.meta["predictor"] = predictor_figures(calibration, result.arch, len(rounds))
    if objective in ("rating", "predictor"):  # the user's own data: the ImageNet prior says nothing there
        return ObjectiveSearch(result, objective, chosen)
    pred = predict_top1(result.arch)
    result.meta["imagenet_prior"] = {
        "top1": pred.top1, "loo_rmse": pred.loo_rmse, "extrapolated": pred.extrapolated,
        "protocol": "DNA's 500-epoch ImageNet retraining", "text": pred.text(),
    }  # fmt: skip
    return ObjectiveSearch(result, objective, chosen)
