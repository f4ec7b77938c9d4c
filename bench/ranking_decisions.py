"""Does the search decide well at a budget? Ratings vs stand-alone accuracy within latency bands.

Issue 14 part 1-2. The ranking benchmark (``ranking_tau.py``) rebuilt around the decisions a
search makes: networks are sampled so that three latency bands of this CPU's latency table
each hold ``--nets-per-band`` networks, every network is trained alone (a subset twice, for the
noise floor), and every method's ranking is judged where the search decides: within each
band, among pairs of about the same latency, and by the regret of the net it would pick under
a budget. The space, teacher, data split, DNA supernet, SPOS supernet and the stand-alone
training are those of ``ranking_tau.py`` (imported from it).

Phases (one process, resumable; every stage is cached in ``--work``):

* ``train`` (the default): latency table (``latency_cost_for(..., build=True)``: this CPU,
  onnxruntime, at ``--latency-size`` px) -> pick networks -> teacher -> DNA supernet and
  rating (the rating's meta records each block's teacher power, so the noise-to-signal
  variant comes from the same pass) -> SPOS supernet and rating -> every picked net stitched
  from the DNA supernet and rated end to end (also ``--phase rate``) -> DNA's last block
  trained with the label loss and rated by top-1 (also ``--phase last-block``) -> stand-alone
  training (seed 0 of every net, bands interleaved, then the second seeds; N processes started
  with ``--shard I/N`` share it as one queue, shard 0 also runs the shared stages), kept per
  training length in ``standalone-e<epochs>``; each net is scored on the held-out images as soon
  as it is trained.
* ``evaluate``: every trained net scored on 45k held-out images (the 10k test split plus 35k
  training-split rows no stage uses; ``--shard I/N`` splits it); the ground truth when every
  net has it. For runs whose nets were trained before the train phase scored them.
* ``analyse``: figures, table, JSON and plot from the cache (seconds); works on a partial
  run (the nets trained so far).

``--nets-from FILE --seeds 3`` adds seeds to a committed run (``FILE`` in bench/results/): it
takes that run's networks, bands and latencies instead of drawing them, imports its held-out
accuracies, retrains ``--verify-imported`` of those trainings first (the analysis refuses to go
on unless they reproduce: exactly on the CPU kind that trained the file, where training is
deterministic, and to 0.02 points on another kind), reruns the shared stages (their ratings are
compared with the file's), and trains the further seeds; results in
``ranking_decisions-seeds<N>.json`` (``--nets-from ranking_decisions-seeds3.json --seeds 4``
adds a fourth). The settings must be the file's.

``--space`` picks the bench space (``ranking_tau.SPACES``): ``tau-fmnist32`` (the default,
results in ``ranking_decisions.*``), ``narrow-fmnist32`` (narrower blocks and head, results in
``ranking_decisions-narrow-fmnist32.*``) or ``wide-fmnist32`` (wider blocks and a fourth depth,
results in ``ranking_decisions-wide-fmnist32.*``).

    nice -n 19 .venv/bin/python bench/ranking_decisions.py --quick            # smoke run
    nice -n 19 .venv/bin/python bench/ranking_decisions.py                    # train (long)
    nice -n 19 .venv/bin/python bench/ranking_decisions.py --shard 0/2 &      # or two processes:
    nice -n 19 .venv/bin/python bench/ranking_decisions.py --shard 1/2 &      # shard 0 first
    nice -n 19 .venv/bin/python bench/ranking_decisions.py --phase rate
    nice -n 19 .venv/bin/python bench/ranking_decisions.py --phase last-block
    nice -n 19 .venv/bin/python bench/ranking_decisions.py --phase evaluate
    .venv/bin/python bench/ranking_decisions.py --phase measure --threads 2   # quiet machine
    .venv/bin/python bench/ranking_decisions.py --phase analyse
    nice -n 19 .venv/bin/python bench/ranking_decisions.py --nets-from ranking_decisions.json --seeds 3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ranking_tau as rt

from dna_zoo.search.space import Candidate, SearchSpace
from dna_zoo.search.strategy.cost import CostModel, MacsCost

log = logging.getLogger("ranking_decisions")
RESULTS = rt.RESULTS
BANDS = 3


@dataclass(frozen=True)
class Settings(rt.Sizes):
    """Sizes of one run (the work directory is named by a hash of these); the rest as
    :class:`ranking_tau.Sizes`."""

    #: the bench space (``ranking_tau.SPACES``)
    space: str = "tau-fmnist32"
    nets_per_band: int = 14
    second_seed_per_band: int = 14
    latency_size: int = 128
    #: "measured" (this CPU's table) or "estimated" (the roofline estimate for this CPU)
    latency_source: str = "estimated"
    train_images: int = 12800
    teacher_images: int = 20000
    retrain_epochs: int = 4
    #: batches of the stitched nets' distillation finetune (the "stitched_ft" method)
    stitch_finetune_steps: int = 100
    #: seeds of each net picked for more than one (``second_seed_per_band`` per band)
    seeds: int = 2
    #: a committed results file (a name in bench/results/) whose networks, bands and latencies
    #: this run takes instead of drawing them; its nets' accuracies are imported, and
    #: ``verify_imported`` of them retrained to check they reproduce on this machine
    nets_from: str = ""
    verify_imported: int = 2

    @property
    def nets(self) -> int:
        return BANDS * self.nets_per_band

    def identity(self) -> dict[str, Any]:
        """Fields added later are left out at their defaults, so older runs keep their work
        directories."""
        d = dataclasses.asdict(self)
        return {k: v for k, v in d.items() if k not in LATER_FIELDS or v != getattr(Settings, k)}


LATER_FIELDS = ("seeds", "nets_from", "verify_imported")


QUICK = Settings(
    nets_per_band=3,
    second_seed_per_band=1,
    stitch_finetune_steps=4,
    # the smoke sizes of ranking_tau's quick run
    **{f.name: getattr(rt.QUICK, f.name) for f in dataclasses.fields(rt.Sizes)},
)


# --- latency ------------------------------------------------------------------------------------------
def stage_latency(work: rt.Work, space: SearchSpace, s: Settings) -> tuple[CostModel, dict[str, Any]]:
    """The CPU latency model of the bench space at ``s.latency_size`` px.

    ``latency_source="measured"``: this CPU's table, built by the project's table builder the
    first time (``latency_cost_for(..., build=True)``; cached in the latency cache).
    ``"estimated"``: the project's roofline estimate for this CPU (specs from its
    micro-benchmark), for when the machine is too loaded to time layers (the measured table
    then has entries off by 10-100x and a negative fixed overhead)."""
    from dna_zoo.search.latency.build import resolve_spec
    from dna_zoo.search.latency.cost import LatencyCost, latency_cost_for
    from dna_zoo.search.latency.estimate import estimate_table

    t0 = rt.Clock()
    if s.latency_source == "measured":
        cost, info = latency_cost_for(
            space, device="cpu", input_size=s.latency_size, num_classes=10, build=True
        )
        if cost.estimated:
            raise SystemExit("the latency table is an estimate, not a measurement")
        info["calibration"] = cost.table.calibration.to_dict()
    elif s.latency_source == "estimated":
        saved = work.path / f"estimated_latency_table-r{s.latency_size}.json"
        spec = resolve_spec("cpu", input_size=s.latency_size, num_classes=10)
        if saved.exists():  # the specs are measured: keep the first estimate, so picks are stable
            from dna_zoo.search.latency.table import LatencyTable

            table = LatencyTable.load(saved)
        else:
            table = estimate_table(space, spec, include_published=False)
            table.save(saved)
        cost = LatencyCost(space, table)
        info = {"table": "estimated", "spec": spec.to_dict(), "file": saved.name, "method": table.method}
    else:
        raise SystemExit(f"unknown latency source '{s.latency_source}' (measured or estimated)")
    work.add_time("latency_table", *t0.spent())
    info["source"] = cost.source
    work.state["latency"] = info
    work.save()
    return cost, info


# --- choosing the networks ------------------------------------------------------------------------------
@dataclass
class Picked:
    nets: list[list[Candidate]]
    band: list[int]
    latency: list[float]
    edges: list[float]
    #: network indices trained with a second seed
    second: list[int]


def _draws(space: SearchSpace, s: Settings, cost: CostModel) -> list[tuple[float, list[Candidate]]]:
    rng = random.Random(s.seed)
    cands = [list(space.block_candidates(b)) for b in range(len(space.blocks))]
    by_depth = [
        {d: [c for c in cs if c.depth == d] for d in space.blocks[b].depths} for b, cs in enumerate(cands)
    ]
    per = {c.key: cost.cost(c) for cs in cands for c in cs}
    fixed = cost.fixed_cost()
    out = []
    for _ in range(s.draws):  # per block: a depth uniformly, then ops uniformly (as the samplers do)
        net = [rng.choice(by_depth[b][rng.choice(space.blocks[b].depths)]) for b in range(len(space.blocks))]
        out.append((fixed + sum(per[c.key] for c in net), net))
    return out


def pick_networks(space: SearchSpace, s: Settings, latency: CostModel) -> Picked:
    """Three bands of equal width in log-latency over the 0.5-99.5% range of random draws;
    in each, ``nets_per_band`` distinct nets evenly spaced in log-latency (the draw nearest
    each target); ``second_seed_per_band`` of them, evenly spread, get a second seed."""
    draws = sorted(_draws(space, s, latency), key=lambda t: t[0])
    lo, hi = draws[len(draws) // 200][0], draws[len(draws) * 199 // 200][0]
    edges = list(np.exp(np.linspace(math.log(lo), math.log(hi), BANDS + 1)))
    logs = np.log([d[0] for d in draws])
    nets, band, lat, second, seen = [], [], [], [], set()
    for b in range(BANDS):
        a, z = math.log(edges[b]), math.log(edges[b + 1])
        targets = a + (np.arange(s.nets_per_band) + 0.5) * (z - a) / s.nets_per_band
        start = len(nets)
        for t in targets:
            order = np.argsort(np.abs(logs - t))
            i = next(int(i) for i in order if tuple(c.key for c in draws[i][1]) not in seen)
            seen.add(tuple(c.key for c in draws[i][1]))
            nets.append(draws[i][1])
            band.append(b)
            lat.append(float(draws[i][0]))
        k = s.second_seed_per_band
        second += [start + int(j) for j in np.round(np.linspace(0, s.nets_per_band - 1, k))] if k else []
    return Picked(nets, band, lat, [float(e) for e in edges], second)


def training_order(p: Picked, seeds: int = 2) -> list[tuple[int, int]]:
    """(net, seed): seed 0 of every net with the bands interleaved (a cut run stays balanced),
    and after every third of those a second seed of a net already trained (so a cut run
    still has its noise floor); with ``seeds`` > 2, the further seeds of those nets last."""
    per_band = [[i for i, b in enumerate(p.band) if b == k] for k in range(BANDS)]
    first = []
    for j in range(max(len(x) for x in per_band)):
        # within a band, alternate from both ends so a partial run covers the band's range
        for x in per_band:
            if j < len(x):
                first.append(x[j // 2] if j % 2 == 0 else x[len(x) - 1 - j // 2])
    pending = sorted(p.second, key=first.index)
    order: list[tuple[int, int]] = []
    for k, i in enumerate(first):
        order.append((i, 0))
        done = {n for n, _ in order}
        if (k + 1) % 3 == 0 and pending and pending[0] in done:
            order.append((pending.pop(0), 1))
    later = [(i, k) for k in range(2, seeds) for i in sorted(p.second, key=first.index)]
    return order + [(i, 1) for i in pending] + later


# --- a committed run's networks (``--nets-from``) ----------------------------------------------------------
def import_nets(work: rt.Work, s: Settings, space: SearchSpace) -> dict[str, Any]:
    """What this run takes from the committed results file ``s.nets_from`` (copied into the
    work directory's state the first time, so the run no longer needs the file): its networks,
    bands, band edges, latencies and held-out accuracies. Refuses a file of another space."""
    if "nets_from" not in work.state:
        work.state["nets_from"] = read_nets_from(s, space)
        work.save()
    return work.state["nets_from"]


def read_nets_from(s: Settings, space: SearchSpace) -> dict[str, Any]:
    """The part of the results file ``s.nets_from`` that :func:`import_nets` keeps; one line and
    exit 1 for a file that is not a complete run, or is of another space or other settings."""
    path = RESULTS / s.nets_from
    try:
        r = json.loads(path.read_text())
        nets = sorted(r["networks"], key=lambda n: n["index"])
        ok = r.get("bench") == "ranking_decisions" and [n["index"] for n in nets] == list(range(len(nets)))
    except (OSError, ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise SystemExit(
            f"--nets-from {s.nets_from}: not a complete ranking_decisions results file in bench/results/ "
            "(e.g. ranking_decisions.json, written by --phase analyse)"
        )
    if r["space"]["identity"] != space.identity:
        raise SystemExit(
            f"--nets-from {s.nets_from} is of bench space {r['space']['name']} ({r['space']['identity']}), "
            f"this run's is {space.name} ({space.identity}): pass --space {r['space']['name']}"
        )
    mine = dataclasses.asdict(s)
    differ = [
        k for k, v in r["settings"].items() if k not in (*LATER_FIELDS, "bootstrap") and mine.get(k, v) != v
    ]
    if differ:
        raise SystemExit(
            f"--nets-from {s.nets_from} was run with other settings ({', '.join(differ)}): "
            "its accuracies would not be this run's; pass the same values"
        )
    if "ground_truth_images" not in r or r["ground_truth_images"] == r["settings"]["test_images"]:
        raise SystemExit(f"--nets-from {s.nets_from}: its accuracies are not on the held-out images")
    keep = ("index", "band", "candidates", "latency_ms", "acc")
    return {
        "file": path.name,
        "cpu_hours_total": r.get("cpu_hours_total"),
        "machine": r.get("machine") or {},
        "space_identity": space.identity,
        "band_edges_ms": r["latency"]["band_edges_ms"],
        "latency_table": r["latency"]["table"],
        "ground_truth_images": r["ground_truth_images"],
        # (the scores, for the analysis to compare this run's ratings with)
        "networks": [{k: v for k, v in n.items() if k in keep or k.startswith("score_")} for n in nets],
    }


def picked_from(imported: dict[str, Any]) -> Picked:
    """The committed run's picks (nets with more than one seed there are the multi-seed ones)."""
    nets = imported["networks"]
    return Picked(
        nets=[[Candidate.parse(k) for k in n["candidates"]] for n in nets],
        band=[int(n["band"]) for n in nets],
        latency=[float(n["latency_ms"]) for n in nets],
        edges=[float(e) for e in imported["band_edges_ms"]],
        second=[n["index"] for n in nets if len(n["acc"]) > 1],
    )


def imported_acc(work: rt.Work) -> dict[int, list[float]]:
    """The committed run's held-out top-1 per net and seed (empty without ``--nets-from``)."""
    return {n["index"]: list(n["acc"]) for n in work.state.get("nets_from", {}).get("networks", [])}


def verification(imported: dict[int, list[float]], k: int) -> list[tuple[int, int]]:
    """The ``k`` imported (net, seed) trainings retrained to check the import: nets evenly
    spread over the run (so over its bands), seeds 0 and 1 alternating."""
    if not imported or k < 1:
        return []
    nets = sorted(imported)
    picks = [nets[int(j)] for j in np.round(np.linspace(0, len(nets) - 1, min(k, len(nets))))]
    return [(i, j % len(imported[i])) for j, i in enumerate(picks)]


# --- the training phase ----------------------------------------------------------------------------------
def open_run(args: argparse.Namespace) -> tuple[Settings, rt.Work]:
    base = QUICK if args.quick else Settings()
    over = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(Settings)
        if getattr(args, f.name) is not None
    }
    s = dataclasses.replace(base, **over)
    space = rt.bench_space(s.space)  # an unknown space fails here, before a work directory is made for it
    from dna_zoo.search.supernet.teacher_train import cache_dir

    name = f"ranking_decisions-{'quick' if args.quick else 'full'}-{s.tag()}"
    path = args.work or cache_dir() / "bench" / name
    fresh = s.nets_from and not (path / "state.json").exists()
    imported = read_nets_from(s, space) if fresh else None  # ... and so does a file it cannot import
    work = rt.Work(path)
    if imported is not None:
        work.state["nets_from"] = imported  # (what import_nets keeps; the file is read once)
    work.state["settings"] = dataclasses.asdict(s)
    work.save()
    return s, work


def prepare(work: rt.Work, s: Settings) -> tuple[SearchSpace, rt.Data, CostModel, Picked]:
    space = rt.bench_space(s.space)
    data = rt.open_data(s)  # type: ignore[arg-type]  (duck-typed settings)
    latency, info = stage_latency(work, space, s)
    p = picked_from(import_nets(work, s, space)) if s.nets_from else pick_networks(space, s, latency)
    macs = MacsCost(space, input_size=32, num_classes=10)
    lat = p.latency
    log.info(
        "latency table %s at %d px: bands %s ms; picked nets span %.3f-%.3f ms (%.2fx), MACs %.2f-%.2f M",
        info["table"],
        s.latency_size,
        ", ".join(f"{e:.3f}" for e in p.edges),
        min(lat),
        max(lat),
        max(lat) / min(lat),
        min(macs.network_cost(space.to_encoding(n)) for n in p.nets) / 1e6,
        max(macs.network_cost(space.to_encoding(n)) for n in p.nets) / 1e6,
    )
    return space, data, latency, p


def standalone_dir(s: Settings) -> str:
    """The stand-alone trainings of one training length (several lengths share a work dir)."""
    steps = f"-s{s.retrain_max_steps}" if s.retrain_max_steps else ""
    return f"standalone-e{s.retrain_epochs}{steps}"


def phase_train(work: rt.Work, s: Settings, shard: tuple[int, int] = (0, 1)) -> None:
    """Every stage in order; with ``shard=(i, n)`` (n processes on one work directory) the
    shared stages are shard 0's: start it first (it draws the bands in seconds), then the others.
    The stand-alone trainings are one queue: every process takes the next one no live process
    has claimed, and scores it on the held-out images (``--phase evaluate``'s figure) when done."""
    i_shard, _ = shard
    if i_shard and "latency" not in work.state:
        raise SystemExit("shard > 0 needs the bands drawn: start --shard 0/N first (it takes seconds)")
    space, data, _, p = prepare(work, s)
    if not i_shard:  # the shared stages are shard 0's (and a run without shards)
        phase_shared(work, s, space, data, p)
    order = training_order(p, s.seeds)
    imported = imported_acc(work)
    if imported:  # the committed run's trainings are not repeated, bar the verification ones (first)
        check = verification(imported, s.verify_imported)
        order = check + [(i, k) for i, k in order if k >= len(imported.get(i, []))]
        log.info("imported %d trainings from %s; retraining %s to verify them",
                 sum(map(len, imported.values())), s.nets_from, check)  # fmt: skip
    sub = standalone_dir(s)
    extra, rows = heldout_rows(s)
    log.info("stage: stand-alone training (%d trainings, in %s, shard %d/%d)", len(order), sub, *shard)
    for k, (i, seed) in enumerate(order):
        run = work.path / sub / f"net{i:02d}-seed{seed}"
        if (run / HELDOUT).exists() or not work.claim(f"{sub}-{run.name}"):
            continue
        try:
            acc, _ = rt.train_standalone(work, space, p.nets[i], i, seed, data, s, subdir=sub)
            t0 = rt.Clock()
            held = score_heldout(run, data.test.dataset, extra, rows)
            work.add_time("heldout_eval", *t0.spent())
        finally:
            work.release(f"{sub}-{run.name}")
        cpu = work.state.get("cpu_seconds", {}).get(sub, 0.0)
        log.info(
            "[%d/%d] net%02d (band %d) seed %d: %.2f%% test, %.2f%% on %d held-out; stand-alone CPU %.2f h",
            k + 1, len(order), i, p.band[i], seed, acc, held["top1"], held["images"], cpu / 3600,
        )  # fmt: skip
    log.info("training phase done; CPU-hours by stage: %s", cpu_hours(work))


def phase_shared(work: rt.Work, s: Settings, space: SearchSpace, data: rt.Data, p: Picked) -> None:
    """The stages every method's rating shares: teacher, DNA supernet and rating, SPOS,
    the stitched ratings and the last block (each cached)."""
    log.info("stage: teacher")
    teacher = rt.stage_teacher(work, s)  # type: ignore[arg-type]
    log.info("teacher: %.2f%% test top-1", teacher["test_top1"])
    log.info("stage: DNA supernet + rating")
    rt.stage_dna(work, space, teacher, data, s)  # type: ignore[arg-type]
    log.info("stage: SPOS supernet + rating")
    rt.stage_spos(work, space, p.nets, data, s)  # type: ignore[arg-type]
    log.info("stage: stitched end-to-end rating")
    phase_rate(work, s)
    log.info("stage: last block with the label loss")
    phase_last_block(work, s)


def phase_rate(work: rt.Work, s: Settings) -> None:
    """The per-network ratings that need the trained supernet: stitched end to end, without
    and with a short distillation finetune (cached)."""
    from dna_zoo.io import atomic_write_json
    from dna_zoo.search.supernet.stitch import rate_stitched
    from dna_zoo.search.supernet.train import load_supernet, teacher_of_run

    _, data, _, p = prepare(work, s)
    sdir = work.path / "dna_supernet"
    if not (work.path / "dna_ratings.json").exists():
        raise SystemExit("the DNA supernet is not trained yet: run the train phase first")
    teacher = teacher_of_run(sdir)
    supernet, _ = load_supernet(sdir, teacher)
    for name, steps in (("stitched", 0), ("stitched_ft", s.stitch_finetune_steps)):
        out = work.path / f"{name}_ratings.json"
        if out.exists() or (name == "stitched_ft" and not steps):
            continue
        t0 = rt.Clock()
        rows = rate_stitched(
            teacher,
            supernet,
            p.nets,
            data.train,
            data.val,
            bn_batches=s.rate_bn_batches,
            batch_size=s.rate_batch_size,
            seed=s.seed,
            finetune_steps=steps,
        )
        atomic_write_json(out, rows)
        work.add_time(f"{name}_rating", *t0.spent())
        log.info("%s ratings of %d networks written to %s", name, len(rows), out)


def phase_last_block(work: rt.Work, s: Settings) -> None:
    """DNA's last-block treatment (``search.supernet.last_block``): the space's last block
    trained with the label loss (same epochs, batch and data as the supernet) and every
    candidate of it rated by held-out cross-entropy and top-1 (cached)."""
    import dataclasses as dc

    from dna_zoo.io import atomic_write_json
    from dna_zoo.search.supernet.last_block import LastBlockConfig, rate_last_block, train_last_block
    from dna_zoo.search.supernet.train import teacher_of_run

    space, data, _, _ = prepare(work, s)
    out = work.path / "last_block_ratings.json"
    if out.exists():
        log.info("last-block ratings cached in %s", out)
        return
    if not (work.path / "dna_ratings.json").exists():
        raise SystemExit("the DNA supernet is not trained yet: run the train phase first")
    t0 = rt.Clock()
    teacher = teacher_of_run(work.path / "dna_supernet")
    cfg = LastBlockConfig(
        epochs=s.supernet_epochs,
        batch_size=s.supernet_batch_size,
        max_steps=s.supernet_max_steps,
        bn_batches=s.rate_bn_batches,
        eval_batches=s.rate_eval_batches,
        seed=s.seed,
    )
    net, facts = train_last_block(teacher, space, data.train, cfg)
    ratings = rate_last_block(net, teacher, data.train, data.val, cfg)
    atomic_write_json(out, {"config": dc.asdict(cfg), "train": facts, "ratings": ratings})
    work.add_time("last_block", *t0.spent())
    log.info("last-block ratings of %d candidates written to %s", len(ratings), out)


def phase_measure(work: rt.Work, s: Settings) -> None:
    """The picked networks timed whole on this CPU (onnxruntime, 2 threads, batch 1, at
    ``latency_size`` px; two interleaved passes, ``search.latency.measurement``), to check the
    bands the estimate drew. Run it on a quiet machine; cached in ``measured_nets-r<px>.json``."""
    import tempfile

    from dna_zoo.io import atomic_write_json
    from dna_zoo.search.latency.build import make_runtime, resolve_spec
    from dna_zoo.search.latency.measurement import measure_networks

    space, _, latency, p = prepare(work, s)
    out = work.path / f"measured_nets-r{s.latency_size}.json"
    if out.exists():
        log.info("measured latencies cached in %s", out)
        return
    spec = resolve_spec("cpu", input_size=s.latency_size, num_classes=10)
    encs = [space.to_encoding(n, name=f"net{i:02d}") for i, n in enumerate(p.nets)]
    t0 = rt.Clock()
    with tempfile.TemporaryDirectory(prefix="dna-rank-measure-") as tmp:
        passes = measure_networks(encs, spec, make_runtime(spec), Path(tmp), passes=2)
    wall, cpu = t0.spent()
    work.add_time("measure_latency", wall, cpu)
    atomic_write_json(
        out,
        {
            "spec": spec.to_dict(),
            "passes_ms": passes,
            "estimated_ms": [latency.network_cost(e) for e in encs],
            "machine": rt.machine(),
        },
    )
    log.info("measured %d networks in %.0f s: %s", len(encs), wall, out)


#: a stand-alone net's top-1 on the larger held-out set (``--phase evaluate``), in its directory
HELDOUT = "heldout.json"


def extra_heldout(s: Settings) -> tuple[int, int]:
    """Rows ``start, count`` of Fashion-MNIST's training split that no stage trains or rates on
    (after the stand-alone and teacher images, before the validation rows): 3.5x the test split
    (35k rows in the full run), scored with it so the ground truth's sampling error shrinks."""
    start = max(s.train_images, s.teacher_images)
    return start, min(rt.VAL_START - start, 35 * s.test_images // 10)


def score_heldout(run: Path, test: Any, extra: Any, rows: tuple[int, int]) -> dict[str, Any]:
    """One trained stand-alone net (its run directory) scored on the test split and the extra
    held-out rows ``rows`` (a :class:`ranking_tau.Rows`); written to ``HELDOUT`` in ``run``."""
    from dna_zoo.io import atomic_write_json
    from dna_zoo.search.retrain import evaluate, load_retrained

    model = load_retrained(run)
    parts = {  # evaluate runs without gradients
        "test": {"images": len(test), "top1": evaluate(model, test, batch_size=500)},
        "extra": {"images": len(extra), "rows": list(rows), "top1": evaluate(model, extra, batch_size=500)},
    }
    n = sum(v["images"] for v in parts.values())
    out = {"top1": sum(v["top1"] * v["images"] for v in parts.values()) / n, "images": n, "parts": parts}
    atomic_write_json(run / HELDOUT, out)
    return out


def heldout_rows(s: Settings) -> tuple[Any, tuple[int, int]]:
    """The extra held-out rows of ``s`` as a dataset, and their row range."""
    from dna_zoo.search.supernet.data import FashionMNIST

    start, count = extra_heldout(s)
    return rt.Rows(FashionMNIST("train", input_size=32), start, count), (start, start + count)


def phase_evaluate(work: rt.Work, s: Settings, shard: tuple[int, int] = (0, 1)) -> None:
    """Every trained stand-alone net scored on the test split and the extra held-out rows
    (cached per net; ``--shard I/N`` splits the nets). With 10k test images alone, two seeds
    of one net that disagree on ~9% of the images differ by 0.3 points sd from sampling alone."""
    from dna_zoo.search.retrain import CONFIG

    _, data, _, p = prepare(work, s)
    extra, rows = heldout_rows(s)
    sub = work.path / standalone_dir(s)
    todo = [
        (i, seed)
        for i, seed in training_order(p, s.seeds)
        if (sub / f"net{i:02d}-seed{seed}" / CONFIG).exists()
    ]
    t0 = rt.Clock()
    for k, (i, seed) in enumerate(todo):
        run = sub / f"net{i:02d}-seed{seed}"
        if k % shard[1] != shard[0] or (run / HELDOUT).exists():
            continue
        r = score_heldout(run, data.test.dataset, extra, rows)
        log.info(
            "[%d/%d] net%02d seed %d: %.2f%% on %d held-out images",
            k + 1, len(todo), i, seed, r["top1"], r["images"],
        )  # fmt: skip
    work.add_time("heldout_eval", *t0.spent())


def cpu_hours(work: rt.Work) -> dict[str, float]:
    return {k: round(v / 3600, 3) for k, v in work.state.get("cpu_seconds", {}).items()}


def parse_shard(ap: argparse.ArgumentParser, text: str) -> tuple[int, int]:
    """``--shard I/N`` as (I, N), or the parser's one-line error."""
    try:
        i, n = (int(v) for v in text.split("/"))
        assert 0 <= i < n
    except (ValueError, AssertionError):
        ap.error(f"--shard must be I/N with 0 <= I < N, got '{text}'")
    return i, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--phase", choices=("train", "rate", "last-block", "evaluate", "measure", "analyse"), default="train"
    )
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny data, few steps, 9 networks")
    ap.add_argument("--out", type=Path, default=None, help="JSON output (.md and .png written next to it)")
    ap.add_argument("--work", type=Path, default=None, help="work directory (resumable stage outputs)")
    for f in dataclasses.fields(Settings):
        kind = str if isinstance(f.default, str) else int
        ap.add_argument(
            f"--{f.name.replace('_', '-')}", type=kind, default=None, help=f"default: {f.default}"
        )
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: under nice on a busy 2-core machine a second thread mostly "
        "spin-waits; measured 2.5x slower per step there)",
    )
    ap.add_argument(
        "--shard",
        default="0/1",
        help="I/N: one of N processes on one --work directory; they take the stand-alone trainings from "
        "one queue, shard 0 also runs the shared stages (start it first); --phase evaluate takes every "
        "N-th net from the I-th",
    )
    args = ap.parse_args()
    shard = parse_shard(ap, args.shard)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stdout)
    torch.set_num_threads(args.threads)
    s, work = open_run(args)
    log.info("work directory %s (rerun the same command to resume)", work.path)
    if args.phase == "train":
        phase_train(work, s, shard)
    elif args.phase == "rate":
        phase_rate(work, s)
    elif args.phase == "last-block":
        phase_last_block(work, s)
    elif args.phase == "evaluate":
        phase_evaluate(work, s, shard)
    elif args.phase == "measure":
        phase_measure(work, s)
    else:
        from ranking_decisions_analysis import phase_analyse

        space = "" if s.space == Settings.space else f"-{s.space}"
        seeds = "" if s.seeds == Settings.seeds else f"-seeds{s.seeds}"
        name = f"ranking_decisions{space}{seeds}{'-quick' if args.quick else ''}.json"
        out = args.out or RESULTS / name
        phase_analyse(work, s, out)


if __name__ == "__main__":
    main()
