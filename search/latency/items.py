"""What a latency table holds entries for: the stem, each layer as placed in a network, the
head; the entries of one network or of every network a search space can build; and the
torch module (built by timm exactly as in a DNA network) and inputs of each entry.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from dna_zoo.arch import (
    ArchEncoding,
    Layer,
    LayerInstance,
    Op,
    conv_out_size,
    head_key,
    iter_parts,
    layer_key,
    stem_key,
)
from dna_zoo.search.latency.table import TableSpec
from dna_zoo.search.space import Candidate, SearchSpace


@dataclass(frozen=True)
class Item:
    """One table entry to measure: a stem, a layer placed in a network, or a head."""

    key: str
    kind: str  # "stem" | "layer" | "head"
    in_chs: int
    in_res: int
    layer: Layer | None = None
    out_chs: int = 0  # stem width / head features


def stem_item(space_stem: int, spec: TableSpec) -> Item:
    return Item(
        stem_key(spec.in_chans, space_stem, spec.input_size),
        "stem",
        spec.in_chans,
        spec.input_size,
        out_chs=space_stem,
    )


def head_item(in_chs: int, in_res: int, num_features: int, spec: TableSpec) -> Item:
    return Item(
        head_key(in_chs, num_features, in_res, spec.num_classes), "head", in_chs, in_res, out_chs=num_features
    )


def layer_item(inst: LayerInstance) -> Item:
    return Item(
        layer_key(inst.layer, inst.in_chs, inst.in_res), "layer", inst.in_chs, inst.in_res, inst.layer
    )


def network_items(enc: ArchEncoding, spec: TableSpec) -> list[Item]:
    """Every entry a network needs, stem first, head last (same keys as :func:`dna_zoo.arch.network_keys`)."""
    items = []
    for part in iter_parts(enc, spec.input_size, in_chans=spec.in_chans):
        if part.kind == "stem":
            items.append(stem_item(part.out_chs, spec))
        elif part.kind == "head":
            items.append(head_item(part.in_chs, part.in_res, part.out_chs, spec))
        else:
            assert part.inst is not None
            items.append(layer_item(part.inst))
    return items


def space_items(space: SearchSpace, spec: TableSpec) -> list[Item]:
    """Every distinct entry the final networks of ``space`` can need.

    In a final network a block's first layer sees the previous block's width and resolution
    and carries the stride; the later layers all see the block's own width. So per block and
    op two configurations exist; :meth:`SearchSpace.layer_instances` of the deepest cell of
    each op gives both.
    """
    out: dict[str, Item] = {}
    first = LayerInstance(0, 0, space.first_layer, space.stem_size, conv_out_size(spec.input_size, 2))
    for it in (stem_item(space.stem_size, spec), layer_item(first)):
        out.setdefault(it.key, it)
    for b, block in enumerate(space.blocks):
        for op in space.ops:
            cand = Candidate(b, (op,) * max(block.depths))
            for inst in space.layer_instances(cand, spec.input_size):
                it = layer_item(inst)
                out.setdefault(it.key, it)
    chs, res = space.block_input(len(space.blocks), spec.input_size)
    it = head_item(chs, res, space.num_features, spec)
    out.setdefault(it.key, it)
    return list(out.values())


def published_networks() -> list[ArchEncoding]:
    from dna_zoo.models import PUBLISHED, published_encoding

    return [published_encoding(n) for n in PUBLISHED]


def items_for(
    space: SearchSpace,
    spec: TableSpec,
    *,
    include_published: bool = True,
    networks: Iterable[ArchEncoding] = (),
) -> list[Item]:
    """The space's entries, plus DNA-a..d's (their widths differ) and any extra networks'."""
    out = {it.key: it for it in space_items(space, spec)}
    nets = list(networks) + (published_networks() if include_published else [])
    for enc in nets:
        for it in network_items(enc, spec):
            out.setdefault(it.key, it)
    return list(out.values())


def random_network(space: SearchSpace, rng: random.Random, *, name: str | None = None) -> ArchEncoding:
    """A network of ``space``: per block a uniform depth, then a uniform op per layer."""
    choice = []
    for b, block in enumerate(space.blocks):
        depth = rng.choice(block.depths)
        choice.append(Candidate(b, tuple(rng.choice(space.ops) for _ in range(depth))))
    return space.to_encoding(choice, name=name)


def _efficientnet(stem_size: int, layers: Sequence[Layer], *, num_features: int, spec: TableSpec):
    """A timm EfficientNet built exactly as the zoo builds DNA networks (same blocks, norm, SE)."""
    from timm.models.efficientnet import EfficientNet

    from dna_zoo.models import model_kwargs

    enc = ArchEncoding((tuple(layers),), stem_size=stem_size, num_features=num_features)
    return EfficientNet(**model_kwargs(enc, {"num_classes": spec.num_classes, "in_chans": spec.in_chans}))


def item_module(item: Item, spec: TableSpec):
    """A torch module computing one item, built by timm exactly as in a DNA network."""
    import torch.nn as nn

    if item.kind == "layer":
        assert item.layer is not None
        net = _efficientnet(
            item.in_chs, [item.layer], num_features=8, spec=TableSpec(**{**spec.to_dict(), "num_classes": 1})
        )
        return net.blocks[0][0]
    if item.kind == "stem":
        net = _efficientnet(item.out_chs, [Layer(Op("ds", 3, 1, 0.0), 8)], num_features=8, spec=spec)
        return nn.Sequential(net.conv_stem, net.bn1)
    if item.kind == "head":
        net = _efficientnet(
            item.in_chs, [Layer(Op("ds", 3, 1, 0.0), item.in_chs)], num_features=item.out_chs, spec=spec
        )
        return _head_module(net)
    raise ValueError(item.kind)


def _head_module(net):
    import torch.nn as nn

    class Head(nn.Module):
        """conv_head + bn2 + pool + classifier: timm's ``forward_head`` path."""

        def __init__(self) -> None:
            super().__init__()
            self.conv_head, self.bn2, self.global_pool, self.classifier = (
                net.conv_head,
                net.bn2,
                net.global_pool,
                net.classifier,
            )

        def forward(self, x):
            return self.classifier(self.global_pool(self.bn2(self.conv_head(x))))

    return Head()


def item_inputs(item: Item, spec: TableSpec, seed: int = 0) -> list:
    import torch

    g = torch.Generator().manual_seed(seed)
    return [torch.randn(spec.batch, item.in_chs, item.in_res, item.in_res, generator=g)]
