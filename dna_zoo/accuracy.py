"""Top-k accuracy over batches, in percent, through ``timm.utils.accuracy``.

The one place accuracy against labels is counted (retraining, the teacher, the SPOS
baseline, ``dna validate``). Every figure is a percent (0-100), as timm reports it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.utils import accuracy


class TopKAccuracy:
    """Running top-k accuracy: :meth:`update` per batch, then :meth:`percent`.

    ``timm.utils.accuracy`` gives each batch's percent (k clipped to the number of
    classes); the correct counts are recovered from it so the result over all batches is
    exactly ``100 x correct / total``.
    """

    def __init__(self, topk: Sequence[int] = (1,)) -> None:
        self.topk = tuple(topk)
        self.correct = [0] * len(self.topk)
        self.total = 0
        self.num_classes: int | None = None

    def update(self, logits, target) -> None:
        """Count one batch: ``logits`` (N, classes) and integer ``target`` (N,), tensors or arrays."""
        logits = torch.as_tensor(logits)
        target = torch.as_tensor(target).to(logits.device)
        n = int(target.numel())
        if n == 0:
            return
        self.num_classes = int(logits.shape[1])
        for i, pct in enumerate(accuracy(logits, target, topk=self.topk)):
            self.correct[i] += round(float(pct) * n / 100)
        self.total += n

    def percent(self) -> tuple[float, ...]:
        """Top-k accuracy in percent for each k; NaN when nothing was counted."""
        if self.total == 0:
            return tuple(float("nan") for _ in self.topk)
        return tuple(100.0 * c / self.total for c in self.correct)
