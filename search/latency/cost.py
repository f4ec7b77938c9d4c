"""Latency as a cost model for the search: a table (measured, or a roofline estimate) behind
the :class:`~dna_zoo.search.strategy.cost.CostModel` interface.

Costs stay additive: a layer costs ``scale x entry``; the calibration's fixed overhead is
folded into the stem (so into :meth:`fixed_cost` and :meth:`network_cost` exactly once).
:func:`latency_cost_for` is where the search (CLI and pipeline) gets its latency model.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from dna_zoo.arch import ArchEncoding, LayerInstance, head_key, layer_key, stem_key
from dna_zoo.errors import ConfigError, DnaZooError
from dna_zoo.progress import Reporter
from dna_zoo.search.latency.build import resolve_spec
from dna_zoo.search.latency.cache import complete_path
from dna_zoo.search.latency.devices import build_command, get_device, identify
from dna_zoo.search.latency.items import items_for
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
        self.estimate = table.method.get("estimate") if table.estimated else None
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


def measured_table(spec: TableSpec, *, force: bool = False, path: str | Path | None = None) -> LatencyTable:
    """The measured table for ``spec`` (see :func:`find_table`); none is an error naming the
    command that measures it."""
    found = find_table(spec, force=force, path=path)
    if found is None:
        raise ConfigError(
            f"no measured latency table for {spec.device}/{spec.runtime}/{spec.precision} "
            f"at {spec.input_size}px",
            hint="build it first: "
            + build_command(spec.device, spec.runtime, spec.precision, input_size=spec.input_size),
        )
    return found


def network_table(
    spec: TableSpec, enc: ArchEncoding, *, force: bool = False, path: str | Path | None = None
) -> LatencyTable:
    """The measured table for ``spec``, or where none is cached, a roofline estimate of the
    entries of ``enc`` alone (``estimated=True``)."""
    found = find_table(spec, force=force, path=path)
    if found is not None:
        return found
    from dna_zoo.search.latency.estimate import estimate_table

    return estimate_table(None, spec, include_published=False, networks=[enc])


def latency_cost_for(
    space: SearchSpace,
    *,
    device: str,
    runtime: str | None = None,
    precision: str = "fp32",
    batch: int = 1,
    input_size: int = 224,
    in_chans: int = 3,
    num_classes: int = 1000,
    threads: int | None = None,
    force: bool = False,
    table: str | Path | None = None,
    build: bool = False,
    progress: Reporter | None = None,
) -> tuple[LatencyCost, dict[str, Any]]:
    """The latency cost model for a device/runtime (default: the device's first runtime) and
    how it was found: ``{"table": "cached" | "built" | "estimated", "spec": ...}``.

    The measured table of the cache (or ``table``) is used if it has every layer of ``space``;
    with ``build`` and the local device a missing or incomplete table is measured here first;
    otherwise a table without the space's layers is an error and a missing one is replaced by a
    roofline estimate from the device's specs (``estimated=True``, with a warning naming the
    command that measures it). `dna search` and the pipeline both choose their table here."""
    spec = resolve_spec(
        device, runtime, precision=precision, batch=batch, input_size=input_size, threads=threads,
        in_chans=in_chans, num_classes=num_classes,
    )  # fmt: skip
    info: dict[str, Any] = {"spec": spec.to_dict()}
    can_build = build and get_device(spec.device).local
    found = find_table(spec, force=force, path=table)
    if found is not None:
        try:
            return LatencyCost(space, found), {"table": "cached", **info}
        except DnaZooError:  # measured for another space: build_table extends it
            if not can_build:
                raise
    if can_build:
        from dna_zoo.search.latency.build import build_table

        t0 = time.perf_counter()
        built = build_table(space, spec, include_published=False, progress=progress)
        info["build_seconds"] = round(time.perf_counter() - t0, 1)
        return LatencyCost(space, built), {"table": "built", **info}
    from dna_zoo.search.latency.estimate import estimate_table

    estimated = estimate_table(space, spec, include_published=True)  # DNA-a..d on the same axis
    logger.info(estimated.method["warning"])  # callers show it: the CLI prints it, results record it
    return LatencyCost(space, estimated), {"table": "estimated", **info}
