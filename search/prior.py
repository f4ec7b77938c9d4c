"""An ImageNet prior for DNA's search space: predicted top-1 from a network's shape alone.

A ridge regression over a few features any :class:`~dna_zoo.arch.ArchEncoding` has (log
MACs, log params, number of expand-6 layers), with an offset for the training protocol,
fitted on the published ImageNet results of networks of this space
(``dna_zoo/data/imagenet_ranking.json``: 23 nets of the DNA/BossNAS ranking study trained
5 epochs; ``published.json``: DNA-a..d trained 500 epochs). Predictions are for the
500-epoch protocol and always come with the fit's leave-one-out error on that protocol.

The fit is a file (``dna_zoo/data/imagenet_prior.json``) written by
``bench/fit_imagenet_prior.py``; :func:`fit_prior` and :func:`leave_one_out` here are what
that script and the tests run, so the shipped numbers can be recomputed from the shipped
data. No torch: MACs and params come from :func:`dna_zoo.complexity.encoding_cost`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

from dna_zoo.arch import ArchEncoding
from dna_zoo.complexity import encoding_cost
from dna_zoo.errors import ConfigError, UnknownNameError
from dna_zoo.models import PUBLISHED, published_encoding, published_models
from dna_zoo.search.strategy.predictor import kendall_tau, ridge_fit

PRIOR_VERSION = 1
#: The protocol predictions are for (DNA's 500-epoch retraining).
TARGET_PROTOCOL = "long_500ep"
PROTOCOLS = ("short_5ep", "long_500ep")
FEATURES = ("log_macs", "log_params", "expand6_layers")
#: Ridge penalty on the standardised features (the intercept and protocol offset are not penalised).
DEFAULT_LAMBDA = 1.0


def prior_features(enc: ArchEncoding) -> dict[str, float]:
    """The features the prior uses, at ImageNet's 224 px / 1000 classes."""
    cost = encoding_cost(enc, input_size=224, in_chans=3, num_classes=1000)
    searched = [layer for stage in enc.stages[1:] for layer in stage]
    return {
        "log_macs": float(np.log(cost.macs)),
        "log_params": float(np.log(cost.params)),
        "expand6_layers": float(sum(layer.op.kind == "ir" and layer.op.expansion == 6 for layer in searched)),
    }


@dataclass(frozen=True)
class Sample:
    """One published result: a network, its ImageNet top-1 and the protocol it was trained with."""

    name: str
    arch: ArchEncoding
    top1: float
    protocol: str


def ranking_samples() -> list[Sample]:
    """The shipped training data: the 23 short-protocol nets, then DNA-a..d (500 epochs)."""
    data = json.loads(resources.files("dna_zoo").joinpath("data/imagenet_ranking.json").read_text())
    out = [
        Sample(n["name"], ArchEncoding.from_arch_def(n["arch_def"], name=n["name"]), n["top1"], n["protocol"])
        for n in data["networks"]
    ]
    models = published_models()["models"]
    for m in PUBLISHED:
        out.append(Sample(m, published_encoding(m), float(models[m]["published"]["top1"]), "long_500ep"))
    return out


@dataclass(frozen=True)
class Prediction:
    """A predicted ImageNet top-1 (percent, 500-epoch protocol) and the prior's LOO error."""

    top1: float
    loo_rmse: float
    extrapolated: bool

    def text(self) -> str:
        """E.g. ``77.4% +- 0.31 (ImageNet prior, LOO RMSE)``."""
        note = ", outside the fitted MACs range" if self.extrapolated else ""
        return f"{self.top1:.1f}% +- {self.loo_rmse:.2f} (ImageNet prior, leave-one-out RMSE{note})"


@dataclass(frozen=True)
class ImageNetPrior:
    """A fitted prior: ``top1 = b0 + offset[protocol] + w . (x - mean) / std``."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    weights: tuple[float, ...]
    intercept: float
    protocol_offset: float  # long_500ep minus short_5ep
    lam: float
    macs_range: tuple[float, float]
    loo: dict[str, Any]

    def predict_features(self, feats: dict[str, float], protocol: str = TARGET_PROTOCOL) -> float:
        if protocol not in PROTOCOLS:
            raise UnknownNameError("training protocol", protocol, PROTOCOLS)
        x = np.array([feats[f] for f in self.features])
        z = (x - np.array(self.mean)) / np.array(self.std)
        offset = self.protocol_offset if protocol == "long_500ep" else 0.0
        return float(self.intercept + offset + z @ np.array(self.weights))

    def predict(self, enc: ArchEncoding) -> Prediction:
        """Predicted ImageNet top-1 of ``enc`` trained with DNA's 500-epoch protocol."""
        feats = prior_features(enc)
        macs = float(np.exp(feats["log_macs"]))
        lo, hi = self.macs_range
        return Prediction(
            top1=self.predict_features(feats),
            loo_rmse=float(self.loo["rmse_long_500ep"]),
            extrapolated=not lo * 0.9 <= macs <= hi * 1.1,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "prior_version": PRIOR_VERSION,
            "model": "ridge on standardised features + intercept + protocol offset (long_500ep - short_5ep)",
            "target_protocol": TARGET_PROTOCOL,
            "features": list(self.features),
            "mean": list(self.mean),
            "std": list(self.std),
            "weights": list(self.weights),
            "intercept": self.intercept,
            "protocol_offset": self.protocol_offset,
            "lambda": self.lam,
            "macs_range": list(self.macs_range),
            "loo": self.loo,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ImageNetPrior:
        if not isinstance(d, dict) or d.get("prior_version") != PRIOR_VERSION:
            raise ConfigError(
                "not a dna-zoo ImageNet prior file", hint=f"expected prior_version {PRIOR_VERSION}"
            )
        return cls(
            features=tuple(d["features"]),
            mean=tuple(d["mean"]),
            std=tuple(d["std"]),
            weights=tuple(d["weights"]),
            intercept=float(d["intercept"]),
            protocol_offset=float(d["protocol_offset"]),
            lam=float(d["lambda"]),
            macs_range=(float(d["macs_range"][0]), float(d["macs_range"][1])),
            loo=dict(d["loo"]),
        )


def _design(samples: Sequence[Sample], features: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = [prior_features(s.arch) for s in samples]
    x = np.array([[r[f] for f in features] for r in rows], dtype=float)
    long = np.array([s.protocol == "long_500ep" for s in samples], dtype=float)
    y = np.array([s.top1 for s in samples], dtype=float)
    return x, long, y


def _ridge(x: np.ndarray, long: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, ...]:
    if not (long.any() and (1 - long).any()):
        raise ConfigError("the prior needs results of both training protocols to fit the offset")
    return ridge_fit(x, y, lam, unpenalised=long[:, None])


def _fit_arrays(
    x: np.ndarray, long: np.ndarray, y: np.ndarray, features: Sequence[str], lam: float, macs: np.ndarray
) -> ImageNetPrior:
    mean, std, coef = _ridge(x, long, y, lam)
    return ImageNetPrior(
        features=tuple(features),
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        weights=tuple(float(v) for v in coef[2:]),
        intercept=float(coef[0]),
        protocol_offset=float(coef[1]),
        lam=float(lam),
        macs_range=(float(macs.min()), float(macs.max())),
        loo={},
    )


def leave_one_out(
    samples: Sequence[Sample], *, features: Sequence[str] = FEATURES, lam: float = DEFAULT_LAMBDA
) -> dict[str, Any]:
    """Refit without each sample in turn and predict it (on its own protocol).

    Returns the LOO predictions, Kendall tau of the LOO predictions vs top-1 on the
    short-protocol nets (next to MACs' tau on the same nets) and the RMSE per protocol.
    """
    x, long, y = _design(samples, features)
    macs = np.array([encoding_cost(s.arch).macs for s in samples], dtype=float)
    pred = np.empty(len(y))
    for k in range(len(y)):
        keep = np.arange(len(y)) != k
        fit = _fit_arrays(x[keep], long[keep], y[keep], features, lam, macs[keep])
        pred[k] = fit.predict_features(
            dict(zip(features, x[k], strict=True)), "long_500ep" if long[k] else "short_5ep"
        )
    short = long == 0
    return {
        "predictions": {s.name: round(float(p), 4) for s, p in zip(samples, pred, strict=True)},
        "tau_short_5ep": kendall_tau(pred[short], y[short]),
        "macs_tau_short_5ep": kendall_tau(macs[short], y[short]),
        "rmse_short_5ep": float(np.sqrt(np.mean((pred[short] - y[short]) ** 2))),
        "rmse_long_500ep": float(np.sqrt(np.mean((pred[~short] - y[~short]) ** 2))),
        "n_short_5ep": int(short.sum()),
        "n_long_500ep": int((~short).sum()),
    }


def fit_prior(
    samples: Sequence[Sample] | None = None,
    *,
    features: Sequence[str] = FEATURES,
    lam: float = DEFAULT_LAMBDA,
) -> ImageNetPrior:
    """Fit the prior on ``samples`` (default: the shipped data), with its leave-one-out figures."""
    samples = ranking_samples() if samples is None else list(samples)
    x, long, y = _design(samples, features)
    macs = np.array([encoding_cost(s.arch).macs for s in samples], dtype=float)
    fit = _fit_arrays(x, long, y, features, lam, macs)
    return replace(fit, loo=leave_one_out(samples, features=features, lam=lam))


@lru_cache(maxsize=1)
def load_prior() -> ImageNetPrior:
    """The prior that ships with the package (``dna_zoo/data/imagenet_prior.json``)."""
    text = resources.files("dna_zoo").joinpath("data/imagenet_prior.json").read_text()
    return ImageNetPrior.from_dict(json.loads(text))


def predict_top1(enc: ArchEncoding) -> Prediction:
    """Predicted ImageNet top-1 (500-epoch protocol) of ``enc`` with the shipped prior."""
    return load_prior().predict(enc)
