"""Calibration: whole networks measured against the sum of their entries, fitted as
``measured = scale x sum + overhead``; the same networks, timed again later, tell how fast
the machine is now against build time.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence
from typing import Any

from dna_zoo.arch import ArchEncoding
from dna_zoo.search.latency.items import published_networks, random_network
from dna_zoo.search.latency.table import Calibration, LatencyTable
from dna_zoo.search.space import SearchSpace

CALIBRATION_RANDOM_NETWORKS = 4
CALIBRATION_SEED = 20200


def calibration_references(table: LatencyTable) -> list[tuple[dict[str, Any], ArchEncoding]]:
    """The table's calibration networks that carry their architecture, with their encodings:
    timed again beside other networks, they tell how fast the machine is now vs at build time."""
    from dna_zoo.arch import load_encoding

    return [(n, load_encoding(n["arch"])) for n in table.calibration.networks if "arch" in n]


def speed_ratio(refs: Sequence[tuple[dict[str, Any], ArchEncoding]], now_ms: Sequence[float]) -> float:
    """Median ratio of the calibration networks' latency now to their latency at build time."""
    return statistics.median(m / n["measured_ms"] for (n, _), m in zip(refs, now_ms, strict=True))


def calibration_networks(space: SearchSpace, *, include_published: bool) -> list[ArchEncoding]:
    rng = random.Random(CALIBRATION_SEED)
    nets = published_networks() if include_published else []
    nets += [random_network(space, rng, name=f"calib{i}") for i in range(CALIBRATION_RANDOM_NETWORKS)]
    return nets


def fit_calibration(
    sums: Sequence[float], measured: Sequence[float], networks: Sequence[ArchEncoding]
) -> Calibration:
    """measured = scale x sum + overhead by least squares; a fixed overhead only (scale 1)
    when too few networks or an implausible slope make the two-parameter fit unsafe. The
    networks are recorded (with their architectures, so they can be measured again)."""
    n = len(sums)
    nets = tuple(
        {"name": enc.name or "", "sum_ms": round(s, 4), "measured_ms": round(m, 4), "arch": enc.to_dict()}
        for enc, s, m in zip(networks, sums, measured, strict=True)
    )
    if n == 0:
        return Calibration()
    if n >= 3:
        mx, my = statistics.fmean(sums), statistics.fmean(measured)
        sxx = sum((x - mx) ** 2 for x in sums)
        if sxx > 0:
            scale = sum((x - mx) * (y - my) for x, y in zip(sums, measured, strict=True)) / sxx
            if 0.6 <= scale <= 1.6:
                return Calibration(scale, my - scale * mx, "least-squares scale + overhead", nets)
    overhead = statistics.median(m - s for s, m in zip(sums, measured, strict=True))
    return Calibration(1.0, overhead, "median overhead (scale fixed at 1)", nets)
