"""End-to-end rating of whole networks stitched from the supernet's block weights.

A block-wise rating scores each block alone, fed the teacher's feature map. Re-rating a
candidate network end to end (issue 14) runs the whole chain instead: the teacher's stem and
stages up to block 0's input, then the chosen path of every block's supernet (each block's
last layer outputs the teacher's stage width, so the blocks chain), then the teacher's
remaining stages and head. The student layers' BatchNorm statistics are re-estimated on a
few training batches (the teacher's parts keep theirs), and the rating is the stitched
network's held-out top-1 (higher is better) and cross-entropy. Optionally a short distillation
finetune of the network's own layers first (``finetune_steps``: KL to the teacher's logits).

The teacher parts are shared and frozen; each network copies only its own layers, so the
supernet is left unchanged. The teacher's prefix runs once per batch, for all networks.

Entry point: :func:`rate_stitched`.
"""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from dna_zoo.errors import ConfigError
from dna_zoo.progress import Reporter, reporter_or_null
from dna_zoo.search.space import Candidate
from dna_zoo.search.supernet.data import DataSource, ShardSampler, first_batches
from dna_zoo.search.supernet.model import Supernet
from dna_zoo.search.supernet.teacher import Teacher


def check_stitchable(teacher: Teacher) -> None:
    """Raise unless ``teacher`` has the parts a student block chain can be stitched onto."""
    model = teacher.model
    if not all(hasattr(model, a) for a in ("blocks", "conv_head", "bn2", "forward_head")):
        raise ConfigError(
            f"teacher {teacher.name} has no blocks / conv_head / bn2 / forward_head: "
            "cannot stitch networks onto it",
            hint="use an EfficientNet-style timm teacher (efficientnet_*, dna_net, mobilenetv2_*)",
        )
    if len(teacher.stages) != len(model.blocks) + 1:
        raise ConfigError(
            f"teacher {teacher.name}'s stages are feature levels, not its blocks: "
            "cannot stitch networks onto it",
            hint="use an EfficientNet-style timm teacher (its forward_intermediates takes extra_blocks)",
        )


class StitchedNet(nn.Module):
    """One network of the space as the supernet holds it, between the teacher's prefix and tail.

    ``forward`` takes block 0's input (the teacher's stage ``stage_map.input`` output, see
    :meth:`Teacher.features`) and returns logits.
    """

    def __init__(self, teacher: Teacher, supernet: Supernet, choice: Sequence[Candidate]) -> None:
        super().__init__()
        check_stitchable(teacher)
        space = supernet.space
        if len(choice) != len(space.blocks):
            raise ConfigError(
                f"a network of space '{space.name}' has {len(space.blocks)} blocks, got {len(choice)}"
            )
        layers = []
        for b, cand in enumerate(choice):
            space.check_candidate(cand)
            cell = supernet.block(b).cell(cand.depth)
            layers += [copy.deepcopy(cell.layer(i, space.ops.index(op))) for i, op in enumerate(cand.ops)]
        self.student = nn.Sequential(*layers).requires_grad_(False)
        # not a submodule: shared, frozen, in eval mode, outside this module's BN statistics
        self._teacher = (teacher.model,)
        # stage s of an extra_blocks teacher is the output of its blocks[:s]
        self._tail_from = teacher.stage_map.stages[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.student(x))

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """The teacher's stages after the last block's target, then its head: logits."""
        model = self._teacher[0]
        for blk in model.blocks[self._tail_from :]:
            x = blk(x)
        return model.forward_head(model.bn2(model.conv_head(x)))

    @torch.no_grad()
    def recalibrate(self, inputs: Sequence[torch.Tensor]) -> None:
        """Re-estimate the student layers' BN statistics as the plain average over ``inputs``."""
        bns = [m for m in self.student.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
        self.student.train()
        for x in inputs:
            self.student(x)
        self.student.eval()


@torch.no_grad()
def rate_stitched(
    teacher: Teacher,
    supernet: Supernet,
    nets: Sequence[Sequence[Candidate]],
    calib_source: DataSource,
    held_out: DataSource,
    *,
    bn_batches: int = 4,
    batch_size: int = 64,
    eval_batch_size: int = 250,
    seed: int = 0,
    channels_last: bool = True,
    finetune_steps: int = 0,
    finetune_lr: float = 1e-3,
    progress: Reporter | None = None,
) -> list[dict[str, Any]]:
    """Rate each network stitched from the supernet: ``{"top1": %, "loss": CE, "seconds": s}``
    on all of ``held_out`` (higher top-1 is better), after re-estimating its layers' BN on
    the first ``bn_batches`` training batches (the same batches for every network).

    ``finetune_steps > 0``: before rating, a short distillation finetune of the net's own
    layers (the teacher's parts stay frozen): that many batches of ``calib_source`` (the same
    for every net), KL divergence to the teacher's logits, AdamW at ``finetune_lr`` with a
    cosine decay; BN is re-estimated again after it."""
    if len(held_out) == 0:
        raise ConfigError("the held-out set is empty")
    if finetune_steps < 0 or finetune_lr <= 0:
        raise ConfigError(f"finetune steps must be >= 0 and lr > 0, got {finetune_steps}, {finetune_lr}")
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    teacher.model.eval()

    def prefix(x: torch.Tensor) -> torch.Tensor:
        return teacher.block_input(x, 0, memory_format=fmt)

    tune = []  # (block-0 input, teacher logits) of the finetune batches, shared by every net
    if finetune_steps:
        sampler = ShardSampler(len(calib_source), batch_size, seed=seed + 2)
        batches = itertools.islice(itertools.cycle(list(sampler)), finetune_steps)
        for idx in batches:
            x = calib_source.batch(idx)[0].contiguous(memory_format=fmt)
            tune.append((prefix(x), teacher.model(x).float()))
    calib = [prefix(x) for x in first_batches(calib_source, bn_batches, batch_size, seed)]
    held = []
    for start in range(0, len(held_out), eval_batch_size):
        x, y = held_out.batch(range(start, min(len(held_out), start + eval_batch_size)))
        held.append((prefix(x), y))
    out = []
    for choice in reporter_or_null(progress).track(list(nets), f"stitched rating of {len(nets)} networks"):
        t0 = time.perf_counter()
        net = StitchedNet(teacher, supernet, choice).to(memory_format=fmt)
        net.recalibrate(calib)
        if tune:
            _distil(net, teacher, tune, finetune_lr)
            net.recalibrate(calib)
        correct, loss_sum = 0, 0.0
        for x, y in held:
            logits = net(x).float()
            correct += int((logits.argmax(1) == y).sum())
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        n = len(held_out)
        out.append(
            {"top1": 100.0 * correct / n, "loss": loss_sum / n, "seconds": round(time.perf_counter() - t0, 3)}
        )
    return out


def _distil(
    net: StitchedNet, teacher: Teacher, batches: Sequence[tuple[torch.Tensor, torch.Tensor]], lr: float
) -> None:
    """Train ``net``'s own layers to the teacher's logits (KL, temperature 1) on ``batches``."""
    import math

    from dna_zoo.search.depthwise_grad import speed_up_depthwise

    frozen = [p for p in teacher.model.parameters() if p.requires_grad]
    for p in frozen:  # gradients flow through the teacher's tail, its weights stay as they are
        p.requires_grad_(False)
    try:
        with torch.enable_grad():
            net.student.requires_grad_(True)
            speed_up_depthwise(net.student)
            opt = torch.optim.AdamW(net.student.parameters(), lr=lr, weight_decay=0.0)
            n = len(batches)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / n)))
            net.student.train()
            for x, target in batches:
                logits = net(x).float()
                loss = F.kl_div(
                    F.log_softmax(logits, 1), F.log_softmax(target, 1), log_target=True, reduction="batchmean"
                )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
            net.student.requires_grad_(False).eval()
    finally:
        for p in frozen:
            p.requires_grad_(True)
