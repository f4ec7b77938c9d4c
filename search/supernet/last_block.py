"""DNA's treatment of the last block: trained with the label loss, rated by held-out top-1.

DNA distils every block but the last from the teacher's feature maps; its last stage is
trained against the labels with a classifier after it and its candidates are rated by
classification, not by a feature MSE (changlin31/DNA, ``searching/initialize/
train_pipeline.yaml``). Here that is one extra, optional stage beside the block-wise
supernet (issue 14, measured by ``bench/ranking_decisions.py``):

* :class:`LastBlockNet`: a fresh :class:`~dna_zoo.search.supernet.model.BlockSupernet` for the
  space's last block (the same cells the supernet has), then a trainable copy of the
  teacher's tail and head (any teacher stages after the last block's target, ``conv_head``,
  ``bn2``, pooling and classifier), initialised from the teacher.
* :func:`train_last_block`: label cross-entropy on the teacher's input to the last block
  (the teacher runs frozen up to there), every depth cell training one sampled path per
  step (:class:`~dna_zoo.search.supernet.model.PathSampler`, as the supernet trains), AdamW
  with a per-step cosine schedule.
* :func:`rate_last_block`: every candidate of the last block with its BN statistics
  re-estimated (the prefix tree of :func:`~dna_zoo.search.supernet.cell_rating.rate_cell_prefix`),
  then held-out cross-entropy and top-1 through the shared head (kept in eval mode).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from dna_zoo.errors import ConfigError
from dna_zoo.progress import Reporter, reporter_or_null
from dna_zoo.search.depthwise_grad import speed_up_depthwise
from dna_zoo.search.space import SearchSpace
from dna_zoo.search.supernet.cell_rating import rate_cell_prefix
from dna_zoo.search.supernet.data import DataSource, ShardSampler, first_batches
from dna_zoo.search.supernet.model import BlockSupernet, PathSampler
from dna_zoo.search.supernet.stitch import check_stitchable
from dna_zoo.search.supernet.teacher import Teacher

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LastBlockConfig:
    """Training and rating options of the last block (recorded with its ratings)."""

    epochs: int = 2
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    clip_grad: float = 5.0
    sampling: str = "uniform"
    seed: int = 0
    max_steps: int | None = None
    #: training batches each candidate's BN statistics are re-estimated on
    bn_batches: int = 4
    #: held-out batches each candidate is rated on
    eval_batches: int = 16
    channels_last: bool = True

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "bn_batches", "eval_batches"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")


class LastBlockNet(nn.Module):
    """The last block's candidates followed by a trainable copy of the teacher's head.

    ``forward(x, path)`` takes the teacher's input to the last block and returns logits.
    """

    def __init__(self, teacher: Teacher, space: SearchSpace) -> None:
        super().__init__()
        check_stitchable(teacher)
        if not all(hasattr(teacher.model, a) for a in ("global_pool", "classifier")):
            raise ConfigError(
                f"teacher {teacher.name} has no global_pool / classifier: "
                "cannot put its head after the last block",
                hint="use an EfficientNet-style timm teacher (efficientnet_*, dna_net, mobilenetv2_*)",
            )
        b = len(space.blocks) - 1
        chs = teacher.stage_channels
        self.space = space
        self.block = BlockSupernet(space, b, chs[b], chs[b + 1])
        model = teacher.model
        self.tail = copy.deepcopy(nn.Sequential(*model.blocks[teacher.stage_map.stages[-1] :]))
        self.conv_head = copy.deepcopy(model.conv_head)
        self.bn2 = copy.deepcopy(model.bn2)
        self.global_pool = copy.deepcopy(model.global_pool)
        self.classifier = copy.deepcopy(model.classifier)
        self.requires_grad_(True)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """The tail, then the head as timm's EfficientNet runs it (pool, flatten, classifier)."""
        x = self.global_pool(self.bn2(self.conv_head(self.tail(x))))
        return self.classifier(x.flatten(1))

    def forward(self, x: torch.Tensor, path: Sequence[int]) -> torch.Tensor:
        return self.head(self.block(x, path))


def train_last_block(
    teacher: Teacher,
    space: SearchSpace,
    train: DataSource,
    config: LastBlockConfig = LastBlockConfig(),
    *,
    progress: Reporter | None = None,
) -> tuple[LastBlockNet, dict[str, Any]]:
    """Train the last block's candidates and head with the label loss; the net and facts."""
    import timm.optim

    if len(train) < config.batch_size:
        raise ConfigError(
            f"{len(train)} training images are fewer than one batch of {config.batch_size}",
            hint="use a smaller batch size or more data",
        )
    fmt = torch.channels_last if config.channels_last else torch.contiguous_format
    torch.manual_seed(config.seed)
    net = LastBlockNet(teacher, space).to(memory_format=fmt)
    speed_up_depthwise(net)
    teacher.model.to(memory_format=fmt).eval()
    b = len(space.blocks) - 1
    per_epoch = len(train) // config.batch_size
    total = per_epoch * config.epochs
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    opt = timm.optim.create_optimizer_v2(net, "adamw", lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total))
    )
    sampler = PathSampler(len(space.ops), config.sampling, config.seed)
    batches = (
        idx
        for epoch in range(config.epochs)
        for idx in ShardSampler(len(train), config.batch_size, seed=config.seed, epoch=epoch)
    )
    net.train()
    t0, last = time.perf_counter(), math.nan
    desc = f"last block, label loss ({total} steps)"
    for step, idx in zip(reporter_or_null(progress).track(range(total), desc), batches, strict=False):
        x, y = train.batch(idx)
        inp = teacher.block_input(x, b, memory_format=fmt)
        loss = sum(F.cross_entropy(net(inp, sampler.path(step, b, d)), y) for d in net.block.depths)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), config.clip_grad)
        opt.step()
        sched.step()
        last = float(loss.detach()) / len(net.block.depths)
    facts = {"steps": total, "last_train_loss": last, "seconds": round(time.perf_counter() - t0, 1)}
    log.info("last block trained with the label loss: %d steps, loss %.4f", total, last)
    return net.eval(), facts


@torch.no_grad()
def rate_last_block(
    net: LastBlockNet,
    teacher: Teacher,
    calib_source: DataSource,
    held_out: DataSource,
    config: LastBlockConfig = LastBlockConfig(),
) -> dict[str, dict[str, float]]:
    """Every candidate of the last block: ``{key: {"loss": CE, "top1": %}}`` on held-out
    batches, its layers' BN re-estimated on the first ``bn_batches`` training batches."""
    fmt = torch.channels_last if config.channels_last else torch.contiguous_format
    b = len(net.space.blocks) - 1
    net.eval()
    firsts = first_batches(calib_source, config.bn_batches, config.batch_size, config.seed)
    calib = [teacher.block_input(x, b, memory_format=fmt) for x in firsts]
    sampler = ShardSampler(len(held_out), config.batch_size, seed=config.seed + 1)
    held, labels = [], []
    for k, idx in enumerate(sampler):
        if k >= config.eval_batches:
            break
        x, y = held_out.batch(idx)
        held.append(teacher.block_input(x, b, memory_format=fmt))
        labels.append(y)
    n = sum(len(y) for y in labels)

    def score(outs: list[torch.Tensor]) -> dict[str, float]:
        logits = [net.head(o).float() for o in outs]
        ce = sum(float(F.cross_entropy(z, y, reduction="sum")) for z, y in zip(logits, labels, strict=True))
        hits = sum(int((z.argmax(1) == y).sum()) for z, y in zip(logits, labels, strict=True))
        return {"loss": ce / n, "top1": 100.0 * hits / n}

    out: dict[str, dict[str, float]] = {}
    for d in net.block.depths:
        rated = rate_cell_prefix(net.block.cell(d), calib, held, [], score=score)
        for path, v in rated.items():
            out[net.block.candidate(path).key] = v
    return out
