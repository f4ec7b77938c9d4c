"""Ranking quality on Fashion-MNIST: Kendall tau of the DNA rating vs stand-alone accuracy,
next to a single-supernet (SPOS-style) rating of the same networks and the seed-noise floor.

Design (everything at 32 px, 2 threads, channels_last, deterministic seeds):

* A bench space where choices matter at this resolution: narrow blocks (24/32/48/64
  channels) so networks are capacity-limited, strides 2/1/2/1 so every searched block works
  on 8x8 or 4x4 maps (none on 2x2 / 1x1, where kernel sizes are equivalent), depth choices
  1/2/3 per block, ops MBConv e1/e3/e6 x k3/k5 (no SE): 258 candidates per block, a cost
  range of about 10x in MACs.
* A teacher whose stages fit that layout (a wider dna_net, trained here with
  ``train_teacher`` and cached in the work directory).
* ``--nets`` networks drawn at random and stratified by MACs (evenly spaced in log-MACs over
  the 0.5-99.5% range of many random draws), each trained alone from scratch with ``--seeds``
  seeds (``retrain``: timm AdamW + cosine, label smoothing, zero-init residual BN) and
  evaluated on the Fashion-MNIST test split.
* DNA: block-wise supernet (``train_supernet``) + rating of every candidate
  (``rate_supernet``: BN re-estimated, loss to the teacher normalised by its variance);
  a network's rating is the sum of its candidates' block losses (lower is better).
* SPOS-style: ONE single-path supernet (``dna_zoo.search.supernet.spos``) trained end to end with
  cross-entropy, one uniformly sampled path per step, the same data and step budget as the
  DNA supernet; a network's rating is its held-out top-1 with inherited weights after BN
  re-estimation.
* Both ratings use the same held-out split, carved from the training images and disjoint
  from everything trained on (``--train-images`` first images train, images 55000+ rate);
  stand-alone accuracy is measured on the separate test split.
* Figures: Kendall tau-b and Spearman rho of each rating vs the seed-mean stand-alone
  accuracy, with 95% bootstrap intervals over networks (fixed seed); the paired difference
  DNA - SPOS; the noise floor (tau between seed 0 and seed 1 accuracies, within-net seed
  spread vs between-net spread); params and MACs as reference proxies.

Resumable: every stage's output (teacher, supernet run, ratings, each stand-alone training
with its checkpoint) is kept in ``--work`` (default: under the dna-zoo cache, named by the
settings); running the same command again continues where it stopped.

    nice -n 19 .venv/bin/python bench/ranking_tau.py --quick      # smoke run, a few minutes
    nice -n 19 .venv/bin/python bench/ranking_tau.py              # the full run
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import platform
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from dna_zoo.arch import ArchEncoding, Layer, Op
from dna_zoo.search.space import BlockSpec, Candidate, SearchSpace
from dna_zoo.search.strategy.cost import MacsCost, ParamsCost
from dna_zoo.search.supernet.data import DataSource, FashionMNIST

log = logging.getLogger("ranking_tau")
RESULTS = Path(__file__).resolve().parent / "results"
#: first training image of the held-out split both ratings are measured on
VAL_START = 55000


@dataclass(frozen=True)
class Sizes:
    """Data, training and rating sizes shared by the ranking benchmarks (a work directory is
    named by a hash of all of a run's settings)."""

    train_images: int = 20000
    val_images: int = 5000
    test_images: int = 10000
    teacher_images: int = 40000
    teacher_epochs: int = 2
    supernet_epochs: int = 2
    supernet_batch_size: int = 64
    supernet_max_steps: int | None = None
    rate_bn_batches: int = 4
    rate_eval_batches: int = 16
    rate_batch_size: int = 64
    retrain_epochs: int = 3
    retrain_batch_size: int = 128
    retrain_max_steps: int | None = None
    draws: int = 20000
    bootstrap: int = 2000
    seed: int = 0

    def identity(self) -> dict[str, Any]:
        """The fields that name a run's work directory (:meth:`tag`)."""
        return dataclasses.asdict(self)

    def tag(self) -> str:
        text = json.dumps(self.identity(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:10]


@dataclass(frozen=True)
class Settings(Sizes):
    """Sizes of one ``ranking_tau`` run."""

    nets: int = 15
    seeds: int = 2


QUICK = Settings(
    nets=6,
    train_images=2048,
    val_images=512,
    test_images=1000,
    teacher_images=2048,
    teacher_epochs=1,
    supernet_epochs=1,
    supernet_max_steps=20,
    rate_bn_batches=2,
    rate_eval_batches=2,
    retrain_epochs=1,
    retrain_max_steps=12,
    draws=4000,
)


# --- the space, the teacher, the data -----------------------------------------------------------
#: the bench spaces by name: block widths, head width and depth choices of the same layout
#: (strides 2/1/2/1, MBConv e1/e3/e6 x k3/k5 without SE: 258 candidates per block at depths 1-3)
SPACES: dict[str, tuple[tuple[int, int, int, int], int, tuple[int, ...]]] = {
    # ranking_tau's and ranking_decisions' space: capacity-limited at 32 px
    "tau-fmnist32": ((24, 32, 48, 64), 256, (1, 2, 3)),
    # two thirds of the widths and half the head: nets further down the accuracy-vs-size curve,
    # where ranking_decisions' smallest band spreads most and its seeds agree best
    "narrow-fmnist32": ((16, 24, 32, 48), 128, (1, 2, 3)),
    # wider blocks (1.3-1.5x) and a fourth depth (1,554 candidates per block): a wider capacity
    # range, and wider layers, whose seeds the narrow space suggests agree better
    "wide-fmnist32": ((32, 48, 64, 96), 256, (1, 2, 3, 4)),
}


def bench_space(name: str = "tau-fmnist32") -> SearchSpace:
    """The named space of :data:`SPACES`: capacity-limited blocks on 8x8 and 4x4 maps, MBConv
    e1/e3/e6 x k3/k5 without SE."""
    if name not in SPACES:
        raise SystemExit(f"unknown bench space '{name}' (one of {', '.join(SPACES)})")
    widths, head, depths = SPACES[name]
    ops = tuple(Op("ir", k, e, 0.0) for e in (1, 3, 6) for k in (3, 5))
    return SearchSpace(
        name=name,
        blocks=tuple(BlockSpec(c, st, depths) for c, st in zip(widths, (2, 1, 2, 1), strict=True)),
        ops=ops,
        stem_size=16,
        first_layer=Layer(Op("ds", 3, 1, 0.0), 16, 1),
        num_features=head,
    )


def teacher_encoding() -> ArchEncoding:
    """A wider network with the space's stage layout (16/8/8/4/4 px), e6 k5 layers."""

    def stage(chs: int, stride: int, n: int) -> tuple[Layer, ...]:
        return tuple(Layer(Op("ir", 5, 6, 0.0), chs, stride if i == 0 else 1) for i in range(n))

    stages = ((Layer(Op("ds", 3, 1, 0.0), 24, 1),), stage(40, 2, 2), stage(48, 1, 2), stage(80, 2, 3))
    return ArchEncoding((*stages, stage(96, 1, 2)), stem_size=24, num_features=512, name="tau_teacher")


class Rows(Dataset):
    """Images ``start .. start + count`` of a :class:`FashionMNIST` split (a held-out slice)."""

    def __init__(self, base: FashionMNIST, start: int, count: int) -> None:
        if start + count > len(base):
            raise ValueError(f"rows {start}..{start + count} exceed the {len(base)} images")
        self.base, self.start, self.count = base, start, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.base[self.start + i]

    def batch(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        return self.base.batch([self.start + int(i) for i in indices])


@dataclass
class Data:
    train: DataSource
    val: DataSource
    test: DataSource


def open_data(s: Settings) -> Data:
    full = FashionMNIST("train", input_size=32)
    if max(s.train_images, s.teacher_images) > VAL_START:
        raise SystemExit(f"at most {VAL_START} training images (images {VAL_START}+ are the held-out split)")
    train = DataSource(Rows(full, 0, s.train_images), {"split": "train", "rows": [0, s.train_images]})
    val = DataSource(
        Rows(full, VAL_START, s.val_images), {"split": "train", "rows": [VAL_START, VAL_START + s.val_images]}
    )
    test = DataSource(FashionMNIST("test", input_size=32, limit=s.test_images), {"split": "test"})
    return Data(train, val, test)


# --- choosing the networks ------------------------------------------------------------------------
def pick_networks(space: SearchSpace, s: Settings) -> list[list[Candidate]]:
    """``s.nets`` distinct random networks, evenly spaced in log-MACs over the 0.5-99.5% range."""
    rng = random.Random(s.seed)
    cands = [list(space.block_candidates(b)) for b in range(len(space.blocks))]
    by_depth = [
        {d: [c for c in cs if c.depth == d] for d in space.blocks[b].depths} for b, cs in enumerate(cands)
    ]
    macs = MacsCost(space, input_size=32, num_classes=10)
    cost = {c.key: macs.cost(c) for cs in cands for c in cs}
    draws = []
    for _ in range(s.draws):  # per block: a depth uniformly, then ops uniformly (as the samplers do)
        net = [rng.choice(by_depth[b][rng.choice(space.blocks[b].depths)]) for b in range(len(space.blocks))]
        draws.append((sum(cost[c.key] for c in net), net))
    draws.sort(key=lambda t: t[0])
    lo, hi = draws[len(draws) // 200][0], draws[len(draws) * 199 // 200][0]
    targets = np.exp(np.linspace(math.log(lo), math.log(hi), s.nets))
    chosen, seen = [], set()
    for t in targets:
        order = sorted(range(len(draws)), key=lambda i: abs(math.log(draws[i][0] / t)))
        i = next(i for i in order if tuple(c.key for c in draws[i][1]) not in seen)
        seen.add(tuple(c.key for c in draws[i][1]))
        chosen.append(draws[i][1])
    return chosen


# --- work directory state ---------------------------------------------------------------------------
class Work:
    """The work directory: stage outputs and accumulated stage times (``state.json``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.state_file = path / "state.json"
        self.state = json.loads(self.state_file.read_text()) if self.state_file.exists() else {}

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The work directory's lock (several processes, ``--shard``, may share it)."""
        import fcntl

        with open(self.path / "state.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _write(self) -> None:
        """Under the lock: keys another process (``--shard``) wrote since this one read the
        file are kept, then this process's state is written."""
        from dna_zoo.io import atomic_write_json

        if self.state_file.exists():
            disk = json.loads(self.state_file.read_text())
            self.state = {**{k: v for k, v in disk.items() if k not in self.state}, **self.state}
        atomic_write_json(self.state_file, self.state)

    def save(self) -> None:
        with self._locked():
            self._write()

    def claim(self, name: str) -> bool:
        """Whether this process may work on ``name``: True when it holds the claim (a file
        ``claims/<name>`` with its pid; one left by a process that is gone is taken over),
        False while another live process holds it. Lets several processes share one queue."""
        path = self.path / "claims" / name
        path.parent.mkdir(exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                text = path.read_text().strip()
                if not text:  # being written by its owner this instant
                    return False
                if int(text) == os.getpid():
                    return True
                try:
                    os.kill(int(text), 0)
                    return False  # its owner is alive
                except ProcessLookupError:
                    path.unlink(missing_ok=True)  # left by a killed process: take it over
                    continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            return True
        return False

    def release(self, name: str) -> None:
        (self.path / "claims" / name).unlink(missing_ok=True)

    def add_time(self, stage: str, wall: float, cpu: float) -> None:
        """Add wall and process CPU seconds (both threads) to a stage (kept across resumes).

        Under a lock and re-read from disk first: several processes (``--shard``) may share
        the work directory."""
        with self._locked():
            if self.state_file.exists():
                disk = json.loads(self.state_file.read_text())
                for key in ("seconds", "cpu_seconds"):
                    self.state[key] = disk.get(key, {})
            for key, v in (("seconds", wall), ("cpu_seconds", cpu)):
                t = self.state.setdefault(key, {})
                t[stage] = round(t.get(stage, 0.0) + v, 1)
            self._write()


class Clock:
    """Wall and process CPU time since creation (CPU time is what the run costs on a shared
    machine; wall time depends on what else runs)."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def spent(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def stage_teacher(work: Work, s: Settings) -> dict[str, Any]:
    from dna_zoo.search.supernet.teacher_train import teacher_file_top1, train_teacher

    arch_file = work.path / "teacher_arch.json"
    weights = work.path / "teacher.safetensors"
    if not arch_file.exists():
        arch_file.write_text(json.dumps({"arch": teacher_encoding().to_dict()}, indent=1))
    if not weights.exists():
        t0 = Clock()
        train_teacher(
            str(arch_file),
            out=weights,
            epochs=s.teacher_epochs,
            limit=s.teacher_images,
            eval_limit=s.test_images,
            seed=s.seed,
        )
        work.add_time("teacher", *t0.spent())
    return {
        "arch": arch_file.name,  # files of the work directory
        "weights": weights.name,
        "arch_def": teacher_encoding().to_arch_def(),
        "test_top1": teacher_file_top1(weights),
        "epochs": s.teacher_epochs,
        "train_images": s.teacher_images,
        "trained_by": "dna_zoo.search.supernet.teacher_train.train_teacher (cached in the work dir)",
    }


def stage_dna(work: Work, space: SearchSpace, teacher: dict[str, Any], data: Data, s: Settings):
    from dna_zoo.search.ratings import Ratings
    from dna_zoo.search.supernet.rate import RateConfig, prepare_data, rate_supernet
    from dna_zoo.search.supernet.run import RunDir
    from dna_zoo.search.supernet.train import load_supernet, teacher_of_run, train_supernet

    out = work.path / "dna_ratings.json"
    if out.exists():
        return Ratings.load(out)
    sdir = work.path / "dna_supernet"
    t0 = Clock()
    res = train_supernet(
        sdir,
        space=space,
        teacher=str(work.path / teacher["arch"]),  # recorded by name: files of the work directory
        teacher_weights=str(work.path / teacher["weights"]),
        data="builtin",
        config={
            "epochs": s.supernet_epochs,
            "batch_size": s.supernet_batch_size,
            "input_size": 32,
            "limit": s.train_images,
            "max_steps": s.supernet_max_steps,
            "seed": s.seed,
            "ckpt_every": 100,
            "log_every": 50,
        },
        resume=RunDir(sdir).exists(),
    )
    work.add_time("dna_supernet", *t0.spent())
    work.state["dna_supernet_steps"] = res.total_steps
    t0 = Clock()
    teach = teacher_of_run(sdir)
    supernet, desc = load_supernet(sdir, teach)
    cfg = RateConfig(
        batch_size=s.rate_batch_size,
        bn_batches=s.rate_bn_batches,
        eval_batches=s.rate_eval_batches,
        seed=s.seed,
    )
    rdata = prepare_data(teach, data.train, data.val, cfg)
    losses, facts = rate_supernet(supernet, rdata, cfg)
    ratings = Ratings(
        space=space,
        losses=losses,
        normalization=cfg.normalization,
        input_size=32,
        teacher=desc["teacher"],
        data={"train": desc["data"], "bn": data.train.identity, "held_out": data.val.identity},
        meta={"run_dir": str(sdir), **facts},
    )
    ratings.save(out)
    work.add_time("dna_rating", *t0.spent())
    return ratings


def stage_spos(
    work: Work,
    space: SearchSpace,
    nets: list[list[Candidate]],
    data: Data,
    s: Settings,
    *,
    name: str = "spos",
    epochs: int | None = None,
    max_steps: int | None = None,
) -> list[dict[str, Any]]:
    """Train (or reuse) a single-path supernet for ``epochs`` (default: the DNA supernet's)
    and rate the networks with it; files and times are kept under ``name``."""
    from dna_zoo.io import atomic_write_json
    from dna_zoo.search.supernet.spos import (
        SinglePathSupernet,
        SposConfig,
        SposRateConfig,
        path_of,
        rate_paths,
        train_spos,
    )
    from dna_zoo.weights import read_state_dict, save_safetensors

    out = work.path / f"{name}_ratings.json"
    if out.exists():
        return json.loads(out.read_text())
    weights = work.path / f"{name}_supernet.safetensors"
    torch.manual_seed(s.seed)
    supernet = SinglePathSupernet(space, num_classes=10)
    if weights.exists():
        supernet.load_state_dict(read_state_dict(weights))
    else:
        t0 = Clock()
        cfg = SposConfig(
            epochs=epochs or s.supernet_epochs,
            batch_size=s.supernet_batch_size,
            seed=s.seed,
            max_steps=max_steps if epochs else s.supernet_max_steps,
        )
        res = train_spos(supernet, data.train, cfg)
        sd = {k: v.contiguous() for k, v in supernet.state_dict().items()}
        save_safetensors(sd, weights, metadata={"steps": str(res.steps)})
        work.state[f"{name}_supernet_steps"] = res.steps
        work.state[f"{name}_config"] = dataclasses.asdict(cfg)
        work.state[f"{name}_last_train_loss"] = res.last_loss
        work.add_time(f"{name}_supernet", *t0.spent())
    t0 = Clock()
    rcfg = SposRateConfig(bn_batches=s.rate_bn_batches, batch_size=s.rate_batch_size, seed=s.seed)
    rows = rate_paths(supernet, [path_of(space, n) for n in nets], data.train, data.val, rcfg)
    atomic_write_json(out, rows)
    work.add_time(f"{name}_rating", *t0.spent())
    return rows


def train_standalone(
    work: Work,
    space: SearchSpace,
    net: list[Candidate],
    index: int,
    seed: int,
    data: Data,
    s: Any,
    subdir: str = "standalone",
) -> tuple[float, float]:
    """Network ``index`` trained alone with ``seed`` (cached in ``subdir`` of the work directory;
    resumed from its checkpoint): its test top-1 and training seconds."""
    from dna_zoo.search.retrain import CONFIG, RetrainConfig, retrain

    out = work.path / subdir / f"net{index:02d}-seed{seed}"
    if not (out / CONFIG).exists():
        t0 = Clock()
        cfg = RetrainConfig(
            epochs=s.retrain_epochs,
            batch_size=s.retrain_batch_size,
            ema_decay=None,
            seed=s.seed * 1000 + seed,
            checkpoint_every=100,
            max_steps_per_epoch=s.retrain_max_steps,
        )
        retrain(
            space.to_encoding(net, name=f"net{index:02d}"),
            train_set=data.train.dataset,
            eval_set=data.test.dataset,
            num_classes=10,
            in_chans=3,
            out_dir=out,
            config=cfg,
            resume=True,
        )
        wall, cpu = t0.spent()
        work.add_time(subdir, wall, cpu)
        log.info("stand-alone net%02d seed %d: %.0f s wall, %.0f s CPU", index, seed, wall, cpu)
    cfg_json = json.loads((out / CONFIG).read_text())
    return float(cfg_json["dna_zoo"]["metrics"]["top1"]), float(cfg_json["dna_zoo"]["train"]["seconds"])


def stage_standalone(work: Work, space: SearchSpace, nets: list[list[Candidate]], data: Data, s: Settings):
    """Each network x each seed, trained alone; seed 0 of every net first, then seed 1, ..."""
    acc = [[math.nan] * s.seeds for _ in nets]
    secs = [[math.nan] * s.seeds for _ in nets]
    for seed in range(s.seeds):
        for i, net in enumerate(nets):
            acc[i][seed], secs[i][seed] = train_standalone(work, space, net, i, seed, data, s)
    return acc, secs


# --- statistics ---------------------------------------------------------------------------------------
def _tau(x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(x, y).statistic)


def _rho(x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)


def correlations(
    scores: dict[str, np.ndarray],
    target: np.ndarray,
    *,
    resamples: int,
    seed: int,
    paired: list[tuple[str, str]],
) -> dict[str, Any]:
    """tau and rho of every score vs ``target`` with 95% bootstrap intervals over networks
    (the same resamples for every score, so the paired difference has an interval too)."""
    rng = np.random.default_rng(seed)
    n = len(target)
    idx = rng.integers(0, n, size=(resamples, n))
    out: dict[str, Any] = {}
    boots: dict[str, np.ndarray] = {}
    for name, x in scores.items():
        bt = np.array([_tau(x[i], target[i]) for i in idx])
        br = np.array([_rho(x[i], target[i]) for i in idx])
        boots[name] = bt
        out[name] = {
            "tau": _tau(x, target),
            "tau_ci95": [float(np.nanpercentile(bt, 2.5)), float(np.nanpercentile(bt, 97.5))],
            "rho": _rho(x, target),
            "rho_ci95": [float(np.nanpercentile(br, 2.5)), float(np.nanpercentile(br, 97.5))],
        }
    for a, b in paired:
        d = boots[a] - boots[b]
        out[f"{a}-{b}"] = {
            "tau_difference": out[a]["tau"] - out[b]["tau"],
            "ci95": [float(np.nanpercentile(d, 2.5)), float(np.nanpercentile(d, 97.5))],
            "share_of_resamples_above_0": float(np.nanmean(d > 0)),
        }
    return out


def seed_sd(acc: np.ndarray) -> float:
    """The pooled within-net seed sd of a (nets, seeds) array."""
    return float(np.sqrt(np.mean(np.var(acc, axis=1, ddof=1))))


def noise_floor(acc: np.ndarray, *, resamples: int, seed: int) -> dict[str, Any]:
    """How well the ground truth ranks itself: seed 0 vs seed 1, and the spreads."""
    rng = np.random.default_rng(seed + 1)
    n = len(acc)
    idx = rng.integers(0, n, size=(resamples, n))
    a, b = acc[:, 0], acc[:, 1]
    bt = np.array([_tau(a[i], b[i]) for i in idx])
    within_sd = seed_sd(acc)
    between_sd = float(np.std(acc.mean(axis=1), ddof=1))
    return {
        "tau_seed0_vs_seed1": _tau(a, b),
        "tau_ci95": [float(np.nanpercentile(bt, 2.5)), float(np.nanpercentile(bt, 97.5))],
        "rho_seed0_vs_seed1": _rho(a, b),
        "within_net_seed_sd": within_sd,
        "within_net_seed_range_mean": float(np.mean(acc.max(1) - acc.min(1))),
        "within_net_seed_range_max": float(np.max(acc.max(1) - acc.min(1))),
        "between_net_sd_of_means": between_sd,
        "between_net_range_of_means": float(np.ptp(acc.mean(axis=1))),
        "signal_to_noise_sd": between_sd / within_sd if within_sd > 0 else math.inf,
    }


# --- output --------------------------------------------------------------------------------------------
def plot(path: Path, rows: list[dict[str, Any]], figs: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mean = np.array([r["acc_mean"] for r in rows])
    lo = mean - np.array([min(r["acc"]) for r in rows])
    hi = np.array([max(r["acc"]) for r in rows]) - mean
    panels = [
        ("dna_rating", "DNA rating (sum of normalised block losses; lower is better)", "dna"),
        ("spos_top1", "SPOS rating, same steps (held-out top-1 %)", "spos_top1"),
        (
            "spos_long_top1",
            "SPOS rating, about the DNA supernet's CPU time (held-out top-1 %)",
            "spos_long_top1",
        ),
        ("macs", "MACs (conv + linear)", "macs"),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(13, 9.5))
    for ax, (key, label, fig_key) in zip(axes.flat, panels, strict=True):
        x = np.array([r[key] for r in rows])
        ax.errorbar(x, mean, yerr=[lo, hi], fmt="o", capsize=3, ms=5)
        for r, xi, yi in zip(rows, x, mean, strict=True):
            ax.annotate(str(r["index"]), (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points")
        f = figs[fig_key]
        ax.set_title(f"tau = {f['tau']:.2f} [{f['tau_ci95'][0]:.2f}, {f['tau_ci95'][1]:.2f}]", fontsize=10)
        ax.set_xlabel(label, fontsize=9)
        if key == "macs":
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("stand-alone test top-1 % (mean, min-max over seeds)")
    nf = figs["noise_floor"]
    fig.suptitle(
        f"Fashion-MNIST 32px, {len(rows)} networks; noise floor tau(seed 0, seed 1) = "
        f"{nf['tau_seed0_vs_seed1']:.2f} [{nf['tau_ci95'][0]:.2f}, {nf['tau_ci95'][1]:.2f}]",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def versions() -> dict[str, str]:
    import scipy
    import timm

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
    }


def machine() -> dict[str, Any]:
    """The CPU (model and vector ISA: figures differ between AVX2 and AVX-512 machines)."""
    from dna_zoo.search.latency.devices import cpu_isa, cpu_model

    return {
        "cpu": cpu_model(),
        "isa": cpu_isa(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "os": platform.system(),
    }


def print_table(result: dict[str, Any]) -> None:
    f = result["figures"]
    print(
        f"\n{len(result['networks'])} networks x {result['settings']['seeds']} seeds; "
        f"space {result['space']['name']}"
    )
    print(f"{'rating':<34}{'Kendall tau [95% CI]':>26}{'Spearman rho [95% CI]':>28}")
    names = {
        "dna": "DNA (block losses, lower better)",
        "spos_top1": "SPOS same steps (top-1)",
        "spos_loss": "SPOS same steps (CE, lower better)",
        "spos_long_top1": "SPOS ~same CPU (top-1)",
        "spos_long_loss": "SPOS ~same CPU (CE, lower better)",
        "params": "params (proxy)",
        "macs": "MACs (proxy)",
    }
    for k, label in names.items():
        v = f[k]
        print(
            f"{label:<34}{v['tau']:>8.3f} [{v['tau_ci95'][0]:6.3f}, {v['tau_ci95'][1]:6.3f}]"
            f"{v['rho']:>10.3f} [{v['rho_ci95'][0]:6.3f}, {v['rho_ci95'][1]:6.3f}]"
        )
    nf = f["noise_floor"]
    print(
        f"{'noise floor: seed 0 vs seed 1':<34}{nf['tau_seed0_vs_seed1']:>8.3f} "
        f"[{nf['tau_ci95'][0]:6.3f}, {nf['tau_ci95'][1]:6.3f}]{nf['rho_seed0_vs_seed1']:>10.3f}"
    )
    for other in ("spos_top1", "spos_long_top1"):
        d = f[f"dna-{other}"]
        print(
            f"tau(DNA) - tau({other}) = {d['tau_difference']:.3f} [{d['ci95'][0]:.3f}, {d['ci95'][1]:.3f}] "
            f"(> 0 in {100 * d['share_of_resamples_above_0']:.0f}% of resamples)"
        )
    print(
        f"stand-alone top-1: between-net sd {nf['between_net_sd_of_means']:.2f} pts "
        f"(range {nf['between_net_range_of_means']:.2f}), within-net seed sd {nf['within_net_seed_sd']:.2f} "
        f"(mean range {nf['within_net_seed_range_mean']:.2f}, max {nf['within_net_seed_range_max']:.2f}); "
        f"signal/noise {nf['signal_to_noise_sd']:.1f}"
    )
    cpu = result["cpu_seconds"]
    print(
        "stage seconds (wall / CPU): "
        + ", ".join(f"{k} {v:.0f}/{cpu.get(k, 0):.0f}" for k, v in result["seconds"].items())
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny data, few steps, 6 networks")
    ap.add_argument("--out", type=Path, default=None, help="JSON output (a .png is written next to it)")
    ap.add_argument("--work", type=Path, default=None, help="work directory (resumable stage outputs)")
    for f in dataclasses.fields(Settings):
        ap.add_argument(f"--{f.name.replace('_', '-')}", type=int, default=None, help=f"default: {f.default}")
    ap.add_argument(
        "--spos-long-epochs",
        type=int,
        default=None,
        help="epochs of the second SPOS supernet, sized to about the DNA supernet's CPU time "
        "(default 7; quick: 2); not part of the work-directory hash",
    )
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stdout)
    torch.set_num_threads(args.threads)
    base = QUICK if args.quick else Settings()
    over = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(Settings)
        if getattr(args, f.name) is not None
    }
    s = dataclasses.replace(base, **over)
    if s.seeds < 2 or s.nets < 4:
        raise SystemExit("need at least 2 seeds and 4 networks")
    out = args.out or RESULTS / ("ranking_tau-quick.json" if args.quick else "ranking_tau.json")
    from dna_zoo.search.supernet.teacher_train import cache_dir

    work = Work(
        args.work or cache_dir() / "bench" / f"ranking_tau-{'quick' if args.quick else 'full'}-{s.tag()}"
    )
    log.info("work directory %s (rerun the same command to resume)", work.path)
    work.state["settings"] = dataclasses.asdict(s)
    work.save()

    t_all = Clock()
    space = bench_space()
    data = open_data(s)
    nets = pick_networks(space, s)
    params, macs = (
        ParamsCost(space, input_size=32, num_classes=10),
        MacsCost(space, input_size=32, num_classes=10),
    )
    log.info("stage 1/4: teacher")
    teacher = stage_teacher(work, s)
    log.info("teacher: %.2f%% test top-1", teacher["test_top1"])
    log.info("stage 2/4: DNA supernet + rating")
    ratings = stage_dna(work, space, teacher, data, s)
    log.info("stage 3/4: SPOS supernet + rating")
    spos = stage_spos(work, space, nets, data, s)
    long_epochs = args.spos_long_epochs or (2 if args.quick else 7)
    log.info("stage 3b/4: SPOS supernet with %d epochs (about the DNA supernet's CPU time)", long_epochs)
    long_steps = None
    if s.supernet_max_steps:
        long_steps = s.supernet_max_steps * long_epochs // s.supernet_epochs
    spos_long = stage_spos(
        work, space, nets, data, s, name=f"spos_e{long_epochs}", epochs=long_epochs, max_steps=long_steps
    )
    log.info("stage 4/4: stand-alone training (%d nets x %d seeds)", s.nets, s.seeds)
    acc, secs = stage_standalone(work, space, nets, data, s)

    rows = []
    for i, net in enumerate(nets):
        enc = space.to_encoding(net, name=f"net{i:02d}")
        block_losses = [ratings.loss(c) for c in net]
        rows.append(
            {
                "index": i,
                "candidates": [c.key for c in net],
                "arch_def": enc.to_arch_def(),
                "params": params.network_cost(enc),
                "macs": macs.network_cost(enc),
                "acc": acc[i],
                "acc_mean": float(np.mean(acc[i])),
                "train_seconds": secs[i],
                "dna_rating": float(sum(block_losses)),
                "dna_block_losses": block_losses,
                "spos_top1": spos[i]["top1"],
                "spos_loss": spos[i]["loss"],
                "spos_long_top1": spos_long[i]["top1"],
                "spos_long_loss": spos_long[i]["loss"],
            }
        )
    target = np.array([r["acc_mean"] for r in rows])
    scores = {
        "dna": -np.array([r["dna_rating"] for r in rows]),
        "spos_top1": np.array([r["spos_top1"] for r in rows]),
        "spos_loss": -np.array([r["spos_loss"] for r in rows]),
        "spos_long_top1": np.array([r["spos_long_top1"] for r in rows]),
        "spos_long_loss": -np.array([r["spos_long_loss"] for r in rows]),
        "params": np.array([r["params"] for r in rows]),
        "macs": np.array([r["macs"] for r in rows]),
    }
    figs = correlations(
        scores,
        target,
        resamples=s.bootstrap,
        seed=s.seed,
        paired=[("dna", "spos_top1"), ("dna", "spos_long_top1"), ("dna", "macs")],
    )
    figs["noise_floor"] = noise_floor(np.array(acc), resamples=s.bootstrap, seed=s.seed)
    # each rating against each seed's accuracies alone (how much one seed would move the answer)
    figs["per_seed_tau"] = {
        k: [_tau(v, np.array(acc)[:, j]) for j in range(s.seeds)] for k, v in scores.items()
    }
    work.add_time("bench_total", *t_all.spent())  # every session of this work directory
    result = {
        "bench": "ranking_tau",
        "quick": args.quick,
        "settings": dataclasses.asdict(s),
        "space": {**space.to_dict(), "identity": space.identity, "num_networks": space.num_networks()},
        "teacher": teacher,
        "data": {
            "dataset": "Fashion-MNIST (Debian dataset-fashion-mnist), 32 px, 3 channels",
            "train": f"training images [0, {s.train_images}) (both supernets, stand-alone nets)",
            "teacher_train": f"training images [0, {s.teacher_images})",
            "rating_held_out": f"training images [{VAL_START}, {VAL_START + s.val_images})",
            "standalone_eval": f"test split, first {s.test_images} images",
            "bn_recalibration": f"{s.rate_bn_batches} training batches of {s.rate_batch_size}",
            "dna_rating_images": s.rate_eval_batches * s.rate_batch_size,
        },
        "how": {
            "dna": "train_supernet (block-wise KD, fair path sampling, normalised MSE) + rate_supernet "
            "(prefix tree, BN re-estimated, loss / teacher target variance); rating = sum of block losses",
            "spos": "dna_zoo.search.supernet.spos: one single-path supernet, CE on labels, one uniform "
            "path per step, same images/epochs/batch/steps as the DNA supernet; rating = held-out top-1 "
            "after BN re-estimation; spos_long: the same with more epochs, about the DNA supernet's CPU time",
            "standalone": "dna_zoo.search.retrain.retrain: AdamW lr 2e-3 wd 0.05, cosine, label smoothing "
            "0.1, zero-init residual BN, channels_last, no EMA; top-1 on the test split",
            "tau": "scipy.stats.kendalltau (tau-b) vs the seed-mean stand-alone top-1; 95% percentile "
            f"bootstrap over networks, {s.bootstrap} resamples, seed {s.seed}",
            "nets": f"{s.draws} random networks (uniform depth, then uniform ops per block), {s.nets} picked "
            "evenly spaced in log-MACs over the 0.5-99.5% range",
        },
        "networks": rows,
        "figures": figs,
        "steps": {
            "dna_supernet": work.state.get("dna_supernet_steps"),
            "spos_supernet": work.state.get("spos_supernet_steps"),
            "spos_long_supernet": work.state.get(f"spos_e{long_epochs}_supernet_steps"),
            "spos_long_epochs": long_epochs,
            "spos_last_train_loss": work.state.get("spos_last_train_loss"),
            "spos_long_last_train_loss": work.state.get(f"spos_e{long_epochs}_last_train_loss"),
        },
        "seconds": work.state.get("seconds", {}),
        "cpu_seconds": work.state.get("cpu_seconds", {}),
        "work_dir": work.path.name,
        "versions": versions(),
        "machine": machine(),
        "note": "wall times on a shared 2-core machine, run under nice -n 19 (other work had priority "
        "and was allowed to pause this run); CPU seconds count both threads",
        "notes": work.state.get("notes", []),
    }
    from dna_zoo.io import atomic_write_json

    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, result)
    plot(out.with_suffix(".png"), rows, figs)
    print_table(result)
    print(f"\nwrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
