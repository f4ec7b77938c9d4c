"""Measuring entries and whole networks on a runtime.

Marginal cost in a graph. Timing a layer as its own tiny model overestimates what it costs
inside a network (every run pays to wake the worker threads). So each layer is timed as
``k`` copies on distinct inputs in ONE model, against the same with one copy, interleaved
run by run; its entry is ``(T_k - T_1) / (k - 1)``: the per-run overheads cancel. What
every network pays once (session call, thread wake-up) is the calibration's fixed overhead
(:mod:`dna_zoo.search.latency.calibration`), fitted on a few measured whole networks.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dna_zoo.arch import ArchEncoding
from dna_zoo.errors import ConfigError
from dna_zoo.progress import Reporter, reporter_or_null
from dna_zoo.search.latency.items import Item, item_inputs, item_module
from dna_zoo.search.latency.runtimes import Runner, Runtime
from dna_zoo.search.latency.table import MEASURED, Entry, TableSpec
from dna_zoo.timing import TimingConfig, median_and_iqr, normalise_rounds, stable, time_rounds

logger = logging.getLogger(__name__)

#: copies of a layer in the k-copy graph; the entry is (T_k - T_1) / (k - 1)
DEFAULT_COPIES = 4


def prepare_item(
    item: Item, spec: TableSpec, runtime: Runtime, workdir: Path, *, copies: int = DEFAULT_COPIES
) -> list[Runner]:
    """Runners of the 1-copy and the ``copies``-copy models of ``item``."""
    import torch

    torch.manual_seed(0)
    return runtime.prepare_copies(
        item_module(item, spec).eval(), item_inputs(item, spec), workdir, "item", (1, copies)
    )


def reference_item(items: Sequence[Item], spec: TableSpec) -> Item:
    """The layer every entry is timed against: a stride-1 layer at 1/8 of the input size
    (mid-sized, so its cost is well above timer noise); ties broken by key, so one space and
    spec always give the same reference."""
    layers = [it for it in items if it.kind == "layer" and it.layer is not None and it.layer.stride == 1]
    if not layers:
        raise ConfigError("no stride-1 layer to use as the timing reference")
    target = max(1, spec.input_size // 8)
    return min(layers, key=lambda it: (abs(it.in_res - target), it.key))


def measure_item(
    item: Item,
    spec: TableSpec,
    runtime: Runtime,
    workdir: Path,
    *,
    copies: int = DEFAULT_COPIES,
    timing: TimingConfig | None = None,
    reference: Sequence[Runner] | None = None,
) -> Entry:
    """Marginal cost of one item inside a graph: interleave 1-copy and k-copy models.

    With ``reference`` (the 1- and k-copy runners of the reference layer), the reference is
    timed in the same rounds and the entry also records the cost relative to it: this
    machine's speed drifts within seconds (figures: bench/results/README.md), which moves an
    absolute figure but not the ratio of two figures taken side by side.
    """
    timing = timing or TimingConfig()
    runners = prepare_item(item, spec, runtime, workdir, copies=copies) + list(reference or ())

    def marginals(rounds: list[list[float]], at: int = 0) -> list[float]:
        return [(r[at + 1] - r[at]) / (copies - 1) for r in rounds]

    def ratios(rounds: list[list[float]]) -> list[float]:
        return [m / max(ref, 1e-9) for m, ref in zip(marginals(rounds), marginals(rounds, 2), strict=True)]

    figure = ratios if reference else marginals
    rounds = time_rounds(runners, timing, until=lambda rs: stable(figure(rs), timing.rel_tol))
    med, iqr = median_and_iqr(marginals(rounds))
    if med <= 0:
        logger.warning(
            "%s: marginal cost %.4f ms is not positive (noise); recorded as 0", item.key, med * 1e3
        )
    runs = len(rounds) * timing.runs_per_round
    if not reference:
        return Entry(max(med, 0.0) * 1e3, iqr * 1e3, runs, MEASURED)
    rel, rel_iqr = median_and_iqr(ratios(rounds))
    ref_ms = statistics.median(marginals(rounds, 2)) * 1e3
    # provisional ms (this item's own reference speed); finalised against the build's median
    return Entry(max(rel, 0.0) * ref_ms, rel_iqr * ref_ms, runs, MEASURED, max(rel, 0.0))


def anchor_entries(entries: dict[str, Entry]) -> float | None:
    """Put every reference-relative entry on one time base: ``relative`` x the reference's
    median over the whole build (each entry's provisional ms / relative is the reference's
    cost in that entry's rounds). Returns that reference cost (ms), or None."""
    refs = [e.median_ms / e.relative for e in entries.values() if e.relative]
    if not refs:
        return None
    ref_ms = statistics.median(refs)
    for key, e in list(entries.items()):
        if e.relative is not None:
            spread = e.spread_ms / (e.median_ms / e.relative) if e.median_ms and e.relative else 0.0
            entries[key] = Entry(e.relative * ref_ms, spread * ref_ms, e.runs, e.source, e.relative)
    return ref_ms


def measure_networks(
    networks: Sequence[Any],
    spec: TableSpec,
    runtime: Runtime,
    workdir: Path,
    *,
    timing: TimingConfig | None = None,
    passes: int = 1,
    progress: Reporter | None = None,
) -> list[list[float]]:
    """End-to-end latency (ms) of whole networks on the runtime. ``result[p][i]``: pass p, network i.

    A network is an :class:`ArchEncoding` (built as a seeded random-init ``dna_net``) or a
    torch module, timed as it is (e.g. a retrained network).

    Every round runs each network once, all interleaved, so a round lasts well under a second.
    This machine's speed drifts within seconds (figures: bench/results/README.md); what a
    drift does to a round it does to every network in it, so each round is first put on the
    pass's median speed (divided by its total over the pass's median total) and a network's
    figure is its median over the normalised rounds. What is left is each network's own run-to-run noise.
    """
    import timm
    import torch

    timing = timing or TimingConfig(runs_per_round=1, min_rounds=25, max_rounds=25, max_seconds=120.0)
    runners = []
    for i, enc in enumerate(
        reporter_or_null(progress).track(networks, "export networks", total=len(networks))
    ):
        torch.manual_seed(i)
        model = (
            timm.create_model("dna_net", arch=enc, num_classes=spec.num_classes, in_chans=spec.in_chans)
            if isinstance(enc, ArchEncoding)
            else enc
        ).eval()
        x = torch.randn(spec.batch, spec.in_chans, spec.input_size, spec.input_size)
        runners.append(runtime.prepare(model, [x], workdir, f"net{i}"))
    out = []
    for _ in reporter_or_null(progress).track(range(passes), "measure networks", total=passes):
        rounds = normalise_rounds(time_rounds(runners, timing))
        out.append([statistics.median(r[i] for r in rounds) * 1e3 for i in range(len(runners))])
    return out
