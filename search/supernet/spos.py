"""A single-path one-shot (SPOS-style) baseline over a DNA search space.

The rival of DNA's block-wise rating: ONE supernet holding every candidate of the space
(the fixed stem and first layer, one :class:`~dna_zoo.search.supernet.model.Cell` per depth
choice of every block, built with the same :func:`~dna_zoo.search.supernet.model.make_layer`,
then the head and classifier), trained end to end with cross-entropy on the labels, one
uniformly sampled path per step (Guo et al., "Single Path One-Shot NAS", 2019). A network is
rated by the accuracy it reaches with the inherited weights on held-out data, after its
BatchNorm statistics are re-estimated on a few training batches (weight-shared statistics
are wrong for any single path).

Unlike in DNA's supernet, a searched block here takes the previous block's output of the
same sampled path, and every layer outputs the block's width: a path is exactly a network
of the space, and :meth:`SinglePathSupernet.extract` builds it as a stand-alone timm model
(``dna_net``) holding the inherited weights.

A path is one tuple of op indices per block (its length is the block's depth);
:class:`SposSampler` draws it as a pure function of (seed, step).
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.optim.swa_utils import update_bn

from dna_zoo.accuracy import TopKAccuracy
from dna_zoo.errors import ConfigError
from dna_zoo.progress import Reporter, reporter_or_null
from dna_zoo.search.depthwise_grad import speed_up_depthwise
from dna_zoo.search.space import Candidate, SearchSpace
from dna_zoo.search.supernet.data import DataSource, ShardSampler, first_batches
from dna_zoo.search.supernet.model import SAMPLING, Cell, PathSampler

log = logging.getLogger(__name__)

#: one tuple of op indices per block
SposPath = tuple[tuple[int, ...], ...]


def path_of(space: SearchSpace, choice: Sequence[Candidate]) -> SposPath:
    """The path of a network given as one candidate per block."""
    if [c.block for c in choice] != list(range(len(space.blocks))):
        raise ConfigError(f"need one candidate per block, in order (0..{len(space.blocks) - 1})")
    for c in choice:
        space.check_candidate(c)
    return tuple(tuple(space.ops.index(op) for op in c.ops) for c in choice)


def candidates_of(space: SearchSpace, path: SposPath) -> list[Candidate]:
    """The candidates (one per block) a path is made of."""
    cands = [Candidate(b, tuple(space.ops[i] for i in ops)) for b, ops in enumerate(path)]
    for c in cands:
        space.check_candidate(c)
    return cands


def _seeded(seed: int, *parts: int) -> torch.Generator:
    digest = hashlib.sha256(",".join(str(p) for p in ("spos", seed, *parts)).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


@dataclass(frozen=True)
class SposSampler:
    """The path trained at each step: per block a depth drawn uniformly among its depth
    choices, then an op per layer from :class:`PathSampler` (``uniform`` or ``fair``)."""

    space: SearchSpace
    mode: str = "uniform"
    seed: int = 0

    def path(self, step: int) -> SposPath:
        ops = PathSampler(len(self.space.ops), self.mode, self.seed)
        out = []
        for b, spec in enumerate(self.space.blocks):
            k = int(torch.randint(len(spec.depths), (1,), generator=_seeded(self.seed, step, b)))
            out.append(ops.path(step, b, spec.depths[k]))
        return tuple(out)


def _reference_network(space: SearchSpace, num_classes: int, in_chans: int) -> nn.Module:
    from dna_zoo.search.retrain import build_student

    first = [next(space.block_candidates(b)) for b in range(len(space.blocks))]
    return build_student(
        space.to_encoding(first), num_classes=num_classes, in_chans=in_chans, zero_init=False
    )


class SinglePathSupernet(nn.Module):
    """Every network of ``space`` in one set of shared weights.

    Stem, first layer, head and classifier are those of the space's networks (taken from a
    timm ``dna_net``, so names and shapes match :meth:`extract`'s stand-alone models); each
    block holds one :class:`Cell` per depth choice (keys ``d1``, ``d2``...) whose layers all
    output the block's width. Initialised as timm initialises EfficientNets, then (with
    ``zero_init``) the last BatchNorm of every residual layer and the classifier start at
    zero, as in stand-alone training here.
    """

    def __init__(self, space: SearchSpace, *, num_classes: int, in_chans: int = 3, zero_init: bool = True):
        super().__init__()
        from timm.models._efficientnet_builder import efficientnet_init_weights

        from dna_zoo.search.retrain import zero_init_residuals

        self.space = space
        self.num_classes = num_classes
        self.in_chans = in_chans
        ref = _reference_network(space, num_classes, in_chans)
        self.conv_stem, self.bn1, self.first = ref.conv_stem, ref.bn1, ref.blocks[0]
        self.conv_head, self.bn2 = ref.conv_head, ref.bn2
        self.global_pool, self.classifier = ref.global_pool, ref.classifier
        self.blocks = nn.ModuleList()
        chs = space.first_layer.out_chs
        for spec in space.blocks:
            self.blocks.append(
                nn.ModuleDict(
                    {
                        f"d{d}": Cell(space.ops, d, chs, spec.channels, spec.channels, spec.stride)
                        for d in spec.depths
                    }
                )
            )
            chs = spec.channels
        efficientnet_init_weights(self)
        if zero_init:
            zero_init_residuals(self)

    def cell(self, block: int, depth: int) -> Cell:
        return self.blocks[block][f"d{depth}"]  # type: ignore[index,return-value]

    def check_path(self, path: SposPath) -> None:
        if len(path) != len(self.space.blocks):
            raise ConfigError(
                f"path has {len(path)} blocks, space '{self.space.name}' has {len(self.blocks)}"
            )
        candidates_of(self.space, path)

    def forward(self, x: torch.Tensor, path: SposPath) -> torch.Tensor:
        self.check_path(path)
        x = self.first(self.bn1(self.conv_stem(x)))
        for b, ops in enumerate(path):
            x = self.cell(b, len(ops))(x, ops)
        x = self.global_pool(self.bn2(self.conv_head(x)))
        return self.classifier(x)

    def extract(self, path: SposPath, *, name: str | None = None) -> nn.Module:
        """The path as a stand-alone timm ``dna_net`` holding copies of the inherited weights."""
        from dna_zoo.search.retrain import build_student

        enc = self.space.to_encoding(candidates_of(self.space, path), name=name)
        net = build_student(enc, num_classes=self.num_classes, in_chans=self.in_chans, zero_init=False)
        for part in ("conv_stem", "bn1", "conv_head", "bn2", "classifier"):
            getattr(net, part).load_state_dict(getattr(self, part).state_dict())
        net.blocks[0].load_state_dict(self.first.state_dict())
        for b, ops in enumerate(path):
            cell = self.cell(b, len(ops))
            for i, k in enumerate(ops):
                net.blocks[b + 1][i].load_state_dict(cell.layer(i, k).state_dict())
        return net.to(next(self.parameters()).device)


@dataclass(frozen=True)
class SposConfig:
    """How the single-path supernet trains (end to end, cross-entropy on labels)."""

    epochs: int = 1
    batch_size: int = 64
    opt: str = "adamw"
    lr: float = 2e-3
    weight_decay: float = 0.05
    min_lr: float = 1e-5
    label_smoothing: float = 0.1
    clip_grad: float | None = 5.0
    sampling: str = "uniform"
    seed: int = 0
    channels_last: bool = True
    #: stop after this many steps in total (quick runs)
    max_steps: int | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError(f"epochs ({self.epochs}) and batch size ({self.batch_size}) must be positive")
        if not self.lr > 0:
            raise ConfigError(f"learning rate must be positive, got {self.lr}")
        if self.sampling not in SAMPLING:
            raise ConfigError(
                f"unknown path sampling '{self.sampling}'", hint=f"use one of {', '.join(SAMPLING)}"
            )
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"max-steps must be >= 1, got {self.max_steps}")


@dataclass
class SposTrainResult:
    steps: int
    seconds: float
    #: mean training loss of the last epoch
    last_loss: float


def train_spos(
    supernet: SinglePathSupernet,
    source: DataSource,
    config: SposConfig = SposConfig(),
    *,
    progress: Reporter | None = None,
) -> SposTrainResult:
    """Train ``supernet`` in place: one sampled path per step, timm optimizer + cosine schedule.

    Data order and paths are pure functions of ``config.seed`` (and the epoch / step), so two
    runs with the same seed end with the same weights.
    """
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2

    cfg = config
    per_epoch = ShardSampler.batches_per_epoch(len(source), cfg.batch_size)
    if per_epoch < 1:
        raise ConfigError(f"{len(source)} training images are fewer than one batch of {cfg.batch_size}")
    total = per_epoch * cfg.epochs
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    supernet.to(memory_format=fmt)
    speed_up_depthwise(supernet)
    optimizer = create_optimizer_v2(supernet, opt=cfg.opt, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler, _ = create_scheduler_v2(
        optimizer,
        sched="cosine",
        num_epochs=cfg.epochs,
        min_lr=cfg.min_lr,
        step_on_epochs=False,
        updates_per_epoch=per_epoch,
    )
    sampler = SposSampler(supernet.space, cfg.sampling, cfg.seed)
    device = next(supernet.parameters()).device
    reporter = reporter_or_null(progress)
    t0 = time.perf_counter()
    step, losses = 0, [math.nan]
    supernet.train()
    for epoch in range(cfg.epochs):
        n_here = min(per_epoch, total - step)
        if n_here <= 0:
            break
        order = ShardSampler(len(source), cfg.batch_size, seed=cfg.seed, epoch=epoch)
        batches = iter(order)
        losses = []
        for _ in reporter.track(range(n_here), f"SPOS supernet epoch {epoch + 1}/{cfg.epochs}", total=n_here):
            x, y = source.batch(next(batches))
            x = x.to(device).contiguous(memory_format=fmt)
            logits = supernet(x, sampler.path(step))
            loss = F.cross_entropy(logits, y.to(device), label_smoothing=cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip_grad:
                torch.nn.utils.clip_grad_norm_(supernet.parameters(), cfg.clip_grad)
            optimizer.step()
            step += 1
            scheduler.step_update(num_updates=step)
            if not math.isfinite(loss.item()):
                raise ConfigError(
                    f"SPOS training diverged at step {step} (loss {loss.item()})", hint="lower lr"
                )
            losses.append(loss.item())
        log.info("SPOS epoch %d: loss %.4f", epoch + 1, sum(losses) / max(1, len(losses)))
    return SposTrainResult(step, time.perf_counter() - t0, sum(losses) / max(1, len(losses)))


@torch.no_grad()
def recalibrate_bn(net: nn.Module, batches: Sequence[torch.Tensor], *, channels_last: bool = True) -> None:
    """Re-estimate every BatchNorm's statistics as the plain average over ``batches``
    (``torch.optim.swa_utils.update_bn``); ``net`` is left in eval mode."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    device = next(net.parameters()).device
    update_bn((x.to(device).contiguous(memory_format=fmt) for x in batches), net)
    net.eval()


@torch.no_grad()
def evaluate_loss_acc(
    net: nn.Module, source: DataSource, *, batch_size: int = 256, channels_last: bool = True
) -> tuple[float, float]:
    """(top-1 accuracy in %, mean cross-entropy) of ``net`` on all of ``source``."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    device = next(net.parameters()).device
    net.eval()
    acc, loss_sum = TopKAccuracy(), 0.0
    for start in range(0, len(source), batch_size):
        x, y = source.batch(range(start, min(len(source), start + batch_size)))
        logits = net(x.to(device).contiguous(memory_format=fmt)).float()
        y = y.to(device)
        acc.update(logits, y)
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
    if len(source) == 0:
        raise ConfigError("the held-out set is empty")
    return acc.percent()[0], loss_sum / len(source)


@dataclass(frozen=True)
class SposRateConfig:
    """How paths are rated: BN re-estimated on ``bn_batches`` training batches, then held-out top-1."""

    bn_batches: int = 4
    batch_size: int = 64
    seed: int = 0
    channels_last: bool = True

    def __post_init__(self) -> None:
        if self.bn_batches < 1 or self.batch_size < 1:
            raise ConfigError("bn-batches and batch size must be >= 1")


def rate_paths(
    supernet: SinglePathSupernet,
    paths: Sequence[SposPath],
    calib_source: DataSource,
    held_out: DataSource,
    config: SposRateConfig = SposRateConfig(),
    *,
    progress: Reporter | None = None,
) -> list[dict[str, Any]]:
    """Rate each path: ``{"top1": %, "loss": CE, "seconds": s}`` (higher top-1 is better).

    Each path is extracted as a stand-alone copy (the supernet itself is left unchanged),
    its BatchNorm statistics are re-estimated on the same ``bn_batches`` training batches,
    and it is evaluated on all of ``held_out``.
    """

    calib = first_batches(calib_source, config.bn_batches, config.batch_size, config.seed)
    out = []
    for path in reporter_or_null(progress).track(list(paths), f"SPOS rating {len(paths)} networks"):
        t0 = time.perf_counter()
        net = supernet.extract(path)
        if config.channels_last:
            net = net.to(memory_format=torch.channels_last)
        recalibrate_bn(net, calib, channels_last=config.channels_last)
        top1, loss = evaluate_loss_acc(net, held_out, channels_last=config.channels_last)
        out.append({"top1": top1, "loss": loss, "seconds": round(time.perf_counter() - t0, 3)})
    return out
