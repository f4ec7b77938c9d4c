"""Check an artifact against torch on real images, and time contenders side by side.

Parity: max abs diff of the logits and top-1 agreement with the torch model, on real
images, against a tolerance that depends on precision. fp32 is judged like numpy's
``allclose``: every logit within ``atol + rtol * |torch logit|`` (atol 1e-4, rtol 1e-4), so
the bound scales with the logits and stays strict for small ones. Reduced precisions are
judged on top-1 agreement, their max abs diff is recorded.

Timing: a CPU's speed drifts within seconds (bench/results/README.md), so contenders are always
interleaved in one process (round-robin, the order rotated every round), warm-up runs
excluded, and medians / p90 reported (the loop: :mod:`dna_zoo.timing`, shared with latency tables).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from dna_zoo.export.inputs import ImageSet
from dna_zoo.export.runners import Runner
from dna_zoo.timing import TimingConfig, sample_rounds

FP32_TOLERANCE = 1e-4  # absolute part of the fp32 rule (--tolerance replaces it)
FP32_RTOL = 1e-4  # relative part: of each torch logit's magnitude
FP16_TOLERANCE = 5e-2
MIN_AGREEMENT = 0.99  # reduced precision: at most 1% of top-1 predictions may change


def default_tolerance(precision: str) -> float:
    return FP32_TOLERANCE if precision == "fp32" else FP16_TOLERANCE


def parity(
    reference: np.ndarray,
    runner: Runner,
    images: ImageSet,
    *,
    precision: str = "fp32",
    tolerance: float | None = None,
) -> dict[str, Any]:
    """Compare ``runner`` on ``images`` with the torch logits ``reference``."""
    out = runner(images.x)
    out64, ref64 = out.astype(np.float64), reference.astype(np.float64)
    err = np.abs(out64 - ref64)
    diff = float(np.max(err))
    agree = float(np.mean(out.argmax(1) == reference.argmax(1)))
    tol = default_tolerance(precision) if tolerance is None else float(tolerance)
    if precision == "fp32":
        bound = tol + FP32_RTOL * np.abs(ref64)
        passed = bool(np.all(err <= bound))
        rule = f"|diff| <= {tol:g} + {FP32_RTOL:g} * |torch logit| (numpy allclose)"
    else:
        passed = agree >= MIN_AGREEMENT
        rule = f"top-1 agreement >= {MIN_AGREEMENT:.0%} (max abs diff recorded, not judged)"
    result: dict[str, Any] = {
        "reference": "torch fp32 eager",
        "images": images.source,
        "n_images": len(images.labels),
        "max_abs_diff": diff,
        "max_abs_logit": float(np.max(np.abs(reference))),
        "top1_agreement": agree,
        "tolerance": tol,
        **(
            {"rtol": FP32_RTOL, "worst_error_to_bound": float(np.max(err / bound))}
            if precision == "fp32"
            else {}
        ),
        "rule": rule,
        "passed": bool(passed),
    }
    if images.labelled:
        labels = np.asarray(images.labels)
        result["top1_accuracy"] = float(np.mean(out.argmax(1) == labels))
        result["top1_accuracy_torch"] = float(np.mean(reference.argmax(1) == labels))
    return result


def time_interleaved(
    runners: Mapping[str, Runner],
    x: np.ndarray,
    *,
    rounds: int = 5,
    runs: int = 10,
    warmup: int = 3,
) -> dict[str, dict[str, float]]:
    """Latency of each runner on ``x``, interleaved: median / p90 / mean in ms, throughput."""
    names = list(runners)
    cfg = TimingConfig.fixed(rounds=rounds, runs=runs, warmup=warmup)
    timed = sample_rounds([lambda fn=runners[n]: fn(x) for n in names], cfg)
    samples = {n: [t for r in timed for t in r[i]] for i, n in enumerate(names)}
    out = {}
    for name, s in samples.items():
        a = np.asarray(s) * 1000
        med = float(np.median(a))
        out[name] = {
            "batch": int(x.shape[0]),
            "median_ms": med,
            "p90_ms": float(np.percentile(a, 90)),
            "mean_ms": float(a.mean()),
            "throughput_ips": float(x.shape[0] / (med / 1000)) if med > 0 else 0.0,
            "samples": len(a),
            "threads": runners[name].threads,
        }
    return out
