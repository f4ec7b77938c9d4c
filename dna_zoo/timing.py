"""The one interleaved-timing loop, used by latency tables and by export checks/benchmarks.

A CPU's speed drifts within seconds, so contenders timed apart are not comparable: every
round runs each contender, interleaved, and the figures are taken over rounds. This module
is stdlib only and lives in the core so that both ``dna_zoo.export`` (which may not import
``dna_zoo.search``) and ``dna_zoo.search.latency`` use the same loop.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Contender = Callable[[], object]


@dataclass(frozen=True)
class TimingConfig:
    """How long and how often to time.

    A round is ``runs_per_round`` passes; a pass runs every contender ``consecutive`` times
    back to back (1: interleaved run by run), in an order rotated every round when
    ``rotate``. The result of a round is the median of each contender's runs in it, and a
    figure is the median over rounds.
    """

    warmup: int = 10
    runs_per_round: int = 7
    min_rounds: int = 7
    max_rounds: int = 40
    #: stop adding rounds once the median's standard error is below this share of it
    rel_tol: float = 0.02
    max_seconds: float = 20.0
    consecutive: int = 1
    rotate: bool = False

    @classmethod
    def quick(cls) -> TimingConfig:
        """For tests and tiny tables: a few runs only (figures still real, just noisier)."""
        return cls(warmup=2, runs_per_round=3, min_rounds=3, max_rounds=3, rel_tol=1.0, max_seconds=5.0)

    @classmethod
    def fixed(cls, *, rounds: int, runs: int, warmup: int) -> TimingConfig:
        """Exactly ``rounds`` rounds of ``runs`` consecutive runs per contender, order rotated
        every round (how export checks and ``dna benchmark`` time formats)."""
        return cls(
            warmup=warmup,
            runs_per_round=1,
            min_rounds=rounds,
            max_rounds=rounds,
            max_seconds=float("inf"),
            consecutive=runs,
            rotate=True,
        )


def sample_rounds(
    contenders: Sequence[Contender],
    cfg: TimingConfig,
    *,
    until: Callable[[list[list[float]]], bool] | None = None,
) -> list[list[list[float]]]:
    """Seconds of every run: ``samples[r][i]`` lists contender ``i``'s runs in round ``r``.

    Warm-up runs (``cfg.warmup`` passes over all contenders) are excluded. After
    ``cfg.min_rounds``, ``until(medians)`` (per-round medians, as :func:`time_rounds` returns)
    may stop early; ``cfg.max_rounds`` and ``cfg.max_seconds`` always do.
    """
    for _ in range(cfg.warmup):
        for run in contenders:
            run()
    n_c = len(contenders)
    clock = time.perf_counter
    t_start = clock()
    samples: list[list[list[float]]] = []
    medians: list[list[float]] = []
    while True:
        shift = len(samples) % n_c if cfg.rotate and n_c else 0
        order = list(range(shift, n_c)) + list(range(shift))
        runs: list[list[float]] = [[] for _ in contenders]
        for _ in range(cfg.runs_per_round):
            for i in order:
                run = contenders[i]
                for _ in range(cfg.consecutive):
                    t = clock()
                    run()
                    runs[i].append(clock() - t)
        samples.append(runs)
        medians.append([statistics.median(s) for s in runs])
        n = len(samples)
        if n >= cfg.max_rounds or (n >= cfg.min_rounds and clock() - t_start > cfg.max_seconds):
            return samples
        if n >= cfg.min_rounds and (until is None or until(medians)):
            return samples


def time_rounds(
    contenders: Sequence[Contender],
    cfg: TimingConfig,
    *,
    until: Callable[[list[list[float]]], bool] | None = None,
) -> list[list[float]]:
    """Per-round median seconds of each contender: ``rounds[r][i]`` (see :func:`sample_rounds`)."""
    return [[statistics.median(s) for s in r] for r in sample_rounds(contenders, cfg, until=until)]


def median_and_iqr(values: Sequence[float]) -> tuple[float, float]:
    vals = sorted(values)
    if len(vals) < 4:
        return statistics.median(vals), (vals[-1] - vals[0]) if vals else 0.0
    q = statistics.quantiles(vals, n=4)
    return statistics.median(vals), q[2] - q[0]


def stable(values: Sequence[float], rel_tol: float) -> bool:
    """True when the median of ``values`` is known to within ``rel_tol`` (IQR-based standard error)."""
    med, iqr = median_and_iqr(values)
    if len(values) < 3:
        return False
    se = 1.2533 * (iqr / 1.349) / len(values) ** 0.5  # standard error of a median
    return se <= rel_tol * max(abs(med), 1e-9)


def normalise_rounds(rounds: list[list[float]]) -> list[list[float]]:
    """Each round scaled to the median round speed: ``t / (round total / median total)``.
    With a single contender there is nothing to normalise against; rounds are returned as is."""
    if not rounds or len(rounds[0]) < 2:
        return rounds
    totals = [sum(r) for r in rounds]
    mid = statistics.median(totals)
    return [[t * mid / total for t in r] for r, total in zip(rounds, totals, strict=True)]
