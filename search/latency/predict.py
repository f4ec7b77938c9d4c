"""Predicting a whole network's latency from a table: the sum of its entries, calibrated.

``predicted = scale x (stem + layers + head) + overhead``, with ``scale`` and ``overhead``
the table's calibration (fitted on measured whole networks when the table was built). The
breakdown per stage carries the scale, and the overhead is its own line, so the stages add
up to the total.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from dna_zoo.arch import ArchEncoding, iter_parts, network_keys, part_key
from dna_zoo.search.latency.table import LatencyTable

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """A network's predicted latency (ms) with its per-stage breakdown and provenance."""

    total_ms: float
    stages: dict[str, float]
    summed_ms: float
    scale: float
    overhead_ms: float
    estimated: bool
    source: str
    table: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "latency_ms": round(self.total_ms, 4),
            "stages_ms": {k: round(v, 4) for k, v in self.stages.items()},
            "summed_entries_ms": round(self.summed_ms, 4),
            "calibration": {"scale": self.scale, "overhead_ms": self.overhead_ms},
            "estimated": self.estimated,
            "source": self.source,
            "table": self.table,
        }


def summed_ms(table: LatencyTable, enc: ArchEncoding) -> float:
    """Sum of a network's entries (no calibration); an error naming any missing key."""
    s = table.spec
    keys = network_keys(enc, input_size=s.input_size, in_chans=s.in_chans, num_classes=s.num_classes)
    table.require(keys)
    return sum(table.entries[k].median_ms for k in keys)


def predict(table: LatencyTable, enc: ArchEncoding) -> Prediction:
    """Predicted latency of ``enc`` from ``table`` with a per-stage breakdown."""
    s = table.spec
    table.require(network_keys(enc, input_size=s.input_size, in_chans=s.in_chans, num_classes=s.num_classes))
    cal = table.calibration
    stages: dict[str, float] = {}
    for part in iter_parts(enc, s.input_size, in_chans=s.in_chans):
        name = part.kind if part.inst is None else f"stage {part.inst.stage}"
        stages[name] = stages.get(name, 0.0) + table.ms(part_key(part, num_classes=s.num_classes))
    summed = sum(stages.values())
    scaled = {k: v * cal.scale for k, v in stages.items()}
    scaled["overhead"] = cal.overhead_ms
    return Prediction(
        total_ms=cal.apply(summed),
        stages=scaled,
        summed_ms=summed,
        scale=cal.scale,
        overhead_ms=cal.overhead_ms,
        estimated=table.estimated,
        source=table.source,
        table={"describe": table.describe(), **s.to_dict()},
    )
