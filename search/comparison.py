"""Is the searched net better than the obvious choices, or is the difference seed noise?

After retraining, the pipeline holds the searched net's top-1 for two (or more) seeds and
one top-1 for each comparison net (the most-MACs net within the same budget, a random net
of the same predicted latency). :func:`compare_to_searched` judges each difference against
the noise those seeds show:

* the seed noise is the spread of the searched net's top-1 over its seeds (with two seeds,
  ``|a - b|``; the sd of one run is then about ``|a - b| / sqrt(2)``), floored by the test
  set's own sampling noise (binomial, ``sqrt(p(1-p)/n)`` per run);
* a difference between two single runs has about ``sqrt(2)`` times one run's sd, so it counts
  only when it exceeds **twice that** (about 2.8 sd of one run; with one pair of seeds this
  is a rough bar, and the report says so): otherwise it is reported as inside the noise,
  never as a win.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from typing import Any

#: a difference counts when it exceeds this many sds of the difference of two single runs
MARGIN_SDS = 2.0


def seed_noise(top1_by_seed: list[float], *, n_eval: int) -> dict[str, Any]:
    """The sd of one run's top-1 (percentage points) from the seeds' spread, floored by the
    binomial sampling noise of a test set of ``n_eval`` images."""
    p = statistics.fmean(top1_by_seed) / 100
    binomial = 100 * math.sqrt(max(p * (1 - p), 1e-12) / max(n_eval, 1))
    seeds = statistics.stdev(top1_by_seed) if len(top1_by_seed) > 1 else float("nan")
    sd = max(binomial, seeds) if math.isfinite(seeds) else binomial
    return {
        "top1_by_seed": list(top1_by_seed),
        "seed_sd": seeds,
        "binomial_sd": binomial,
        "sd_one_run": sd,
        "from": "seeds" if math.isfinite(seeds) and seeds >= binomial else "test-set sampling (binomial)",
    }


def judge(diff: float, sd_one_run: float) -> dict[str, Any]:
    """A top-1 difference between two single runs against the noise of such a difference."""
    bar = MARGIN_SDS * math.sqrt(2) * sd_one_run
    if abs(diff) <= bar:
        verdict = "inside the seed noise: not a win either way"
    else:
        verdict = (
            "searched net better, beyond the seed noise"
            if diff > 0
            else "searched net worse, beyond the seed noise"
        )
    return {"diff": diff, "noise_bar": bar, "beyond_noise": abs(diff) > bar, "verdict": verdict}


def compare_to_searched(
    retrained: Mapping[str, Mapping[str, Any]], *, n_eval: int, seed: int = 0
) -> dict[str, Any]:
    """Differences of the searched net (seed ``seed``) to every other retrained net, each
    judged against the seed noise of the searched net's runs (``searched_seed*`` entries)."""
    if "searched" not in retrained:
        return {}
    runs = [retrained["searched"]["top1"]] + [
        r["top1"] for name, r in retrained.items() if name.startswith("searched_seed")
    ]
    noise = seed_noise(runs, n_eval=n_eval)
    base = retrained["searched"]["top1"]
    vs = {
        name: {"top1": r["top1"], **judge(base - r["top1"], noise["sd_one_run"])}
        for name, r in retrained.items()
        if name != "searched" and not name.startswith("searched_seed")
    }
    return {
        "searched_top1": base,
        "noise": noise,
        "vs": vs,
        "rule": f"a difference counts when |diff| > {MARGIN_SDS:g} x sqrt(2) x the sd of one run"
        + (" (sd from one pair of seeds: a rough bar)" if len(runs) == 2 else ""),
    }
