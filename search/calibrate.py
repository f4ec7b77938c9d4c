"""Calibrate a supernet run: train K networks of its space alone, fit the accuracy predictor.

``dna supernet calibrate RUN --nets K`` draws K networks of the run's space spread over its
MACs range (seeded), trains each from scratch on the run's data with
:func:`dna_zoo.search.retrain.retrain` (short: one capped epoch by default), fits
:func:`~dna_zoo.search.strategy.predictor.fit_predictor` on the measured top-1 and writes
``calibration.json`` beside the ratings. Its leave-one-out figures next to the plain rating's
and MACs' on the same nets are the self-check: do the ratings rank networks of this data
better than their size does?

Layout (resumable: a finished net is never retrained, an interrupted one resumes from its
checkpoint)::

    RUN/calibration/k10-s0-<config hash>/plan.json   the nets drawn and how they are trained
    RUN/calibration/k10-s0-<config hash>/net_00/     a retrain output (checkpoint.pt, config.json, ...)
    RUN/calibration.json                             the fitted predictor (beside the ratings)

The folder is keyed by what decides the top-1 figures (K, seed, training settings), not by
the ratings: after re-rating the supernet, calibrating again reuses the trained nets.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from dna_zoo.arch import ArchEncoding
from dna_zoo.errors import ConfigError
from dna_zoo.progress import Reporter, reporter_or_null
from dna_zoo.search.ratings import Ratings
from dna_zoo.search.space import SearchSpace
from dna_zoo.search.strategy.cost import MacsCost
from dna_zoo.search.strategy.predictor import AccuracyPredictor, fit_predictor, min_networks

log = logging.getLogger(__name__)
T = TypeVar("T")

CALIBRATION = "calibration.json"
PLAN_FORMAT = "dna-zoo-calibration-plan"
PLAN_VERSION = 1
#: Networks drawn at random to choose the K from, when the space has more than this.
POOL = 20000


@dataclass(frozen=True)
class CalibrateConfig:
    """How many networks and how each is trained (``retrain``'s settings, kept short)."""

    nets: int = 10
    epochs: int = 1
    #: training steps per epoch at most (None: the whole training split)
    steps_per_epoch: int | None = 200
    batch_size: int = 128
    #: evaluation batches (of 256 images) at most; None: the whole held-out split
    eval_batches: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.nets < 1 or self.epochs < 1 or self.batch_size < 1:
            raise ConfigError(f"--nets ({self.nets}), --epochs and --batch-size must be positive")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ConfigError("--steps-per-epoch must be positive")
        if self.eval_batches is not None and self.eval_batches < 1:
            raise ConfigError("--eval-batches must be positive")

    def retrain_config(self):
        from dna_zoo.search.retrain import RetrainConfig

        return RetrainConfig(
            epochs=self.epochs, batch_size=self.batch_size, seed=self.seed,
            max_steps_per_epoch=self.steps_per_epoch, eval_max_batches=self.eval_batches,
        )  # fmt: skip

    def key(self) -> str:
        """The work folder's name: K, seed and a hash of the training settings."""
        digest = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:8]
        return f"k{self.nets}-s{self.seed}-{digest}"


@dataclass
class NetRecord:
    """One calibration net: its encoding, MACs and measured top-1; ``seconds``: its training and
    evaluation wall time in this call, or for a net reused from an earlier call its recorded
    training time."""

    index: int
    arch: ArchEncoding
    macs: int
    top1: float
    seconds: float
    resumed: bool = False
    reused: bool = False


@dataclass
class CalibrationResult:
    predictor: AccuracyPredictor
    path: Path
    work_dir: Path
    nets: list[NetRecord] = field(default_factory=list)

    @property
    def trained_seconds(self) -> list[float]:
        """Training seconds of the nets trained in this call (not those reused)."""
        return [n.seconds for n in self.nets if not n.reused]


# --- drawing the networks ------------------------------------------------------------------------
def _all_choices(space: SearchSpace) -> Iterator[tuple[int, ...]]:
    return itertools.product(*(range(space.num_candidates(b)) for b in range(len(space.blocks))))


def draw_networks(
    space: SearchSpace, k: int, *, seed: int, input_size: int, in_chans: int = 3, num_classes: int = 10
) -> list[ArchEncoding]:
    """K distinct networks of ``space`` spread evenly over its log-MACs range (smallest to largest).

    Target log MACs are K evenly spaced values from the smallest network's to the largest's;
    each target takes the nearest network not taken yet, from every network of the space (or
    :data:`POOL` random ones and the two extremes, in a big space) in a seeded random order.
    """
    total = space.num_networks()
    if k > total:
        raise ConfigError(
            f"--nets {k} is more than the {total} networks of space '{space.name}'",
            hint=f"use --nets {total} or fewer",
        )
    cost = MacsCost(space, input_size=input_size, in_chans=in_chans, num_classes=num_classes)
    cands = [list(space.block_candidates(b)) for b in range(len(space.blocks))]
    macs = [np.array([cost.cost(c) for c in block]) for block in cands]
    rng = np.random.default_rng(seed)
    if total <= POOL:
        pool = np.array(list(_all_choices(space)), dtype=np.int64).reshape(total, len(cands))
    else:
        random = np.column_stack([rng.integers(0, len(block), POOL) for block in cands])
        extremes = np.array([[int(np.argmin(m)) for m in macs], [int(np.argmax(m)) for m in macs]])
        pool = np.unique(np.vstack([random, extremes]), axis=0)
    pool = pool[rng.permutation(len(pool))]
    log_macs = np.log(cost.fixed_cost() + sum(m[pool[:, b]] for b, m in enumerate(macs)))
    targets = np.linspace(log_macs.min(), log_macs.max(), k) if k > 1 else np.array([np.median(log_macs)])
    free = np.ones(len(pool), dtype=bool)
    picked = []
    for t in targets:
        dist = np.where(free, np.abs(log_macs - t), np.inf)
        i = int(np.argmin(dist))
        free[i] = False
        picked.append(i)
    picked.sort(key=lambda i: log_macs[i])
    return [
        space.to_encoding([cands[b][j] for b, j in enumerate(pool[i])], name=f"calib_{n:02d}")
        for n, i in enumerate(picked)
    ]


# --- the run ---------------------------------------------------------------------------------------
class _Prefixed(Reporter):
    """Every bar of the inner loops says which calibration net it belongs to."""

    def __init__(self, inner: Reporter, prefix: str) -> None:
        self.inner, self.prefix = inner, prefix

    def track(self, items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
        yield from self.inner.track(items, f"{self.prefix}: {description}", total)


@dataclass(frozen=True)
class CalibrationInputs:
    """Everything a calibration needs, checked before anything is written."""

    run_dir: Path
    ratings: Ratings
    ratings_path: Path
    data_spec: str
    input_size: int
    in_chans: int


def default_ratings(run_dir: Path) -> Path:
    """``RUN/ratings.json`` (``dna supernet rate``'s default), else the pipeline's
    ``RUN/../ratings.json`` when it rates this very run."""
    own = run_dir / "ratings.json"
    beside = run_dir.parent / "ratings.json"
    if not own.is_file() and beside.is_file():
        try:
            rated = json.loads(beside.read_text()).get("meta", {}).get("run_dir")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            rated = None
        if rated and Path(rated).resolve() == run_dir.resolve():
            return beside
    return own


def check_inputs(
    run_dir: str | Path, config: CalibrateConfig, *, ratings: str | Path | None = None
) -> CalibrationInputs:
    """The run, its ratings and the size of K, or one clear error (nothing is written)."""
    from dna_zoo.search.supernet.run import RunDir

    rd = RunDir(run_dir)
    desc = rd.read()
    space = rd.space()
    path = Path(ratings) if ratings is not None else default_ratings(rd.path)
    if not path.is_file():
        raise ConfigError(
            f"no ratings at {path}: calibration fits the ratings of the run's candidates",
            hint=f"rate the run first: `dna supernet rate {rd.path}`",
        )
    r = Ratings.load(path)
    if r.space.identity != space.identity:
        raise ConfigError(
            f"{path} rates search space '{r.space.name}' ({r.space.identity}), run {rd.path} trained "
            f"'{space.name}' ({space.identity})",
            hint=f"rate this run: `dna supernet rate {rd.path}`",
        )
    missing = r.missing()
    if missing:
        raise ConfigError(
            f"{path} lacks {len(missing)} candidates of the space (e.g. {missing[0]})",
            hint=f"rate the whole space: `dna supernet rate {rd.path}`",
        )
    total, need = space.num_networks(), min_networks(space)
    if config.nets > total:
        raise ConfigError(
            f"--nets {config.nets} is more than the {total} networks of space '{space.name}'",
            hint=f"use --nets {total} or fewer",
        )
    if config.nets < need:
        raise ConfigError(
            f"--nets {config.nets} is too few to fit the accuracy predictor of space '{space.name}': it "
            f"needs at least {need} ({need - 2} features: one rating per block, log MACs, depth; + 2)",
            hint=f"use --nets {min(total, max(need, 10))}",
        )
    opts = desc["options"]
    return CalibrationInputs(
        rd.path, r, path, str(desc["data_spec"]), int(opts["input_size"]), int(opts.get("in_chans", 3))
    )


def _read_plan(path: Path) -> dict[str, Any]:
    from dna_zoo.io import check_format, read_json

    plan = read_json(path, what="calibration plan")
    check_format(
        plan, origin=str(path), what="dna-zoo calibration plan", format=PLAN_FORMAT, version=PLAN_VERSION,
        redo=f"move {path.parent} away to calibrate from scratch",
    )  # fmt: skip
    return plan


def calibrate_run(
    run_dir: str | Path,
    *,
    config: CalibrateConfig = CalibrateConfig(),
    ratings: str | Path | None = None,
    progress: Reporter | None = None,
    on_net: Callable[[NetRecord, int], None] | None = None,
) -> CalibrationResult | None:
    """Train ``config.nets`` networks of the run's space, fit the predictor, write calibration.json.

    ``ratings`` defaults to ``RUN/ratings.json``; the calibration is written beside it. Under
    torchrun every rank trains each net data-parallel; rank 0 fits and writes, and the other
    ranks return None. ``on_net(record, k)`` is called (rank 0) after each net.
    """
    from dna_zoo.io import atomic_write_json
    from dna_zoo.search.retrain import CONFIG, RetrainOutput, retrain, training_data
    from dna_zoo.search.supernet import distributed

    inputs = check_inputs(run_dir, config, ratings=ratings)
    space = inputs.ratings.space
    world = distributed.setup()
    work = inputs.run_dir / "calibration" / config.key()
    plan_path = work / "plan.json"
    old = _read_plan(plan_path) if plan_path.exists() else None
    loaded: list[Any] = []

    def data() -> Any:
        """The run's data, opened once, when a net has to be trained (resuming a finished
        calibration reads none)."""
        if not loaded:
            found = training_data(inputs.data_spec, input_size=inputs.input_size, in_chans=inputs.in_chans)
            if old is not None and found.info.get("identity", {}) != old["data"]:
                raise ConfigError(
                    f"the data of run {inputs.run_dir} is not the data {plan_path} was trained on",
                    hint=f"move {work} away to calibrate from scratch",
                )
            loaded.append(found)
        return loaded[0]

    num_classes = int(old["num_classes"]) if old is not None else int(data().info["num_classes"])
    nets = draw_networks(
        space, config.nets, seed=config.seed, input_size=inputs.input_size, in_chans=inputs.in_chans,
        num_classes=num_classes,
    )  # fmt: skip
    cost = MacsCost(space, input_size=inputs.input_size, in_chans=inputs.in_chans, num_classes=num_classes)
    plan = {
        "format": PLAN_FORMAT,
        "version": PLAN_VERSION,
        "space_identity": space.identity,
        "config": asdict(config),
        "data": old["data"] if old is not None else data().info.get("identity", {}),
        "input_size": inputs.input_size,
        "in_chans": inputs.in_chans,
        "num_classes": num_classes,
        "nets": [enc.to_arch_def() for enc in nets],
    }
    if old is not None:
        if json.loads(json.dumps(plan)) != old:
            raise ConfigError(
                f"{plan_path} was drawn for other networks or settings than this calibration",
                hint=f"move {work} away to calibrate from scratch",
            )
    elif world.is_main:
        atomic_write_json(plan_path, plan)
    distributed.barrier(world)
    rep = reporter_or_null(progress if world.is_main else None)
    records: list[NetRecord] = []
    for i, enc in enumerate(nets):
        out = work / f"net_{i:02d}"
        macs = round(cost.network_cost(enc))
        if (out / CONFIG).is_file():
            done = RetrainOutput.load(out / CONFIG)
            if done.arch.to_arch_def() != enc.to_arch_def() or done.top1 is None:
                raise ConfigError(f"{out} holds another network than the plan's", hint=f"move {work} away")
            rec = NetRecord(
                i, enc, macs, float(done.top1), float(done.train.get("seconds", 0.0)), reused=True
            )
        else:
            train_set, val_set, info = data()
            t0 = time.perf_counter()
            res = retrain(
                enc, train_set=train_set, eval_set=val_set, num_classes=num_classes, in_chans=inputs.in_chans,
                out_dir=out, config=config.retrain_config(), data_info=info, resume=True,
                progress=_Prefixed(rep, f"net {i + 1}/{len(nets)} ({macs / 1e6:.1f}M MACs)"),
            )  # fmt: skip
            rec = NetRecord(
                i, enc, macs, float(res.top1), time.perf_counter() - t0, resumed=res.resumed_from_step > 0
            )
        distributed.barrier(world)
        records.append(rec)
        if world.is_main and on_net is not None:
            on_net(rec, len(nets))
    if not world.is_main:
        return None
    predictor = fit_predictor(
        inputs.ratings, nets, [r.top1 for r in records], input_size=inputs.input_size,
        in_chans=inputs.in_chans, num_classes=num_classes, seed=config.seed,
    )  # fmt: skip
    predictor.meta = {
        "what": "stand-alone top-1 (%) after a short retraining from scratch, on the run's held-out split",
        "run": inputs.run_dir.name,
        "ratings_file": inputs.ratings_path.name,
        "work_dir": str(work.relative_to(inputs.run_dir)),
        "config": asdict(config),
        "data": plan["data"],
        "seconds_per_net": [round(r.seconds, 1) for r in records],
    }
    path = predictor.save(inputs.ratings_path.parent / CALIBRATION)
    return CalibrationResult(predictor, path, work, records)


def verdict(predictor: AccuracyPredictor) -> str:
    """One line: do the ratings rank these nets better than MACs, worse, or can we not tell?"""
    loo = predictor.loo

    def say(what: str, ci: list[float]) -> str:
        lo, hi = ci
        if lo > 0:
            return f"{what} ranks these nets better than MACs"
        if hi < 0:
            return f"{what} ranks these nets worse than MACs"
        return f"{what}: cannot tell it from MACs"

    ci, plain = loo["tau_minus_macs_ci"], loo["rating_tau_minus_macs_ci"]
    return (
        f"{say('the calibrated predictor', ci)} (tau difference CI [{ci[0]:+.2f}, {ci[1]:+.2f}]); "
        f"{say('the plain rating', plain)} ([{plain[0]:+.2f}, {plain[1]:+.2f}]); paired bootstrap 95%, "
        f"{predictor.k} nets"
    )
