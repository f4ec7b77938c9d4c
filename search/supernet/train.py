"""Training the DNA supernet: every block, every depth cell, from ONE teacher pass per step.

Each step: the teacher runs once on the batch (frozen, eval) and gives the input of block
0 and the target of every block. Every cell of every block then trains one sampled path
(:class:`~dna_zoo.search.supernet.model.PathSampler`) on the TEACHER's previous-stage map to
reproduce the teacher's stage map (MSE, optionally divided by the target's variance so
blocks weigh alike). Blocks are independent, so summing their losses is the same as
training each on its own; each block has its own learning rate (param groups of a timm
optimizer, ``timm.optim.create_optimizer_v2``) and its own gradient clipping; the
schedule is timm's (``timm.scheduler.create_scheduler_v2``, stepped per epoch). AMP on
GPU, channels_last (faster steps on a CPU too; bench/results/README.md).

Data-parallel under torchrun (:mod:`dna_zoo.search.supernet.distributed`): the global batch is
split over ranks (and ``accum_steps`` micro-batches), gradients are averaged with one
all_reduce per step, rank 0 logs and checkpoints. A 1-process run with ``accum_steps=2``
computes the same update as a 2-process run (BatchNorm running statistics aside: each
rank's are its own; they are re-estimated before rating anyway).

Resumable: checkpoints (atomic) every ``ckpt_every`` steps and at every epoch end; data
order (``ShardSampler``) and sampled paths are pure functions of (seed, epoch, step), so
``resume=True`` continues from the last checkpoint and ends with exactly the steps and
weights of an uninterrupted run.

Entry point: :func:`train_supernet`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from dna_zoo.errors import ConfigError
from dna_zoo.progress import Reporter, reporter_or_null
from dna_zoo.search.depthwise_grad import speed_up_depthwise
from dna_zoo.search.space import SearchSpace, get_space
from dna_zoo.search.supernet import distributed
from dna_zoo.search.supernet.data import DataSource, ShardSampler, is_builtin, open_dataset
from dna_zoo.search.supernet.model import SAMPLING, PathSampler, Supernet
from dna_zoo.search.supernet.run import CKPT_FORMAT, RunDir
from dna_zoo.search.supernet.teacher import StageMap, Teacher, load_teacher

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Options of a supernet training run (recorded in run.json; a resume must match them)."""

    epochs: int = 1
    #: global batch (over all ranks and accumulation steps)
    batch_size: int = 64
    input_size: int = 32
    in_chans: int = 3
    opt: str = "adam"
    #: base learning rate; block b uses ``block_lrs[b]`` if given, else the paper's pattern
    #: (0.4 x lr for the first and last block, lr for the others: 0.002/0.005/.../0.002)
    lr: float = 0.005
    block_lrs: tuple[float, ...] | None = None
    weight_decay: float = 1e-4
    sched: str = "step"
    decay_rate: float = 0.9
    decay_epochs: float = 1.0
    warmup_epochs: int = 0
    #: max gradient norm per block (None: no clipping)
    clip_grad: float | None = 5.0
    sampling: str = "fair"
    normalize_loss: bool = True
    amp: bool = True
    channels_last: bool = True
    accum_steps: int = 1
    seed: int = 0
    ckpt_every: int = 200
    log_every: int = 10
    keep_checkpoints: int = 2
    #: use only the first ``limit`` training images (quick runs; recorded)
    limit: int | None = None
    #: stop after this many steps in total (quick runs; recorded)
    max_steps: int | None = None
    workers: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "input_size", "accum_steps", "ckpt_every", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.in_chans not in (1, 3):
            raise ConfigError(f"in-chans must be 1 or 3, got {self.in_chans}")
        if self.sampling not in SAMPLING:
            raise ConfigError(
                f"unknown path sampling '{self.sampling}'", hint=f"use one of {', '.join(SAMPLING)}"
            )
        if self.lr <= 0 or (self.block_lrs and any(v <= 0 for v in self.block_lrs)):
            raise ConfigError("learning rates must be positive")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"max-steps must be >= 1, got {self.max_steps}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit must be >= 1, got {self.limit}")

    def lrs(self, num_blocks: int) -> list[float]:
        if self.block_lrs is not None:
            if len(self.block_lrs) != num_blocks:
                raise ConfigError(f"{len(self.block_lrs)} block learning rates for {num_blocks} blocks")
            return list(self.block_lrs)
        return [self.lr * (0.4 if b in (0, num_blocks - 1) else 1.0) for b in range(num_blocks)]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if d["block_lrs"] is not None:
            d["block_lrs"] = list(d["block_lrs"])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown training options {sorted(unknown)}")
        d = dict(d)
        if d.get("block_lrs") is not None:
            d["block_lrs"] = tuple(float(v) for v in d["block_lrs"])
        return cls(**d)


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    total_steps: int
    epochs: int
    #: teacher forward passes made by this process in this session
    teacher_passes: int
    seconds: float
    resumed_from: int | None = None
    #: last logged per-block loss (mean over its depth cells)
    block_losses: list[float] = field(default_factory=list)


def steps_per_epoch(num_samples: int, config: TrainConfig) -> int:
    n = ShardSampler.batches_per_epoch(num_samples, config.batch_size)
    if n < 1:
        raise ConfigError(
            f"{num_samples} training images are fewer than one batch of {config.batch_size}",
            hint="use a smaller --batch-size",
        )
    return n


def total_steps(num_samples: int, config: TrainConfig) -> int:
    n = steps_per_epoch(num_samples, config) * config.epochs
    return min(n, config.max_steps) if config.max_steps else n


def data_norm(teacher: Teacher) -> tuple[Sequence[float] | None, Sequence[float] | None]:
    cfg = getattr(teacher.model, "pretrained_cfg", None) or {}
    return cfg.get("mean"), cfg.get("std")


def build_optimizer(supernet: Supernet, config: TrainConfig) -> torch.optim.Optimizer:
    """timm's optimizer factory with two param groups per block (decay / no decay)."""
    from timm.optim import create_optimizer_v2

    groups = []
    for b, lr in enumerate(config.lrs(len(supernet.blocks))):
        params = [p for p in supernet.block(b).parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]
        groups.append({"params": decay, "lr": lr, "weight_decay": config.weight_decay, "block": b})
        groups.append({"params": no_decay, "lr": lr, "weight_decay": 0.0, "block": b})
    try:
        return create_optimizer_v2(groups, opt=config.opt, lr=config.lr, weight_decay=config.weight_decay)
    except (AssertionError, ValueError, KeyError) as e:
        raise ConfigError(
            f"cannot create optimizer '{config.opt}': {e}", hint="use a timm optimizer name"
        ) from e


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, updates_per_epoch: int) -> Any:
    from timm.scheduler import create_scheduler_v2

    try:
        sched, _ = create_scheduler_v2(
            optimizer,
            sched=config.sched,
            num_epochs=config.epochs,
            decay_epochs=config.decay_epochs,
            decay_rate=config.decay_rate,
            warmup_epochs=config.warmup_epochs,
            warmup_lr=min(config.lrs(1)[0] * 0.01, 1e-4),
            updates_per_epoch=updates_per_epoch,
        )
    except (AssertionError, ValueError, KeyError) as e:
        raise ConfigError(f"cannot create scheduler '{config.sched}': {e}") from e
    return sched


def _iter_batches(source: DataSource, sampler: ShardSampler, workers: int) -> Iterator[torch.Tensor]:
    if hasattr(source.dataset, "batch") or workers == 0:
        for idx in sampler:
            yield source.batch(idx)[0]
        return
    loader = torch.utils.data.DataLoader(source.dataset, batch_sampler=sampler, num_workers=workers)
    for x, _ in loader:
        yield x


def block_losses(
    supernet: Supernet,
    feats: Sequence[torch.Tensor],
    sampler: PathSampler,
    step: int,
    *,
    normalize: bool,
    blocks: Sequence[int] | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Total loss of one step and each block's loss (mean over its cells).

    ``feats`` are the teacher's block inputs/targets (``feats[b]`` -> block b ->
    ``feats[b + 1]``); with ``blocks`` only those blocks train.
    """
    total = torch.zeros((), device=next(f for f in feats if f is not None).device)
    per_block = []
    for b in blocks if blocks is not None else range(len(supernet.blocks)):
        block = supernet.block(b)
        inp, tgt = feats[b], feats[b + 1].float()
        denom = tgt.var().clamp_min(1e-12) if normalize else 1.0
        acc = torch.zeros((), device=total.device)
        for d in block.depths:
            out = block(inp, sampler.path(step, b, d))
            loss = F.mse_loss(out.float(), tgt) / denom
            acc = acc + loss
        total = total + acc
        per_block.append(acc.detach() / len(block.depths))
    return total, per_block


def _resolve(
    rd: RunDir,
    *,
    resume: bool,
    space: SearchSpace | str | None,
    teacher: str | None,
    teacher_weights: str | Path | None,
    data: str | Path | None,
    config: TrainConfig | dict[str, Any] | None,
    stage_map: str | Sequence[int] | None,
) -> tuple[SearchSpace, str, str | None, str, TrainConfig, Any, dict[str, Any] | None]:
    """Everything a run needs, checked against run.json when resuming. Writes nothing."""
    space_obj = get_space(space) if isinstance(space, (str, Path)) else space
    if not resume:
        rd.check_new()
        if space_obj is None or teacher is None or data is None:
            raise ConfigError("a new run needs a space, a teacher and data")
        base = TrainConfig()
        cfg = (
            config
            if isinstance(config, TrainConfig)
            else TrainConfig.from_dict({**base.to_dict(), **(config or {})})
        )
        wts = str(teacher_weights) if teacher_weights is not None else None
        return space_obj, teacher, wts, str(data), cfg, stage_map, None
    desc = rd.read()
    run_space = rd.space()
    if space_obj is not None and space_obj.identity != run_space.identity:
        raise ConfigError(
            f"{rd.path} is a run of space '{run_space.name}' ({run_space.identity}), not of space "
            f"'{space_obj.name}' ({space_obj.identity})",
            hint="resume with the run's own space (omit --space) or start a new run with a new --out",
        )
    t = desc["teacher"]
    if teacher is not None and teacher != t["name"]:
        raise ConfigError(f"{rd.path} is a run with teacher {t['name']}, not {teacher}")
    if (
        data is not None
        and (str(data) if is_builtin(data) else str(Path(data).resolve())) != desc["data_spec"]
    ):
        raise ConfigError(f"{rd.path} is a run on data {desc['data_spec']}, not {data}")
    recorded = TrainConfig.from_dict(desc["options"])
    if isinstance(config, TrainConfig):
        cfg = config
    else:
        cfg = TrainConfig.from_dict({**recorded.to_dict(), **(config or {})})
    if cfg != recorded:
        diff = [k for k, v in cfg.to_dict().items() if recorded.to_dict()[k] != v]
        raise ConfigError(
            f"options {diff} differ from those of the run in {rd.path}",
            hint="a resumed run continues with its recorded options; start a new run to change them",
        )
    wts = t.get("weights")
    wts = None if (wts is None or str(wts).startswith("timm-pretrained:")) else wts
    if teacher_weights is not None and str(Path(teacher_weights).resolve()) != wts:
        raise ConfigError(f"{rd.path} is a run with teacher weights {wts}, not {teacher_weights}")
    return run_space, t["name"], wts, desc["data_spec"], cfg, t["stage_map"], desc


def train_supernet(
    out: str | Path,
    *,
    space: SearchSpace | str | None = None,
    teacher: str | None = None,
    teacher_weights: str | Path | None = None,
    data: str | Path | None = None,
    config: TrainConfig | dict[str, Any] | None = None,
    stage_map: str | Sequence[int] | None = None,
    resume: bool = False,
    device: str | None = None,
    progress: Reporter | None = None,
    on_step: Callable[[int, list[float]], None] | None = None,
) -> TrainResult:
    """Train (or resume) the supernet of ``space`` distilled from ``teacher`` into ``out``.

    New run: ``space``, ``teacher`` (timm name; ``teacher_weights`` a local file or None for
    timm pretrained weights), ``data`` (``builtin`` or a folder) and ``config`` (a
    :class:`TrainConfig` or a dict of options) are required and ``out`` must be new or
    empty. ``resume=True``: everything comes from ``out/run.json``; anything given must
    match it. All inputs are checked before anything is written. ``on_step(step, losses)``
    is called after every step (rank 0 and others alike).
    """
    world = distributed.setup(device)
    rd = RunDir(out)
    space_obj, t_name, t_weights, data_spec, cfg, smap, desc = _resolve(
        rd,
        resume=resume,
        space=space,
        teacher=teacher,
        teacher_weights=teacher_weights,
        data=data,
        config=config,
        stage_map=stage_map,
    )
    teach = load_teacher(
        t_name,
        space_obj,
        weights=t_weights,
        input_size=cfg.input_size,
        in_chans=cfg.in_chans,
        stage_map=smap,
    )
    if desc is not None and teach.identity().get("weights_sha256") != desc["teacher"].get("weights_sha256"):
        raise ConfigError(
            f"the teacher weights {t_weights} are not those run {rd.path} was trained with (sha256 differs)",
            hint="restore the original weights file",
        )
    mean, std = data_norm(teach)
    source = open_dataset(
        data_spec,
        split="train",
        input_size=cfg.input_size,
        in_chans=cfg.in_chans,
        limit=cfg.limit,
        mean=mean,
        std=std,
    )
    if desc is not None and desc["data"] != source.identity:
        raise ConfigError(
            f"the data at {data_spec} is not the data run {rd.path} was trained on",
            hint="resume with the same data (same files, same --limit)",
        )
    shards = world.size * cfg.accum_steps
    if cfg.batch_size % shards:
        raise ConfigError(
            f"batch size {cfg.batch_size} does not split over {world.size} ranks x "
            f"{cfg.accum_steps} accumulation steps"
        )
    per_epoch = steps_per_epoch(len(source), cfg)
    n_total = total_steps(len(source), cfg)

    torch.manual_seed(cfg.seed)
    supernet = Supernet(space_obj, teach.stage_channels)
    dev = world.device
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    supernet.to(dev, memory_format=fmt)
    speed_up_depthwise(supernet)
    teach.model.to(dev, memory_format=fmt)
    use_amp = cfg.amp and dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if use_amp else None
    optimizer = build_optimizer(supernet, cfg)
    scheduler = build_scheduler(optimizer, cfg, per_epoch)
    sampler = PathSampler(len(space_obj.ops), cfg.sampling, cfg.seed)

    distributed.barrier(world)  # every rank has checked its inputs (and the folder) before rank 0 writes
    if world.is_main and not resume:
        rd.create(
            {
                "space": space_obj.to_dict(),
                "space_identity": space_obj.identity,
                "teacher": teach.identity(),
                "data_spec": data_spec if is_builtin(data_spec) else str(Path(data_spec).resolve()),
                "data": source.identity,
                "options": cfg.to_dict(),
                "world_size": world.size,
                "steps_per_epoch": per_epoch,
                "total_steps": n_total,
            }
        )
    distributed.barrier(world)

    step, epoch, batch = 0, 0, 0
    state = rd.load_checkpoint(space_obj) if resume else None
    resumed_from = None
    if state is not None:
        supernet.load_state_dict(state["supernet"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        step, epoch, batch = int(state["step"]), int(state["epoch"]), int(state["batch"])
        resumed_from = step
        if state.get("done"):
            log.info("run %s is already finished (%d steps)", rd.path, step)
            return TrainResult(rd.path, step, n_total, cfg.epochs, 0, 0.0, resumed_from=step)
        log.info("resuming %s from step %d (epoch %d, batch %d)", rd.path, step, epoch, batch)
    if world.is_main and resume:
        rd.truncate_log(step)
    distributed.broadcast_module(supernet, world)

    def checkpoint(done: bool = False) -> None:
        e, b = (epoch + 1, 0) if batch >= per_epoch else (epoch, batch)
        if world.is_main:
            rd.save_checkpoint(
                {
                    "format": CKPT_FORMAT,
                    "space_identity": space_obj.identity,
                    "step": step,
                    "epoch": e,
                    "batch": b,
                    "done": done,
                    "supernet": supernet.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict() if scaler is not None else {},
                },
                keep=cfg.keep_checkpoints,
            )
        distributed.barrier(world)

    reporter = reporter_or_null(progress if world.is_main else None)
    params = [p for p in supernet.parameters() if p.requires_grad]
    block_params = [[p for p in supernet.block(b).parameters()] for b in range(len(supernet.blocks))]
    passes, last_losses = 0, []
    t0 = time.perf_counter()
    supernet.train()
    while step < n_total and epoch < cfg.epochs:
        scheduler.step(epoch)
        micro = [
            ShardSampler(
                len(source),
                cfg.batch_size,
                shard=world.rank * cfg.accum_steps + j,
                shards=shards,
                seed=cfg.seed,
                epoch=epoch,
                start=batch,
            )
            for j in range(cfg.accum_steps)
        ]
        iters = [_iter_batches(source, s, cfg.workers) for s in micro]
        n_here = min(per_epoch - batch, n_total - step)
        for _ in reporter.track(range(n_here), f"supernet epoch {epoch + 1}/{cfg.epochs}", total=n_here):
            losses_acc = [torch.zeros((), device=dev) for _ in supernet.blocks]
            for it in iters:
                x = next(it).to(dev, non_blocking=True).contiguous(memory_format=fmt)
                with torch.autocast(dev.type, enabled=use_amp):
                    feats = teach.features(x)
                    passes += 1
                    loss, per_block = block_losses(
                        supernet, feats, sampler, step, normalize=cfg.normalize_loss
                    )
                loss = loss / cfg.accum_steps
                (scaler.scale(loss) if scaler is not None else loss).backward()
                for acc, v in zip(losses_acc, per_block, strict=False):
                    acc += v / cfg.accum_steps
            distributed.average_gradients(params, world)
            if scaler is not None:
                scaler.unscale_(optimizer)
            if cfg.clip_grad is not None:
                for bp in block_params:
                    torch.nn.utils.clip_grad_norm_([p for p in bp if p.grad is not None], cfg.clip_grad)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            batch += 1
            scheduler.step_update(step)
            stacked = torch.stack(losses_acc)
            if world.distributed:
                torch.distributed.all_reduce(stacked)
                stacked /= world.size
            last_losses = [float(v) for v in stacked]
            if not all(math.isfinite(v) for v in last_losses):
                raise ConfigError(
                    f"training diverged at step {step} (block losses {last_losses})",
                    hint="lower --lr or keep gradient clipping on; the last good checkpoint is kept",
                )
            if world.is_main and (step % cfg.log_every == 0 or step == n_total):
                row = {
                    "step": step,
                    "epoch": epoch,
                    "lr": [optimizer.param_groups[2 * b]["lr"] for b in range(len(supernet.blocks))],
                    "block_loss": [round(v, 6) for v in last_losses],
                    "time": round(time.perf_counter() - t0, 3),
                }
                rd.append_log(row)
                log.info("step %d/%d block losses %s", step, n_total, row["block_loss"])
            if on_step is not None:
                on_step(step, last_losses)
            if step % cfg.ckpt_every == 0 and batch < per_epoch and step < n_total:
                checkpoint()  # (epoch ends and the end of the run checkpoint below)
        if step >= n_total:
            break
        checkpoint()  # end of epoch
        epoch, batch = epoch + 1, 0
    # final checkpoint, marked done (also reached when resuming a finished run)
    checkpoint(done=True)
    return TrainResult(
        run_dir=rd.path,
        steps=step,
        total_steps=n_total,
        epochs=cfg.epochs,
        teacher_passes=passes,
        seconds=time.perf_counter() - t0,
        resumed_from=resumed_from,
        block_losses=last_losses,
    )


def load_supernet(run_dir: str | Path, teacher: Teacher) -> tuple[Supernet, dict[str, Any]]:
    """The trained supernet of a run (latest checkpoint, verified) and the run description."""
    rd = RunDir(run_dir)
    desc = rd.read()
    space = rd.space()
    state = rd.load_checkpoint(space)
    if state is None:
        raise ConfigError(
            f"run {rd.path} has no checkpoint yet", hint="train it first (or let it reach a checkpoint)"
        )
    if not state.get("done"):
        log.warning("run %s is not finished (step %d); rating its last checkpoint", rd.path, state["step"])
    supernet = Supernet(space, teacher.stage_channels)
    supernet.load_state_dict(state["supernet"])
    return supernet, {
        **desc,
        "checkpoint_step": int(state["step"]),
        "checkpoint_done": bool(state.get("done")),
    }


def teacher_of_run(run_dir: str | Path, *, device: str | None = None) -> Teacher:
    """Rebuild a run's teacher exactly as it was trained with (same weights, same map)."""
    rd = RunDir(run_dir)
    desc = rd.read()
    t = desc["teacher"]
    weights = t.get("weights")
    weights = None if (weights is None or str(weights).startswith("timm-pretrained:")) else weights
    opts = desc["options"]
    return load_teacher(
        t["name"],
        rd.space(),
        weights=weights,
        input_size=int(opts["input_size"]),
        in_chans=int(opts.get("in_chans", 3)),
        stage_map=StageMap.parse(t["stage_map"]),
    )
