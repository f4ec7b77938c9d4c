"""Building a latency table: enumerate the layer configurations, measure each one as the
whole network will pay for it, calibrate on whole networks, cache the result.

Marginal cost in a graph. Timing a layer as its own tiny model overestimates what it costs
inside a network (at 2 threads on ORT by about 50%: every run pays to wake the worker
threads). So each layer is timed as ``k`` copies on distinct inputs in ONE model, against
the same with one copy, interleaved run by run; its entry is ``(T_k - T_1) / (k - 1)``: the
per-run overheads cancel. What every network pays once (session call, thread wake-up) is
the calibration's fixed overhead, fitted on a few measured whole networks.

Resumable. Finished entries go to a partial file next to the table after every layer
(atomic writes); a killed build resumes from it. The complete table is written only at the
end, so a partial table is never in the cache as if complete.
"""

from __future__ import annotations

import logging
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dna_zoo.arch import (
    ArchEncoding,
    Layer,
    LayerInstance,
    Op,
    conv_out_size,
    head_key,
    iter_layers,
    layer_key,
    stem_key,
)
from dna_zoo.errors import ConfigError
from dna_zoo.progress import Reporter, reporter_or_null
from dna_zoo.search.latency.cache import complete_path, partial_path
from dna_zoo.search.latency.devices import DeviceIdentity, get_device, identify
from dna_zoo.search.latency.runtimes import (
    Runner,
    Runtime,
    RuntimeOptions,
    TimingConfig,
    get_runtime,
    median_and_iqr,
    stable,
    time_rounds,
)
from dna_zoo.search.latency.table import (
    MEASURED,
    Calibration,
    Entry,
    LatencyTable,
    LatencyTableError,
    TableSpec,
    library_versions,
)
from dna_zoo.search.space import Candidate, SearchSpace

logger = logging.getLogger(__name__)

#: copies of a layer in the k-copy graph; the entry is (T_k - T_1) / (k - 1)
DEFAULT_COPIES = 4
CALIBRATION_RANDOM_NETWORKS = 4
CALIBRATION_SEED = 20200


# --- what to measure ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Item:
    """One table entry to measure: a stem, a layer placed in a network, or a head."""

    key: str
    kind: str  # "stem" | "layer" | "head"
    in_chs: int
    in_res: int
    layer: Layer | None = None
    out_chs: int = 0  # stem width / head features


def stem_item(space_stem: int, spec: TableSpec) -> Item:
    return Item(
        stem_key(spec.in_chans, space_stem, spec.input_size),
        "stem",
        spec.in_chans,
        spec.input_size,
        out_chs=space_stem,
    )


def head_item(in_chs: int, in_res: int, num_features: int, spec: TableSpec) -> Item:
    return Item(
        head_key(in_chs, num_features, in_res, spec.num_classes), "head", in_chs, in_res, out_chs=num_features
    )


def layer_item(inst: LayerInstance) -> Item:
    return Item(
        layer_key(inst.layer, inst.in_chs, inst.in_res), "layer", inst.in_chs, inst.in_res, inst.layer
    )


def network_items(enc: ArchEncoding, spec: TableSpec) -> list[Item]:
    """Every entry a network needs, stem first, head last (same keys as :func:`dna_zoo.arch.network_keys`)."""
    items = [stem_item(enc.stem_size, spec)]
    last = None
    for inst in iter_layers(enc, spec.input_size):
        items.append(layer_item(inst))
        last = inst
    assert last is not None  # ArchEncoding forbids empty networks
    items.append(head_item(last.layer.out_chs, last.out_res, enc.num_features, spec))
    return items


def space_items(space: SearchSpace, spec: TableSpec) -> list[Item]:
    """Every distinct entry the final networks of ``space`` can need.

    In a final network a block's first layer sees the previous block's width and resolution
    and carries the stride; the later layers all see the block's own width. So per block and
    op two configurations exist; :meth:`SearchSpace.layer_instances` of the deepest cell of
    each op gives both.
    """
    out: dict[str, Item] = {}
    first = LayerInstance(0, 0, space.first_layer, space.stem_size, conv_out_size(spec.input_size, 2))
    for it in (stem_item(space.stem_size, spec), layer_item(first)):
        out.setdefault(it.key, it)
    for b, block in enumerate(space.blocks):
        for op in space.ops:
            cand = Candidate(b, (op,) * max(block.depths))
            for inst in space.layer_instances(cand, spec.input_size):
                it = layer_item(inst)
                out.setdefault(it.key, it)
    chs, res = space.block_input(len(space.blocks), spec.input_size)
    it = head_item(chs, res, space.num_features, spec)
    out.setdefault(it.key, it)
    return list(out.values())


def published_networks() -> list[ArchEncoding]:
    from dna_zoo.models import PUBLISHED, published_encoding

    return [published_encoding(n) for n in PUBLISHED]


def items_for(
    space: SearchSpace,
    spec: TableSpec,
    *,
    include_published: bool = True,
    networks: Iterable[ArchEncoding] = (),
) -> list[Item]:
    """The space's entries, plus DNA-a..d's (their widths differ) and any extra networks'."""
    out = {it.key: it for it in space_items(space, spec)}
    nets = list(networks) + (published_networks() if include_published else [])
    for enc in nets:
        for it in network_items(enc, spec):
            out.setdefault(it.key, it)
    return list(out.values())


def random_network(space: SearchSpace, rng: random.Random, *, name: str | None = None) -> ArchEncoding:
    """A network of ``space``: per block a uniform depth, then a uniform op per layer."""
    choice = []
    for b, block in enumerate(space.blocks):
        depth = rng.choice(block.depths)
        choice.append(Candidate(b, tuple(rng.choice(space.ops) for _ in range(depth))))
    return space.to_encoding(choice, name=name)


# --- torch modules of the items -----------------------------------------------------------------
def _efficientnet(stem_size: int, layers: Sequence[Layer], *, num_features: int, spec: TableSpec):
    """A timm EfficientNet built exactly as the zoo builds DNA networks (same blocks, norm, SE)."""
    from timm.models.efficientnet import EfficientNet

    from dna_zoo.models import _model_kwargs

    enc = ArchEncoding((tuple(layers),), stem_size=stem_size, num_features=num_features)
    return EfficientNet(**_model_kwargs(enc, {"num_classes": spec.num_classes, "in_chans": spec.in_chans}))


def item_module(item: Item, spec: TableSpec):
    """A torch module computing one item, built by timm exactly as in a DNA network."""
    import torch.nn as nn

    if item.kind == "layer":
        assert item.layer is not None
        net = _efficientnet(
            item.in_chs, [item.layer], num_features=8, spec=TableSpec(**{**spec.to_dict(), "num_classes": 1})
        )
        return net.blocks[0][0]
    if item.kind == "stem":
        net = _efficientnet(item.out_chs, [Layer(Op("ds", 3, 1, 0.0), 8)], num_features=8, spec=spec)
        return nn.Sequential(net.conv_stem, net.bn1)
    if item.kind == "head":
        net = _efficientnet(
            item.in_chs, [Layer(Op("ds", 3, 1, 0.0), item.in_chs)], num_features=item.out_chs, spec=spec
        )
        return _head_module(net)
    raise ValueError(item.kind)


def _head_module(net):
    import torch.nn as nn

    class Head(nn.Module):
        """conv_head + bn2 + pool + classifier: timm's ``forward_head`` path."""

        def __init__(self) -> None:
            super().__init__()
            self.conv_head, self.bn2, self.global_pool, self.classifier = (
                net.conv_head,
                net.bn2,
                net.global_pool,
                net.classifier,
            )

        def forward(self, x):
            return self.classifier(self.global_pool(self.bn2(self.conv_head(x))))

    return Head()


def item_inputs(item: Item, spec: TableSpec, seed: int = 0) -> list:
    import torch

    g = torch.Generator().manual_seed(seed)
    return [torch.randn(spec.batch, item.in_chs, item.in_res, item.in_res, generator=g)]


# --- measuring ------------------------------------------------------------------------------------
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
    machine's speed drifts by up to 25% within seconds, which moves an absolute figure but
    not the ratio of two figures taken side by side.
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
    This machine's speed drifts by up to 25% within seconds; what a drift does to a round it
    does to every network in it, so each round is first put on the pass's median speed
    (divided by its total over the pass's median total) and a network's figure is its median
    over the normalised rounds. What is left is each network's own run-to-run noise.
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


def calibration_references(table: LatencyTable) -> list[tuple[dict[str, Any], ArchEncoding]]:
    """The table's calibration networks that carry their architecture, with their encodings:
    timed again beside other networks, they tell how fast the machine is now vs at build time."""
    from dna_zoo.arch import load_encoding

    return [(n, load_encoding(n["arch"])) for n in table.calibration.networks if "arch" in n]


def speed_ratio(refs: Sequence[tuple[dict[str, Any], ArchEncoding]], now_ms: Sequence[float]) -> float:
    """Median ratio of the calibration networks' latency now to their latency at build time."""
    return statistics.median(m / n["measured_ms"] for (n, _), m in zip(refs, now_ms, strict=True))


def normalise_rounds(rounds: list[list[float]]) -> list[list[float]]:
    """Each round scaled to the median round speed: ``t / (round total / median total)``.
    With a single network there is nothing to normalise against; rounds are returned as is."""
    if not rounds or len(rounds[0]) < 2:
        return rounds
    totals = [sum(r) for r in rounds]
    mid = statistics.median(totals)
    return [[t * mid / total for t in r] for r, total in zip(rounds, totals, strict=True)]


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


# --- the build ----------------------------------------------------------------------------------------
def resolve_spec(
    device: str,
    runtime: str | None = None,
    *,
    precision: str = "fp32",
    batch: int = 1,
    input_size: int = 224,
    threads: int | None = None,
    in_chans: int = 3,
    num_classes: int = 1000,
) -> TableSpec:
    """Canonical names (aliases resolved), checked runtime/precision, default threads;
    no ``runtime`` means the device's first (preferred) one."""
    from dna_zoo.search.latency.devices import available_cpus
    from dna_zoo.search.latency.runtimes import canonical_runtime

    profile = get_device(device)
    rt = canonical_runtime(runtime or profile.runtimes[0])
    profile.check_runtime(rt, precision)
    if threads is None and profile.kind == "cpu":
        threads = profile.threads or (available_cpus() if profile.local else None)
    if profile.kind != "cpu" and rt != "onnxruntime":
        threads = None
    return TableSpec(profile.name, rt, precision, batch, input_size, threads, in_chans, num_classes)


def make_runtime(spec: TableSpec, *, pin_threads: bool = True, shared_pool: bool = True) -> Runtime:
    rt = get_runtime(
        spec.runtime,
        RuntimeOptions(
            precision=spec.precision, threads=spec.threads, pin_threads=pin_threads, shared_pool=shared_pool
        ),
        device="cpu" if get_device(spec.device).kind == "cpu" else "gpu",
    )
    rt.check()
    return rt


def build_table(
    space: SearchSpace,
    spec: TableSpec,
    *,
    include_published: bool = True,
    networks: Iterable[ArchEncoding] = (),
    copies: int = DEFAULT_COPIES,
    timing: TimingConfig | None = None,
    calibration_timing: TimingConfig | None = None,
    calibrate: bool = True,
    pin_threads: bool = True,
    shared_pool: bool = True,
    cache_dir: str | Path | None = None,
    out: str | Path | None = None,
    rebuild: bool = False,
    progress: Reporter | None = None,
) -> LatencyTable:
    """Measure every missing entry for ``space`` (and DNA-a..d) on this device; cache and return the table.

    A complete cached table that already has every entry is returned as is; one that lacks
    entries (another space) is extended. A partial file from a killed build is resumed.
    """
    if copies < 2:
        raise ConfigError(f"copies must be >= 2 for a marginal cost, got {copies}")
    runtime = make_runtime(
        spec, pin_threads=pin_threads, shared_pool=shared_pool
    )  # not installed: say so first
    identity: DeviceIdentity = identify(get_device(spec.device))
    items = items_for(space, spec, include_published=include_published, networks=networks)
    final = Path(out) if out else complete_path(spec, cache_dir)
    part = partial_path(final)

    table = _start_table(
        spec, identity, runtime, final, part, rebuild=rebuild, copies=copies, pin_threads=pin_threads
    )
    todo = [it for it in items if it.key not in table.entries]
    if not todo and table.calibration.method != "none" and not rebuild:
        logger.info("latency table %s is complete (%d entries)", final, len(table.entries))
        if not final.exists():
            table.save(final)
        return table
    logger.info("measuring %d of %d entries into %s", len(todo), len(items), part)
    t0 = time.perf_counter()
    spent = float(table.meta.get("build_seconds", 0.0))
    work = Path(tempfile.mkdtemp(prefix="dna-latency-"))
    try:
        ref_item = reference_item(items, spec)
        ref_dir = work / "reference"
        ref_dir.mkdir()
        reference = prepare_item(ref_item, spec, runtime, ref_dir, copies=copies) if todo else None
        table.method["reference"] = ref_item.key
        for item in reporter_or_null(progress).track(
            todo, f"measure layers ({spec.device}/{spec.runtime})", total=len(todo)
        ):
            table.entries[item.key] = measure_item(
                item, spec, runtime, work, copies=copies, timing=timing, reference=reference
            )
            _clear(work)
            table.meta["build_seconds"] = round(spent + time.perf_counter() - t0, 1)
            table.save(part)
        ref_ms = anchor_entries(table.entries)
        if ref_ms is not None:
            table.meta["reference_ms"] = round(ref_ms, 6)
        if calibrate:
            nets = calibration_networks(space, include_published=include_published)
            measured = measure_networks(
                nets, spec, runtime, work, timing=calibration_timing, progress=progress
            )[0]
            from dna_zoo.search.latency.predict import summed_ms

            sums = [summed_ms(table, enc) for enc in nets]
            table.calibration = fit_calibration(sums, measured, nets)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table.meta["build_seconds"] = round(spent + time.perf_counter() - t0, 1)
    spaces = table.meta.setdefault("spaces", [])
    if {"name": space.name, "identity": space.identity} not in spaces:
        spaces.append({"name": space.name, "identity": space.identity})
    table.save(final)
    part.unlink(missing_ok=True)
    return table


def _start_table(
    spec, identity, runtime, final: Path, part: Path, *, rebuild: bool, copies: int, pin_threads: bool
) -> LatencyTable:
    fresh = LatencyTable(
        spec=spec,
        device_identity=identity.to_dict(),
        runtime_version=runtime.version(),
        method={
            "kind": "marginal-in-graph",
            "copies": copies,
            "formula": "(T_k - T_1) / (k - 1), k copies on distinct inputs in one model, interleaved rounds",
            "anchor": "each entry timed relative to a reference layer in the same rounds, "
            "then scaled by the reference's median over the build",
            "runtime_options": runtime.describe_options(),
            "pin_threads": pin_threads,
        },
        library_versions=library_versions(),
    )
    if rebuild:
        part.unlink(missing_ok=True)
        return fresh
    base = fresh
    for path, what in ((final, "complete"), (part, "partial")):
        if not path.exists():
            continue
        try:
            t = LatencyTable.load(path, expect=spec, identity=identity.to_dict())
        except LatencyTableError as e:
            if what == "complete":
                raise
            logger.warning("ignoring unusable partial table %s: %s", path, e)
            continue
        if t.method.get("kind") != fresh.method["kind"]:
            raise LatencyTableError(f"{path} was not measured by this method", hint="pass --rebuild")
        if what == "complete":
            base = t
        else:
            base.entries.update(t.entries)
            base.meta["build_seconds"] = t.meta.get("build_seconds", 0.0)
            logger.info("resuming from %s (%d entries)", path, len(t.entries))
    if base is not fresh or base.entries:
        base.runtime_version = fresh.runtime_version
        base.library_versions = fresh.library_versions
    return base


def _clear(folder: Path) -> None:
    for p in folder.iterdir():
        if p.is_file():
            p.unlink(missing_ok=True)


def table_summary(table: LatencyTable) -> dict[str, Any]:
    return {
        "spec": table.spec.to_dict(),
        "device": table.device_identity,
        "runtime_version": table.runtime_version,
        "estimated": table.estimated,
        "entries": len(table.entries),
        "calibration": table.calibration.to_dict(),
        "build_seconds": table.meta.get("build_seconds"),
        "source": table.source,
    }
