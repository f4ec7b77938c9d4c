"""Rating every candidate of every block: BN re-estimated, loss to the teacher on held-out data.

For each candidate path (each block, each depth cell, each op per layer), the
BatchNorm statistics of its layers are re-estimated on ``bn_batches`` training batches
(weight-shared BN statistics are wrong for any single path), then its loss to the
teacher's stage output is measured on ``eval_batches`` held-out batches (the block input is
the teacher's previous-stage map, as in training). The teacher runs once per batch, up
front.

Prefix tree (``method="prefix"``, the default): the paths of a cell are walked depth-first;
a layer's BN re-estimation and its outputs (train-mode outputs on the BN batches, eval-mode
outputs on the held-out batches) depend only on the path prefix up to that layer, so they
are computed once per prefix and shared by every path that extends it. ``method="naive"``
runs every path from scratch; both give identical losses (same operations, same order).

Losses are divided by the variance of the teacher's target on the held-out data
(``normalization="teacher_var"``; raw block losses differ ~100x in scale) or left raw
(``"none"``); the choice is recorded in the :class:`~dna_zoo.search.ratings.Ratings` file.
The meta also records each block's teacher target power (mean square), so a noise-to-signal
ratio (raw MSE / power) follows from the same pass: ``loss x variance / power``.

Under torchrun the work is cut into units (block, depth cell, first op), balanced across
ranks by size; rank 0 gathers the losses and writes the file.

Entry points: :func:`rate_run` (a training run directory -> ratings file) and
:func:`rate_supernet` (in memory).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from dna_zoo.errors import ConfigError
from dna_zoo.progress import Reporter, reporter_or_null
from dna_zoo.search.ratings import Ratings
from dna_zoo.search.space import SearchSpace
from dna_zoo.search.supernet import distributed
from dna_zoo.search.supernet.cell_rating import rate_cell_naive, rate_cell_prefix
from dna_zoo.search.supernet.data import DataSource, first_batches, open_dataset
from dna_zoo.search.supernet.model import Supernet
from dna_zoo.search.supernet.run import RunDir
from dna_zoo.search.supernet.teacher import Teacher

log = logging.getLogger(__name__)

NORMALIZATIONS = ("teacher_var", "none")
METHODS = ("prefix", "naive")
#: how the last block is rated: its feature MSE like every block, or DNA's way (trained with
#: the label loss through the teacher's head, rated by held-out cross-entropy:
#: :mod:`~dna_zoo.search.supernet.last_block`)
LAST_BLOCK = ("mse", "label")


@dataclass(frozen=True)
class RateConfig:
    """How candidates are rated (recorded in the ratings file's meta)."""

    batch_size: int = 64
    #: training batches used to re-estimate each candidate's BatchNorm statistics
    bn_batches: int = 4
    #: held-out batches the loss is measured on
    eval_batches: int = 8
    normalization: str = "teacher_var"
    method: str = "prefix"
    seed: int = 0
    channels_last: bool = True
    last_block: str = "mse"

    def __post_init__(self) -> None:
        for name in ("batch_size", "bn_batches", "eval_batches"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.normalization not in NORMALIZATIONS:
            raise ConfigError(
                f"unknown normalization '{self.normalization}'",
                hint=f"use one of {', '.join(NORMALIZATIONS)}",
            )
        if self.last_block not in LAST_BLOCK:
            raise ConfigError(
                f"unknown last-block rating '{self.last_block}'", hint=f"use one of {', '.join(LAST_BLOCK)}"
            )
        if self.method not in METHODS:
            raise ConfigError(
                f"unknown rating method '{self.method}'", hint=f"use one of {', '.join(METHODS)}"
            )


@dataclass
class RatingData:
    """Teacher features of the BN batches and the held-out batches (computed once)."""

    #: calib[i][b]: teacher feature ``b`` (input of block b / target of block b-1) of BN batch i
    calib: list[list[torch.Tensor]]
    held_out: list[list[torch.Tensor]]

    def target_variance(self, block: int) -> float:
        t = torch.cat([f[block + 1].float().flatten() for f in self.held_out])
        return float(t.var())

    def target_power(self, block: int) -> float:
        """Mean square of the teacher's block-``block`` output on the held-out batches (the
        signal power of DONNA's noise-to-signal ratio: raw block MSE / this)."""
        t = torch.cat([f[block + 1].float().flatten() for f in self.held_out])
        return float(t.square().mean())


@torch.no_grad()
def prepare_data(
    teacher: Teacher,
    calib_source: DataSource,
    held_out_source: DataSource,
    config: RateConfig,
    *,
    device: torch.device | str = "cpu",
) -> RatingData:
    """Run the teacher once over the BN batches and the held-out batches."""
    fmt = torch.channels_last if config.channels_last else torch.contiguous_format
    teacher.model.to(device, memory_format=fmt)

    def feats(xs: list[torch.Tensor]) -> list[list[torch.Tensor]]:
        return [teacher.features(x.to(device).contiguous(memory_format=fmt)) for x in xs]

    calib = feats(first_batches(calib_source, config.bn_batches, config.batch_size, config.seed))
    held = feats(first_batches(held_out_source, config.eval_batches, config.batch_size, config.seed + 1))
    return RatingData(calib, held)


@dataclass(frozen=True)
class _Unit:
    block: int
    depth: int
    first: int
    size: int


def work_units(space: SearchSpace) -> list[_Unit]:
    """The rating work, cut into (block, depth cell, first op) units."""
    units = []
    n = len(space.ops)
    for b, spec in enumerate(space.blocks):
        for d in spec.depths:
            units.extend(_Unit(b, d, k, n ** (d - 1)) for k in range(n))
    return units


def shard_units(units: list[_Unit], ranks: int) -> list[list[_Unit]]:
    """Largest units first, each to the least-loaded rank (deterministic)."""
    shards: list[list[_Unit]] = [[] for _ in range(ranks)]
    load = [0] * ranks
    for u in sorted(units, key=lambda u: (-u.size, u.block, u.depth, u.first)):
        r = min(range(ranks), key=lambda i: (load[i], i))
        shards[r].append(u)
        load[r] += u.size
    return shards


def rate_supernet(
    supernet: Supernet,
    data: RatingData,
    config: RateConfig = RateConfig(),
    *,
    world: distributed.World | None = None,
    progress: Reporter | None = None,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Losses of every candidate (``Candidate.key`` -> normalised loss) and rating facts.

    With a distributed ``world`` each rank rates its share and every rank returns the
    whole result.
    """
    world = world or distributed.World()
    fmt = torch.channels_last if config.channels_last else torch.contiguous_format
    supernet.to(data.held_out[0][0].device, memory_format=fmt)
    rate_cell = rate_cell_prefix if config.method == "prefix" else rate_cell_naive
    units = shard_units(work_units(supernet.space), world.size)[world.rank]
    units.sort(key=lambda u: (u.block, u.depth, u.first))
    n_cands = sum(u.size for u in units)
    raw: dict[str, float] = {}
    reporter = reporter_or_null(progress if world.is_main else None)
    t0 = time.perf_counter()
    desc = f"rating {n_cands} candidates" + (f" (rank 0 of {world.size})" if world.distributed else "")
    for u in reporter.track(units, desc):  # a unit: the paths of one cell that start with one op
        block = supernet.block(u.block)
        calib_in = [f[u.block] for f in data.calib]
        eval_in = [f[u.block] for f in data.held_out]
        targets = [f[u.block + 1] for f in data.held_out]
        cell_losses = rate_cell(block.cell(u.depth), calib_in, eval_in, targets, first_ops=[u.first])
        for path, loss in cell_losses.items():
            raw[block.candidate(path).key] = loss
    seconds = time.perf_counter() - t0
    merged: dict[str, float] = {}
    for part in distributed.gather_objects(raw, world):
        merged.update(part)
    variances = [data.target_variance(b) for b in range(len(supernet.blocks))]
    if config.normalization == "teacher_var":
        losses = {k: v / variances[int(k.split(":")[0][1:])] for k, v in merged.items()}
    else:
        losses = merged
    facts = {
        "seconds": round(seconds, 3),
        "candidates": len(merged),
        "candidates_per_second": round(n_cands / seconds, 2) if seconds > 0 else None,
        "teacher_target_variance": variances,
        "teacher_target_power": [data.target_power(b) for b in range(len(supernet.blocks))],
        "world_size": world.size,
        **asdict(config),
    }
    return losses, facts


def _rate_last_block_by_label(
    teacher: Teacher,
    space: SearchSpace,
    train_src: DataSource,
    held_src: DataSource,
    opts: dict[str, Any],
    config: RateConfig,
    losses: dict[str, float],
) -> tuple[dict[str, float], dict[str, Any]]:
    """The last block's losses replaced by DNA's label-loss rating (held-out cross-entropy),
    trained for the run's epochs and batch size on its training data. Every rank computes
    the same (seeded) result."""
    from dna_zoo.search.supernet.last_block import LastBlockConfig, rate_last_block, train_last_block

    cfg = LastBlockConfig(
        epochs=int(opts.get("epochs", 1)),
        batch_size=int(opts.get("batch_size", 64)),
        max_steps=opts.get("max_steps"),
        bn_batches=config.bn_batches,
        eval_batches=config.eval_batches,
        seed=config.seed,
        channels_last=config.channels_last,
    )
    net, facts = train_last_block(teacher, space, train_src, cfg)
    rated = rate_last_block(net, teacher, train_src, held_src, cfg)
    out = dict(losses)
    out.update({k: v["loss"] for k, v in rated.items()})
    top1 = [v["top1"] for v in rated.values()]
    return out, {**facts, "config": asdict(cfg), "top1_range": [min(top1), max(top1)]}


def rate_run(
    run_dir: str | Path,
    *,
    out: str | Path | None = None,
    config: RateConfig = RateConfig(),
    data: str | Path | None = None,
    device: str | None = None,
    progress: Reporter | None = None,
) -> Ratings:
    """Rate every candidate of a trained run and write the ratings file (rank 0).

    ``out`` defaults to ``RUN_DIR/ratings.json``; ``data`` defaults to the run's data
    (BN batches from its train split, held-out batches from its val/test split). Inputs are
    checked before anything is written; an existing ``out`` is replaced atomically.
    """
    from dna_zoo.search.supernet.train import data_norm, load_supernet, teacher_of_run

    world = distributed.setup(device)
    rd = RunDir(run_dir)
    desc = rd.read()
    teacher = teacher_of_run(rd.path)
    supernet, desc = load_supernet(rd.path, teacher)
    opts = desc["options"]
    data_spec = str(data) if data is not None else desc["data_spec"]
    mean, std = data_norm(teacher)
    common = {
        "input_size": int(opts["input_size"]),
        "in_chans": int(opts.get("in_chans", 3)),
        "mean": mean,
        "std": std,
    }
    calib_src = open_dataset(data_spec, split="train", **common)
    held_src = open_dataset(data_spec, split="val", **common)
    if held_src.identity.get("files_sha256") and held_src.identity["files_sha256"] == calib_src.identity.get(
        "files_sha256"
    ):
        log.warning("%s has no separate validation split: rating on training images", data_spec)
    out_path = Path(out) if out is not None else rd.path / "ratings.json"
    if out_path.exists() and out_path.is_dir():
        raise ConfigError(f"--out {out_path} is a folder", hint="give a file name such as ratings.json")
    rdata = prepare_data(teacher, calib_src, held_src, config, device=world.device)
    losses, facts = rate_supernet(supernet, rdata, config, world=world, progress=progress)
    if config.last_block == "label":
        train_src = open_dataset(data_spec, split="train", limit=opts.get("limit"), **common)
        losses, facts["last_block_label"] = _rate_last_block_by_label(
            teacher, rd.space(), train_src, held_src, opts, config, losses
        )
    ratings = Ratings(
        space=rd.space(),
        losses=losses,
        normalization=config.normalization,
        input_size=int(opts["input_size"]),
        teacher=desc["teacher"],
        data={"train": desc["data"], "bn": calib_src.identity, "held_out": held_src.identity},
        meta={
            "run_dir": str(rd.path.resolve()),
            "checkpoint_step": desc["checkpoint_step"],
            "checkpoint_done": desc["checkpoint_done"],
            **facts,
        },
    )
    if world.is_main:
        ratings.save(out_path)
    distributed.barrier(world)
    return ratings
