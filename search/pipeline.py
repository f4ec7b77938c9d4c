"""The whole DNA pipeline in one resumable run directory.

teacher (trained on the built-in data, cached; or given) -> supernet (block-wise KD of
every block from one teacher pass) -> ratings (every candidate) -> latency table for the
device (built here if it is the local CPU and missing) -> exact constrained search ->
retrain the chosen net and a baseline of similar predicted latency -> export to ONNX and
measure both on the table's runtime -> ``report.json``.

Every stage leaves its output in the run directory (``pipeline.json`` records the
settings); running again with the same settings skips finished stages and resumes an
interrupted supernet or retraining from its checkpoint.

Run directory::

    pipeline.json            settings (a resumed run must match them)
    supernet/                `dna supernet train` run (checkpoints, run.json)
    ratings.json             every candidate's loss
    best.json, pareto.png    the search result
    retrain/, baseline/      model.safetensors + config.json of each retrained net
    best.onnx, baseline.onnx exported nets
    report.json              chosen arch, predicted vs measured latency, accuracies
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dna_zoo.errors import ConfigError
from dna_zoo.progress import Reporter
from dna_zoo.search.comparison import compare_to_searched
from dna_zoo.search.strategy.budgets import Budgets, budget_report

log = logging.getLogger(__name__)

PIPELINE_FILE = "pipeline.json"


@dataclass(frozen=True)
class PipelineConfig:
    """Settings of a pipeline run; the defaults are the built-in demo, sized so that set-up
    plus the whole run take under 15 minutes on a 2-core AVX2 CPU (measured stage times in
    bench/results/README.md): teacher 2 epochs on the first 20k images, supernet 1 epoch on
    30k, and 234 retraining steps of 128 images (30k images) for each of the four retrained
    nets (the searched net twice, for the seed noise; the most-MACs net; a random net).

    The latency budget is costed at ``latency_input_size`` (224 px, batch 1: the setting a
    deployed net runs in), not at the 32 px the demo trains at: at 32 px per-operator
    overheads dominate and every network of the ``small`` space costs about the same
    (0.59-0.65 ms on this CPU's table), so no budget would bind. ``noise_seeds`` extra seeds
    of the searched net measure the retraining's seed noise, against which the comparisons
    with the other nets are judged."""

    data: str = "builtin"
    space: str = "small"
    teacher: str = "efficientnet_b0"
    teacher_weights: str | None = None
    teacher_epochs: int = 2
    teacher_limit: int | None = 20000
    input_size: int = 32
    in_chans: int = 3
    num_classes: int = 10
    supernet_epochs: int = 1
    supernet_batch_size: int = 64
    supernet_limit: int | None = 30000
    rate_bn_batches: int = 4
    rate_eval_batches: int = 8
    retrain_epochs: int = 1
    retrain_batch_size: int = 128
    retrain_max_steps: int | None = 234
    kd: bool = True
    baseline: bool = True
    noise_seeds: int = 1
    latency_input_size: int | None = 224
    seed: int = 0
    budgets: Budgets = field(default_factory=lambda: Budgets(latency_ms="auto", device="cpu"))

    def __post_init__(self) -> None:
        if self.retrain_epochs < 0 or self.teacher_epochs < 1 or self.supernet_epochs < 1:
            raise ConfigError("epochs must be positive (retrain epochs may be 0 to skip retraining)")
        if self.noise_seeds < 0:
            raise ConfigError(f"noise seeds must be >= 0, got {self.noise_seeds}")

    @property
    def cost_input_size(self) -> int:
        """The resolution the latency budget is costed at (``latency_input_size``, else the
        training resolution)."""
        return self.latency_input_size or self.input_size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _write_json(path: Path, obj: Any) -> None:
    from dna_zoo.io import atomic_write_json

    atomic_write_json(path, obj)


def _in_run(path: str | Path, run: Path) -> str:
    """``path`` as the report records it: relative to the run directory (no local paths)."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(run.resolve()))
    except ValueError:
        return p.name


def _check_run_dir(run: Path, cfg: PipelineConfig) -> None:
    """A new run directory, or one of a run with exactly these settings."""
    p = run / PIPELINE_FILE
    if p.exists():
        try:
            old = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"{p} is unreadable: {e}", hint="use another --out") from e
        if old != json.loads(json.dumps(cfg.to_dict(), default=str)):
            diff = sorted(
                k for k, v in cfg.to_dict().items() if json.loads(json.dumps(v, default=str)) != old.get(k)
            )
            raise ConfigError(
                f"{run} holds a pipeline run with other settings ({', '.join(diff)})",
                hint="resume with the same settings, or use another --out",
            )
        return
    if run.exists() and any(run.iterdir()):
        raise ConfigError(f"{run} exists and is not a pipeline run directory", hint="use a new --out")
    run.mkdir(parents=True, exist_ok=True)
    _write_json(p, cfg.to_dict())


# --- stages ---------------------------------------------------------------------------------------
def stage_teacher(cfg: PipelineConfig, progress: Reporter | None) -> tuple[str, dict[str, Any]]:
    """The teacher's weights file: given, or trained on the built-in data (cached)."""
    if cfg.teacher_weights is not None:
        return cfg.teacher_weights, {
            "model": cfg.teacher,
            "weights": Path(cfg.teacher_weights).name,
            "trained_here": False,
        }
    from dna_zoo.search.supernet.data import is_builtin
    from dna_zoo.search.supernet.teacher_train import train_teacher

    if not is_builtin(cfg.data):
        raise ConfigError(
            "a teacher for your own data needs trained weights", hint="pass --teacher-weights FILE"
        )
    res = train_teacher(
        cfg.teacher, data=cfg.data, epochs=cfg.teacher_epochs, input_size=cfg.input_size,
        in_chans=cfg.in_chans, seed=cfg.seed, limit=cfg.teacher_limit, progress=progress,
    )  # fmt: skip
    info = {
        "model": cfg.teacher, "weights": res.path.name, "top1": res.top1, "cached": res.cached,
        "seconds": round(res.seconds, 1), "trained_here": True,
    }  # fmt: skip
    return str(res.path), info


def stage_ratings(run: Path, cfg: PipelineConfig, teacher_weights: str, progress: Reporter | None):
    """Supernet training (resumed if interrupted) and rating; reused if ratings exist."""
    from dna_zoo.search.ratings import Ratings

    out = run / "ratings.json"
    if out.exists():
        return Ratings.load(out), {"reused": True}
    from dna_zoo.search.supernet.rate import RateConfig, rate_run
    from dna_zoo.search.supernet.run import RunDir
    from dna_zoo.search.supernet.train import train_supernet

    sdir = run / "supernet"
    t0 = time.perf_counter()
    res = train_supernet(
        sdir, space=cfg.space, teacher=cfg.teacher, teacher_weights=teacher_weights, data=cfg.data,
        config={
            "epochs": cfg.supernet_epochs, "batch_size": cfg.supernet_batch_size,
            "input_size": cfg.input_size,
            "in_chans": cfg.in_chans, "limit": cfg.supernet_limit, "seed": cfg.seed,
        },
        resume=RunDir(sdir).exists(), progress=progress,
    )  # fmt: skip
    t_train = time.perf_counter() - t0
    t0 = time.perf_counter()
    ratings = rate_run(
        sdir, out=out,
        config=RateConfig(bn_batches=cfg.rate_bn_batches, eval_batches=cfg.rate_eval_batches, seed=cfg.seed),
        progress=progress,
    )  # fmt: skip
    return ratings, {
        "supernet_steps": res.steps, "teacher_passes": res.teacher_passes,
        "supernet_seconds": round(t_train, 1), "rating_seconds": round(time.perf_counter() - t0, 1),
    }  # fmt: skip


def baseline_network(space, model, target: float, chosen, *, seed: int = 0, draws: int = 3000):
    """A random network of the space whose cost is closest to ``target`` (not the chosen one)."""
    rng = random.Random(seed)
    best, best_gap = None, math.inf
    fixed = model.fixed_cost()
    per_block = [[(c, model.cost(c)) for c in space.block_candidates(b)] for b in range(len(space.blocks))]
    for _ in range(draws):
        pick = [rng.choice(cands) for cands in per_block]
        cost = fixed + sum(c for _, c in pick)
        choice = [c for c, _ in pick]
        if [c.key for c in choice] == list(chosen):
            continue
        gap = abs(cost - target)
        if gap < best_gap:
            best, best_gap = choice, gap
    return space.to_encoding(best, name="baseline"), fixed + sum(model.cost(c) for c in best)


def most_macs_network(space, constraints) -> tuple[Any, float]:
    """The network with the most MACs within ``constraints`` (the obvious choice a search
    must beat) and its cost along the first constraint."""
    from dna_zoo.search.strategy.constrained import constrained_search
    from dna_zoo.search.strategy.objective import macs_ratings

    res = constrained_search(macs_ratings(space), constraints, name="most_macs")
    return res.arch, res.costs[0].value


def measure_latency(
    models: dict[str, Any], cfg: PipelineConfig, spec: dict[str, Any], table=None
) -> tuple[dict[str, float], float | None]:
    """End-to-end latency (ms) of the given torch models on the table's runtime, and the
    machine's speed now relative to when ``table`` was built.

    The models and the table's calibration networks run interleaved in the same rounds,
    normalised round by round (:func:`~dna_zoo.timing.normalise_rounds`);
    the calibration networks' median ratio of now vs build time is the speed ratio (this
    CPU's speed swings by tens of percent within a minute, so a prediction is compared
    with a measurement at the table's speed, and both figures are reported)."""
    import shutil

    from dna_zoo.search.latency.build import make_runtime
    from dna_zoo.search.latency.calibration import calibration_references, speed_ratio
    from dna_zoo.search.latency.measurement import measure_networks
    from dna_zoo.search.latency.table import TableSpec
    from dna_zoo.timing import TimingConfig

    ts = TableSpec.from_dict(spec)
    refs = calibration_references(table) if table is not None else []
    work = Path(tempfile.mkdtemp(prefix="dna-measure-"))
    try:
        timing = TimingConfig(runs_per_round=1, min_rounds=40, max_rounds=40, max_seconds=60)
        nets = list(models.values()) + [enc for _, enc in refs]
        ms = measure_networks(nets, ts, make_runtime(ts), work, timing=timing)[0]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    measured = dict(zip(models, ms, strict=False))
    return measured, (speed_ratio(refs, ms[len(models) :]) if refs else None)


def export_onnx_checked(model, path: Path, *, input_size: int, in_chans: int) -> dict[str, Any]:
    """ONNX export through :mod:`dna_zoo.export` (its ``onnx`` format: dynamic batch, opset 17,
    onnx.checker) with its standard parity check (ONNX Runtime vs torch on real images; a
    net outside tolerance is a ParityError). The file replaces ``path`` only once checked."""
    import shutil

    import torch

    from dna_zoo.export.format_onnx import export_onnx
    from dna_zoo.export.inputs import data_config, random_sample
    from dna_zoo.export.options import ExportOptions
    from dna_zoo.io import staging_dir

    model = model.eval()
    cfg = data_config(model, input_size)
    if cfg["input_size"][0] != in_chans:
        raise ConfigError(f"the model takes {cfg['input_size'][0]} input channels, not {in_chans}")
    opts = ExportOptions.create(
        {"dynamic": True, "input_size": input_size, "latency": False, "threads": torch.get_num_threads()}
    )
    stage = staging_dir(path)
    try:
        art = export_onnx(model, random_sample(cfg, 1), stage / path.name, opts)
        os.replace(art.path, path)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    parity = art.manifest["parity"]
    return {"path": str(path), "max_abs_diff": parity["max_abs_diff"], "opset": opts.opset, "parity": parity}


def run_pipeline(
    run_dir: str | Path, cfg: PipelineConfig = PipelineConfig(), *, progress: Reporter | None = None,
    on_stage=None,
) -> dict[str, Any]:  # fmt: skip
    """Run (or resume) the whole pipeline in ``run_dir``; returns (and writes) the report."""
    from dna_zoo.search.retrain import RetrainConfig, load_retrained, retrain
    from dna_zoo.search.strategy.budgets import budget_constraints
    from dna_zoo.search.strategy.constrained import constrained_search
    from dna_zoo.search.strategy.plot import pareto_plot

    run = Path(run_dir)
    _check_run_dir(run, cfg)
    say = on_stage or (lambda msg: log.info(msg))
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    report: dict[str, Any] = {"run_dir": str(run), "settings": cfg.to_dict()}

    def timed(name: str, t0: float) -> None:
        timings[name] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    say("teacher")
    teacher_weights, report["teacher"] = stage_teacher(cfg, progress)
    timed("teacher", t0)

    t0 = time.perf_counter()
    say("supernet training and rating")
    ratings, report["supernet"] = stage_ratings(run, cfg, teacher_weights, progress)
    timed("supernet+rating", t0)
    space = ratings.space

    t0 = time.perf_counter()
    if cfg.budgets.latency_ms is not None:
        say("latency table")
    chosen = budget_constraints(
        ratings, cfg.budgets, input_size=cfg.cost_input_size, in_chans=cfg.in_chans,
        num_classes=cfg.num_classes, build_table=True, progress=progress,
    )  # fmt: skip
    constraints, lat_model, lat_info = chosen.constraints, chosen.latency, chosen.latency_info
    if lat_info is not None:
        report["latency_table"] = lat_info
    if chosen.auto_budget_ms is not None:
        report["auto_budget_ms"] = chosen.auto_budget_ms
    timed("latency table", t0)

    t0 = time.perf_counter()
    say("search")
    result = constrained_search(
        ratings, constraints, name="dna_searched", ratings_path=str(run / "ratings.json")
    )
    result.save(run / "best.json")
    pareto_plot(result, run / "pareto.png")
    timed("search", t0)
    report["search"] = {
        "best": "best.json", "plot": "pareto.png",  # in the run directory
        "arch_def": result.arch.to_arch_def(),
        "candidates": list(result.candidates), "rating": result.rating,
        "costs": [c.to_dict() for c in result.costs], "params": result.params, "macs": result.macs,
        "front_points": len(result.front), "solver_seconds": result.meta.get("seconds"),
    }  # fmt: skip

    nets = {"searched": result.arch}
    axis_model = constraints[0].model
    report["budget"] = budget_report(space, constraints)
    if cfg.baseline:
        enc, cost = baseline_network(
            space, axis_model, result.costs[0].value, result.candidates, seed=cfg.seed
        )  # fmt: skip
        nets["baseline"] = enc

        def entry(enc, cost: float, how: str) -> dict[str, Any]:
            return {
                "arch_def": enc.to_arch_def(), "predicted": cost, "cost": axis_model.name,
                "rating": sum(ratings.loss(c) for c in space.from_encoding(enc)), "how": how,
            }  # fmt: skip

        report["baseline"] = entry(
            enc, cost, f"random network of the space with the {axis_model.name} closest to the searched net's"
        )
        enc, cost = most_macs_network(space, constraints)
        same = [c.key for c in space.from_encoding(enc)] == list(result.candidates)
        if not same:
            nets["most_macs"] = enc
        report["most_macs"] = {
            **entry(enc, cost, "the network with the most MACs within the same budgets (the obvious choice)"),
            "same_as_searched": same,
        }

    trained = {}
    if cfg.retrain_epochs > 0:
        from dna_zoo.search.retrain import load_kd_teacher, training_data

        teacher_model = None
        if cfg.kd:
            teacher_model = load_kd_teacher(cfg.teacher, teacher_weights, in_chans=cfg.in_chans)
        train_set, val_set, info = training_data(cfg.data, input_size=cfg.input_size, in_chans=cfg.in_chans)
        jobs = [(name, enc, cfg.seed) for name, enc in nets.items()]
        jobs += [
            (f"searched_seed{cfg.seed + i}", result.arch, cfg.seed + i) for i in range(1, cfg.noise_seeds + 1)
        ]
        for name, enc, seed in jobs:
            t0 = time.perf_counter()
            say(f"retrain {name}")
            out = run / ("retrain" if name == "searched" else name)
            res = retrain(
                enc, train_set=train_set, eval_set=val_set, num_classes=cfg.num_classes,
                in_chans=cfg.in_chans, out_dir=out, teacher=teacher_model, data_info=info,
                config=RetrainConfig(
                    epochs=cfg.retrain_epochs, batch_size=cfg.retrain_batch_size, seed=seed,
                    max_steps_per_epoch=cfg.retrain_max_steps,
                ),
                progress=progress,
            )  # fmt: skip
            if name in nets:
                trained[name] = load_retrained(out)
            report.setdefault("retrain", {})[name] = {
                "top1": res.top1, "kept": res.kept, "epochs": res.epochs, "seconds": round(res.seconds, 1),
                "weights": _in_run(res.weights, run), "seed": seed,
            }  # fmt: skip
            timed(f"retrain {name}", t0)
        report["comparison"] = compare_to_searched(report["retrain"], n_eval=len(val_set), seed=cfg.seed)

    t0 = time.perf_counter()
    say("export and measure")
    import timm

    models = trained or {
        n: timm.create_model("dna_net", arch=e, num_classes=cfg.num_classes, in_chans=cfg.in_chans)
        for n, e in nets.items()
    }
    report["export"] = {
        n: export_onnx_checked(m, run / f"{'best' if n == 'searched' else n}.onnx", input_size=cfg.input_size,
                               in_chans=cfg.in_chans)
        for n, m in models.items()
    }  # fmt: skip
    if lat_model is not None and lat_info is not None and not lat_model.estimated:
        measured, speed = measure_latency(models, cfg, lat_info["spec"], lat_model.table)
        report["latency"] = {}
        for n in models:
            pred = lat_model.network_cost(nets[n])
            row = {
                "predicted_ms": pred,
                "measured_ms": measured[n],
                "error_pct": 100 * (pred - measured[n]) / measured[n],
            }
            if speed is not None:  # the prediction at the machine's speed now (calibration networks re-timed)
                row.update(
                    machine_speed_vs_table=speed,
                    predicted_now_ms=pred * speed,
                    error_now_pct=100 * (pred * speed - measured[n]) / measured[n],
                )
            report["latency"][n] = row  # fmt: skip
    timed("export+measure", t0)
    report["seconds"] = {**timings, "total": round(time.perf_counter() - t_start, 1)}
    _write_json(run / "report.json", report)
    return report
