"""Latency as a cost model for the search: a table (measured, or a roofline estimate) behind
the :class:`~dna_zoo.search.strategy.cost.CostModel` interface.

Costs stay additive: a layer costs ``scale x entry``; the calibration's fixed overhead is
folded into the stem (so into :meth:`fixed_cost` and :meth:`network_cost` exactly once).
:func:`latency_cost_model` is what the search calls.
"""

from __future__ import annotations

import logging
from pathlib import Path

from dna_zoo.arch import LayerInstance, head_key, layer_key, stem_key
from dna_zoo.search.latency.build import items_for, resolve_spec
from dna_zoo.search.latency.cache import complete_path
from dna_zoo.search.latency.devices import get_device, identify
from dna_zoo.search.latency.table import LatencyTable, TableSpec
from dna_zoo.search.space import SearchSpace
from dna_zoo.search.strategy.cost import CostModel

logger = logging.getLogger(__name__)


class LatencyCost(CostModel):
    """Milliseconds from a latency table; ``estimated`` and ``source`` say what the figures are."""

    name = "latency"
    unit = "ms"

    def __init__(self, space: SearchSpace, table: LatencyTable) -> None:
        s = table.spec
        super().__init__(space, input_size=s.input_size, in_chans=s.in_chans, num_classes=s.num_classes)
        table.require(it.key for it in items_for(space, s, include_published=False))
        self.table = table
        self.estimated = table.estimated
        self.source = table.source
        self._scale = table.calibration.scale
        self._overhead = table.calibration.overhead_ms

    def layer_cost(self, inst: LayerInstance) -> float:
        return self._scale * self.table.ms(layer_key(inst.layer, inst.in_chs, inst.in_res))

    def stem_cost(self) -> float:
        key = stem_key(self.in_chans, self.space.stem_size, self.input_size)
        return self._scale * self.table.ms(key) + self._overhead

    def head_cost(self, in_chs: int, in_res: int) -> float:
        return self._scale * self.table.ms(
            head_key(in_chs, self.space.num_features, in_res, self.num_classes)
        )


def find_table(
    spec: TableSpec, *, force: bool = False, path: str | Path | None = None
) -> LatencyTable | None:
    """The measured table for ``spec`` (from ``path`` or the cache), checked strictly;
    None if the cache has none."""
    p = Path(path) if path else complete_path(spec)
    if path is None and not p.exists():
        return None
    profile = get_device(spec.device)
    identity = identify(profile).to_dict() if profile.local else None
    return LatencyTable.load(p, expect=spec, identity=identity, force=force)


def latency_cost_model(
    space: SearchSpace,
    *,
    device: str,
    runtime: str,
    precision: str = "fp32",
    batch: int = 1,
    input_size: int = 224,
    threads: int | None = None,
    force: bool = False,
    table: str | Path | None = None,
) -> LatencyCost:
    """The latency cost model for a device/runtime: the cached measured table, or, where
    none has been measured, a roofline estimate from the device's specs (``estimated=True``,
    with a warning naming the command that measures it)."""
    spec = resolve_spec(
        device, runtime, precision=precision, batch=batch, input_size=input_size, threads=threads
    )
    found = find_table(spec, force=force, path=table)
    if found is None:
        from dna_zoo.search.latency.estimate import estimate_table

        found = estimate_table(space, spec, include_published=True)  # DNA-a..d on the same axis
        logger.warning(found.method["warning"])
    return LatencyCost(space, found)
