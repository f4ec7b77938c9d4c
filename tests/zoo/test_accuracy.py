"""Top-k accuracy through timm.utils.accuracy: percent, exact over uneven batches, k clipped."""

from __future__ import annotations

import torch

from dna_zoo.accuracy import TopKAccuracy


def test_percent_over_uneven_batches_equals_a_direct_count():
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(37, 10, generator=g), torch.randint(0, 10, (37,), generator=g)
    acc = TopKAccuracy((1, 5))
    for i in range(0, 37, 16):  # batches of 16, 16, 5
        acc.update(logits[i : i + 16], labels[i : i + 16].numpy())
    top5 = (logits.topk(5, 1).indices == labels[:, None]).any(1).sum().item()
    assert acc.percent() == (100.0 * (logits.argmax(1) == labels).sum().item() / 37, 100.0 * top5 / 37)
    assert acc.total == 37 and acc.num_classes == 10


def test_k_larger_than_classes_counts_every_image_and_empty_is_nan():
    acc = TopKAccuracy((1, 5))
    acc.update(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), torch.tensor([1, 1]))
    assert acc.percent() == (50.0, 100.0)
    assert all(v != v for v in TopKAccuracy().percent())
