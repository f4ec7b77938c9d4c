"""A calibrated accuracy predictor in the spirit of DONNA: a ridge over a network's per-block
ratings, its log MACs and its depth, fitted on a few networks of the space trained alone.

The plain rating (the sum of block losses) weighs every block alike and acts mostly as a size
proxy. Here each block's rating gets its own weight, next to log MACs and depth, fitted on K
networks whose stand-alone top-1 was measured (``dna supernet calibrate``). Every figure of
the fit is leave-one-out: a network's prediction comes from a ridge fitted without it, and the
penalty of that ridge is chosen by an inner leave-one-out on the other networks only.

The ridge and Kendall's tau here are the ones the ImageNet prior (:mod:`dna_zoo.search.prior`)
uses as well.

A fitted :class:`AccuracyPredictor` is a versioned JSON file (``calibration.json`` beside the
ratings). It names the space and the ratings it was fitted with, and needs those ratings to
predict (its features are the ratings of a network's candidates).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dna_zoo.arch import ArchEncoding
from dna_zoo.complexity import encoding_cost
from dna_zoo.errors import ConfigError
from dna_zoo.search.ratings import Ratings
from dna_zoo.search.space import SearchSpace

PREDICTOR_FORMAT = "dna-zoo-accuracy-predictor"
PREDICTOR_VERSION = 1
#: MACs as :class:`~dna_zoo.search.strategy.cost.MacsCost` counts them by default.
MAC_CONVENTION = "conv_linear"
#: The ridge penalties (on standardised features) the inner leave-one-out chooses from.
ALPHAS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
#: Bootstrap resamples for the confidence intervals of tau and Spearman's rho.
N_BOOTSTRAP = 2000


# --- the shared statistics ---------------------------------------------------------------------
def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's tau-b of two sequences (ties in either count as neither concordant nor discordant)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(x) != len(y) or len(x) < 2:
        raise ConfigError("kendall_tau needs two sequences of the same length >= 2")
    i, j = np.triu_indices(len(x), k=1)
    dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    denom = np.sqrt(np.count_nonzero(dx) * np.count_nonzero(dy))
    return float((dx * dy).sum() / denom) if denom else 0.0


def _average_ranks(v: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank (O(n^2): meant for tens of networks)."""
    return (v[:, None] > v[None, :]).sum(axis=1) + ((v[:, None] == v[None, :]).sum(axis=1) + 1) / 2


def spearman_rho(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation (average ranks for ties); 0 when either side is constant."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(x) != len(y) or len(x) < 2:
        raise ConfigError("spearman_rho needs two sequences of the same length >= 2")
    rx, ry = _average_ranks(x), _average_ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return 0.0
    return float(np.corrcoef(rx, ry)[0, 1])


def bootstrap_ci(
    stat: Callable[[np.ndarray], float],
    n: int,
    *,
    seed: int = 0,
    n_boot: int = N_BOOTSTRAP,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile CI of ``stat(indices)`` over ``n_boot`` resamples of ``range(n)`` with replacement.

    Every statistic computed with the same ``seed`` sees the same resamples, so CIs of
    different methods on the same nets (and of their difference) are paired.
    """
    rng = np.random.default_rng(seed)
    values = np.array([stat(rng.integers(0, n, n)) for _ in range(n_boot)])
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def ridge_fit(
    x: np.ndarray, y: np.ndarray, alpha: float, *, unpenalised: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ridge on standardised ``x``: returns ``(mean, std, coef)``.

    ``coef`` is ``[intercept, *unpenalised weights, *feature weights]``; the intercept and the
    ``unpenalised`` columns (taken as they are, e.g. a protocol indicator) carry no penalty.
    A constant feature gets std 1 (its standardised column is 0, so its weight is 0).
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std == 0] = 1.0
    free = np.ones((len(y), 1)) if unpenalised is None else np.column_stack([np.ones(len(y)), unpenalised])
    a = np.column_stack([free, (x - mean) / std])
    penalty = np.diag([0.0] * free.shape[1] + [float(alpha)] * x.shape[1])
    coef = np.linalg.solve(a.T @ a + penalty, a.T @ y)
    return mean, std, coef


def ridge_predict(x: np.ndarray, mean: np.ndarray, std: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """Predictions of a :func:`ridge_fit` without unpenalised columns."""
    return coef[0] + ((np.atleast_2d(x) - mean) / std) @ coef[1:]


def _loo_fixed(x: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    pred = np.empty(len(y))
    for k in range(len(y)):
        keep = np.arange(len(y)) != k
        mean, std, coef = ridge_fit(x[keep], y[keep], alpha)
        pred[k] = ridge_predict(x[k], mean, std, coef)[0]
    return pred


def choose_alpha(x: np.ndarray, y: np.ndarray, alphas: Sequence[float] = ALPHAS) -> float:
    """The penalty of least leave-one-out squared error on ``(x, y)`` (the larger one on a tie)."""
    errors = [float(np.mean((_loo_fixed(x, y, a) - y) ** 2)) for a in alphas]
    best = min(errors)
    return float(max(a for a, e in zip(alphas, errors, strict=True) if e <= best * (1 + 1e-9)))


def loo_predictions(X: np.ndarray, y: np.ndarray, *, alpha: float | None = None) -> np.ndarray:
    """Leave-one-out predictions of a standardised ridge.

    ``alpha=None``: each fold's penalty is chosen by an inner leave-one-out on that fold's
    training nets only, so no prediction has seen its own network.
    """
    x, y = np.asarray(X, dtype=float), np.asarray(y, dtype=float)
    if x.ndim != 2 or len(x) != len(y):
        raise ConfigError(f"loo_predictions needs X (n, features) and n targets, got {x.shape}, {y.shape}")
    if len(y) < 3:
        raise ConfigError(f"leave-one-out needs at least 3 networks, got {len(y)}")
    if alpha is not None:
        return _loo_fixed(x, y, alpha)
    pred = np.empty(len(y))
    for k in range(len(y)):
        keep = np.arange(len(y)) != k
        a = choose_alpha(x[keep], y[keep])
        mean, std, coef = ridge_fit(x[keep], y[keep], a)
        pred[k] = ridge_predict(x[k], mean, std, coef)[0]
    return pred


# --- features ----------------------------------------------------------------------------------
def ratings_identity(ratings: Ratings) -> str:
    """A short hash of what a rating says: its space, normalisation, input size and every loss."""
    d = {
        "space": ratings.space.identity,
        "normalization": ratings.normalization,
        "input_size": ratings.input_size,
        "losses": sorted((k, round(float(v), 12)) for k, v in ratings.losses.items()),
    }
    return hashlib.sha256(json.dumps(d).encode()).hexdigest()[:16]


def feature_names(space: SearchSpace) -> list[str]:
    """``rating_b0 .. rating_b{n-1}``, ``log_macs``, ``depth``."""
    return [f"rating_b{b}" for b in range(len(space.blocks))] + ["log_macs", "depth"]


def min_networks(space: SearchSpace) -> int:
    """The fewest calibration networks a fit accepts: number of features + 2."""
    return len(feature_names(space)) + 2


def network_features(
    ratings: Ratings,
    encodings: Sequence[ArchEncoding],
    *,
    input_size: int,
    in_chans: int = 3,
    num_classes: int = 10,
) -> tuple[np.ndarray, list[str]]:
    """One row per network: the rating of its candidate in each block (one column per block),
    its log MACs (``conv_linear``, at ``input_size``) and its depth (number of layers)."""
    space = ratings.space
    rows = []
    for enc in encodings:
        cands = space.from_encoding(enc)
        macs = encoding_cost(enc, input_size=input_size, in_chans=in_chans, num_classes=num_classes)
        depth = sum(len(stage) for stage in enc.stages)
        log_macs = float(np.log(macs.macs_as(MAC_CONVENTION)))
        rows.append([ratings.loss(c) for c in cands] + [log_macs, float(depth)])
    x = np.array(rows, dtype=float).reshape(len(rows), len(space.blocks) + 2)
    return x, feature_names(space)


def rating_sums(ratings: Ratings, encodings: Sequence[ArchEncoding]) -> np.ndarray:
    """The plain rating of each network: the sum of its block losses (lower is better)."""
    return np.array([sum(ratings.loss(c) for c in ratings.space.from_encoding(e)) for e in encodings])


# --- the fitted predictor ----------------------------------------------------------------------
@dataclass
class AccuracyPredictor:
    """``top1 = intercept + weights . (x - mean) / std`` over :func:`network_features`.

    ``loo`` holds the leave-one-out figures on the K calibration nets (``tau``, ``tau_ci``,
    ``spearman``, ``spearman_ci``, ``rmse``, ``mae``) and those of the plain rating and of
    MACs on the same nets (``baselines``); ``nets`` each calibration net with its measured
    and leave-one-out top-1. ``ratings`` (not saved) are the ratings the features come from.
    """

    features: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    weights: tuple[float, ...]
    intercept: float
    alpha: float
    space: SearchSpace
    ratings_identity: str
    k: int
    input_size: int
    in_chans: int
    num_classes: int
    loo: dict[str, Any]
    nets: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    ratings: Ratings | None = field(default=None, compare=False, repr=False)

    @property
    def space_identity(self) -> str:
        return self.space.identity

    @property
    def loo_rmse(self) -> float:
        return float(self.loo["rmse"])

    def check_ratings(self, ratings: Ratings, *, origin: str = "the calibration") -> None:
        """An error unless ``ratings`` are the ones this predictor was fitted with."""
        if ratings.space.identity != self.space.identity:
            raise ConfigError(
                f"{origin} is for search space '{self.space.name}' ({self.space.identity}), the ratings "
                f"are for '{ratings.space.name}' ({ratings.space.identity})",
                hint="calibrate the run these ratings come from: `dna supernet calibrate RUN --nets 10`",
            )
        if ratings_identity(ratings) != self.ratings_identity:
            raise ConfigError(
                f"{origin} was fitted with other ratings of this space "
                f"({self.ratings_identity}, these are {ratings_identity(ratings)})",
                hint="calibrate again after rating: `dna supernet calibrate RUN --nets 10`",
            )

    def with_ratings(self, ratings: Ratings) -> AccuracyPredictor:
        """This predictor bound to ``ratings`` (checked to be the ones it was fitted with)."""
        self.check_ratings(ratings)
        self.ratings = ratings
        return self

    def features_of(self, encodings: Sequence[ArchEncoding]) -> np.ndarray:
        if self.ratings is None:
            raise ConfigError(
                "this accuracy predictor has no ratings to compute features from",
                hint="load it with AccuracyPredictor.load(path, ratings=Ratings.load(...))",
            )
        x, _ = network_features(
            self.ratings, encodings, input_size=self.input_size, in_chans=self.in_chans,
            num_classes=self.num_classes,
        )  # fmt: skip
        return x

    def predict_features(self, x: np.ndarray) -> np.ndarray:
        coef = np.array((self.intercept, *self.weights))
        return ridge_predict(x, np.array(self.mean), np.array(self.std), coef)

    def predict(self, encodings: Sequence[ArchEncoding]) -> np.ndarray:
        """Predicted stand-alone top-1 (percent, the calibration's training protocol) of each network."""
        return self.predict_features(self.features_of(encodings))

    def slopes(self) -> dict[str, float]:
        """d top-1 / d feature (per unit of the raw feature)."""
        return {f: w / s for f, w, s in zip(self.features, self.weights, self.std, strict=True)}

    # --- the file contract ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PREDICTOR_FORMAT,
            "version": PREDICTOR_VERSION,
            "model": "ridge on standardised features + intercept (leave-one-out figures, inner-LOO penalty)",
            "space": self.space.to_dict(),
            "space_identity": self.space.identity,
            "ratings_identity": self.ratings_identity,
            "k": self.k,
            "input_size": self.input_size,
            "in_chans": self.in_chans,
            "num_classes": self.num_classes,
            "mac_convention": MAC_CONVENTION,
            "features": list(self.features),
            "mean": list(self.mean),
            "std": list(self.std),
            "weights": list(self.weights),
            "intercept": self.intercept,
            "alpha": self.alpha,
            "loo": self.loo,
            "nets": self.nets,
            "meta": self.meta,
        }

    def save(self, path: str | Path) -> Path:
        """Atomic write: a reader never sees half a file."""
        from dna_zoo.io import atomic_write_json

        return atomic_write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, origin: str = "accuracy predictor") -> AccuracyPredictor:
        from dna_zoo.io import check_format

        check_format(
            d, origin=origin, what="dna-zoo accuracy predictor (calibration) file", format=PREDICTOR_FORMAT,
            version=PREDICTOR_VERSION, redo="calibrate again: `dna supernet calibrate RUN --nets 10`",
        )  # fmt: skip
        try:
            space = SearchSpace.from_dict(d["space"])
            if d.get("space_identity") != space.identity:
                raise ConfigError(f"{origin} is inconsistent: its space does not match its recorded identity")
            return cls(
                features=tuple(str(f) for f in d["features"]),
                mean=tuple(float(v) for v in d["mean"]),
                std=tuple(float(v) for v in d["std"]),
                weights=tuple(float(v) for v in d["weights"]),
                intercept=float(d["intercept"]),
                alpha=float(d["alpha"]),
                space=space,
                ratings_identity=str(d["ratings_identity"]),
                k=int(d["k"]),
                input_size=int(d["input_size"]),
                in_chans=int(d["in_chans"]),
                num_classes=int(d["num_classes"]),
                loo=dict(d["loo"]),
                nets=list(d.get("nets", [])),
                meta=dict(d.get("meta", {})),
            )
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(f"{origin} is not a valid accuracy predictor file: {e!r}") from e

    @classmethod
    def load(cls, path: str | Path, *, ratings: Ratings | None = None) -> AccuracyPredictor:
        """Read a calibration file; with ``ratings``, check they are the fitted ones and bind them."""
        from dna_zoo.io import read_json

        p = Path(path)
        d = read_json(p, what="calibration file", hint="run `dna supernet calibrate RUN --nets 10` first")
        pred = cls.from_dict(d, origin=str(p))
        if ratings is not None:
            pred.check_ratings(ratings, origin=str(p))
            pred.ratings = ratings
        return pred


def _ranking_figures(score: np.ndarray, y: np.ndarray, *, seed: int) -> dict[str, Any]:
    """Tau and Spearman of ``score`` (higher = better) vs ``y``, with bootstrap CIs (paired by ``seed``)."""
    n = len(y)
    return {
        "tau": kendall_tau(score, y),
        "tau_ci": list(bootstrap_ci(lambda i: kendall_tau(score[i], y[i]), n, seed=seed)),
        "spearman": spearman_rho(score, y),
        "spearman_ci": list(bootstrap_ci(lambda i: spearman_rho(score[i], y[i]), n, seed=seed)),
    }


def _tau_difference_ci(a: np.ndarray, b: np.ndarray, y: np.ndarray, *, seed: int) -> list[float]:
    def diff(i: np.ndarray) -> float:
        return kendall_tau(a[i], y[i]) - kendall_tau(b[i], y[i])

    return list(bootstrap_ci(diff, len(y), seed=seed))


def fit_predictor(
    ratings: Ratings,
    encodings: Sequence[ArchEncoding],
    top1: Sequence[float],
    *,
    input_size: int,
    in_chans: int,
    num_classes: int,
    seed: int = 0,
) -> AccuracyPredictor:
    """Fit the predictor on networks of ``ratings.space`` with their measured stand-alone top-1.

    Needs at least :func:`min_networks` networks. The penalty of the final fit is chosen by
    leave-one-out on all of them; the reported figures are those of the nested leave-one-out
    (:func:`loo_predictions` with ``alpha=None``), next to the plain rating's (minus the sum of
    block losses) and MACs' on the same nets, with paired bootstrap CIs (``seed``).
    """
    encodings = list(encodings)
    y = np.asarray(top1, dtype=float)
    need = min_networks(ratings.space)
    if len(encodings) != len(y):
        raise ConfigError(f"{len(encodings)} networks but {len(y)} top-1 figures")
    if len(y) < need:
        raise ConfigError(
            f"too few networks to fit the accuracy predictor: {len(y)}, it needs at least {need} "
            f"({need - 2} features + 2) for space '{ratings.space.name}'",
            hint=f"calibrate with --nets {max(need, 10)}",
        )
    x, names = network_features(
        ratings, encodings, input_size=input_size, in_chans=in_chans, num_classes=num_classes
    )
    alpha = choose_alpha(x, y)
    mean, std, coef = ridge_fit(x, y, alpha)
    loo = loo_predictions(x, y)
    rating = -rating_sums(ratings, encodings)
    macs = x[:, names.index("log_macs")]
    figures = _ranking_figures(loo, y, seed=seed)
    figures.update(
        rmse=float(np.sqrt(np.mean((loo - y) ** 2))),
        mae=float(np.mean(np.abs(loo - y))),
        n=len(y),
        bootstrap={"resamples": N_BOOTSTRAP, "seed": seed, "level": 0.95, "paired": True},
        baselines={
            "rating": _ranking_figures(rating, y, seed=seed),
            "macs": _ranking_figures(macs, y, seed=seed),
        },
        tau_minus_macs_ci=_tau_difference_ci(loo, macs, y, seed=seed),
        rating_tau_minus_macs_ci=_tau_difference_ci(rating, macs, y, seed=seed),
    )
    nets = [
        {
            "arch_def": enc.to_arch_def(),
            "name": enc.name,
            "top1": float(t),
            "loo_top1": float(p),
            "rating_sum": float(-r),
            "macs": round(float(np.exp(m))),
        }
        for enc, t, p, r, m in zip(encodings, y, loo, rating, macs, strict=True)
    ]
    return AccuracyPredictor(
        features=tuple(names),
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        weights=tuple(float(v) for v in coef[1:]),
        intercept=float(coef[0]),
        alpha=alpha,
        space=ratings.space,
        ratings_identity=ratings_identity(ratings),
        k=len(y),
        input_size=input_size,
        in_chans=in_chans,
        num_classes=num_classes,
        loo=figures,
        nets=nets,
        ratings=ratings,
    )
