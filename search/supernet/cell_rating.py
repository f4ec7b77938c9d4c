"""Rating the paths of one cell: BN re-estimated per path, then a score on held-out batches.

:func:`rate_cell_prefix` walks the paths depth-first and shares every prefix's BN
re-estimation and outputs with the paths that extend it; :func:`rate_cell_naive` runs each
path from scratch (the reference; identical results). The score is the MSE to the teacher's
targets (:mod:`~dna_zoo.search.supernet.rate`) or any function of the outputs
(:mod:`~dna_zoo.search.supernet.last_block`: a classifier's loss on labels).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from dna_zoo.search.supernet.model import Cell


def _reset_bn(layer: nn.Module) -> None:
    """Fresh BN statistics, averaged over the batches that follow. Not ``update_bn``: the
    prefix tree needs each layer's train-mode outputs on the BN batches to feed the next
    layer, and the naive reference must run the very same operations."""
    for m in layer.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the BN batches


def _mse(outs: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]) -> float:
    total = sum(F.mse_loss(o.float(), t.float()) for o, t in zip(outs, targets, strict=True))
    return float(total / len(outs))


@torch.no_grad()
def rate_cell_prefix(
    cell: Cell,
    calib_in: list[torch.Tensor],
    eval_in: list[torch.Tensor],
    targets: list[torch.Tensor],
    *,
    first_ops: Sequence[int] | None = None,
    score: Callable[[list[torch.Tensor]], Any] | None = None,
) -> dict[tuple[int, ...], Any]:
    """Raw losses of every path of ``cell`` (first op restricted to ``first_ops``), prefix tree.

    ``score(outputs)`` replaces the MSE to ``targets`` (e.g. a classifier's loss on labels)."""
    n_ops = len(cell.positions[0])
    out: dict[tuple[int, ...], Any] = {}

    def walk(
        level: int, calib: list[torch.Tensor], held: list[torch.Tensor], prefix: tuple[int, ...]
    ) -> None:
        ops = first_ops if (level == 0 and first_ops is not None) else range(n_ops)
        for k in ops:
            layer = cell.layer(level, k)
            _reset_bn(layer)
            layer.train()
            calib_out = [layer(x) for x in calib]
            layer.eval()
            held_out = [layer(x) for x in held]
            path = (*prefix, k)
            if level == cell.depth - 1:
                out[path] = score(held_out) if score is not None else _mse(held_out, targets)
            else:
                walk(level + 1, calib_out, held_out, path)

    walk(0, calib_in, eval_in, ())
    return out


@torch.no_grad()
def rate_cell_naive(
    cell: Cell,
    calib_in: list[torch.Tensor],
    eval_in: list[torch.Tensor],
    targets: list[torch.Tensor],
    *,
    first_ops: Sequence[int] | None = None,
) -> dict[tuple[int, ...], float]:
    """Raw losses of every path of ``cell``, each path on its own (the reference)."""
    n_ops = len(cell.positions[0])
    out: dict[tuple[int, ...], float] = {}
    firsts = list(first_ops) if first_ops is not None else list(range(n_ops))
    for first in firsts:
        for rest in itertools.product(range(n_ops), repeat=cell.depth - 1):
            path = (first, *rest)
            layers = [cell.layer(i, k) for i, k in enumerate(path)]
            for layer in layers:
                _reset_bn(layer)
                layer.train()
            for x in calib_in:
                for layer in layers:
                    x = layer(x)
            for layer in layers:
                layer.eval()
            outs = []
            for x in eval_in:
                for layer in layers:
                    x = layer(x)
                outs.append(x)
            out[path] = _mse(outs, targets)
    return out
