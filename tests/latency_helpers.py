"""Shared bits of the latency tests: a reduced space and a hand-made table."""

from __future__ import annotations

from dna_zoo.arch import Op
from dna_zoo.search.latency.build import resolve_spec
from dna_zoo.search.latency.items import items_for
from dna_zoo.search.latency.table import Calibration, Entry, LatencyTable, TableSpec
from dna_zoo.search.space import BlockSpec, SearchSpace


def tiny_space() -> SearchSpace:
    """Two blocks, two ops: 9 table entries (stem, first layer, 6 block layers, head)."""
    return SearchSpace(
        name="tiny",
        blocks=(BlockSpec(24, 2, (1, 2)), BlockSpec(40, 2, (1,))),
        ops=(Op("ir", 3, 3, 0.25), Op("ir", 5, 6, 0.25)),
    )


def tiny_spec(**kw) -> TableSpec:
    return resolve_spec("cpu", "onnxruntime", input_size=kw.pop("input_size", 32), **kw)


def fake_table(space: SearchSpace, spec: TableSpec, *, estimated: bool = False) -> LatencyTable:
    """A table whose entries are distinct known numbers (no measuring)."""
    items = items_for(space, spec, include_published=False)
    entries = {
        it.key: Entry(0.01 * (i + 1), 0.001, 21, "estimated" if estimated else "measured")
        for i, it in enumerate(items)
    }
    from dna_zoo.search.latency.devices import get_device, identify

    return LatencyTable(
        spec=spec,
        device_identity=identify(get_device(spec.device)).to_dict(),
        runtime_version="1.0",
        entries=entries,
        calibration=Calibration(1.1, 0.05, "test", ({"name": "n", "sum_ms": 1.0, "measured_ms": 1.15},)),
        estimated=estimated,
        method={"kind": "marginal-in-graph", "copies": 4},
    )
