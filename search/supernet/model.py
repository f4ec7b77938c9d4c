"""The block supernets: candidate layers made of timm's own blocks.

One :class:`BlockSupernet` per searched block. It holds one :class:`Cell` per depth choice
(each depth is its own set of weights, trained and rated separately, as in the paper); a
cell of depth ``d`` holds ``d`` layer positions, and each position holds one
``timm.models._efficientnet_blocks.InvertedResidual`` per candidate op, built exactly as
dna_zoo's models build it (SiLU, BatchNorm eps 1e-5 / momentum 0.1, SqueezeExcite with the
SE width relative to the layer input and ``round``), so a chosen path maps 1:1 onto the
zoo's architecture encoding.

Block layout (``dna_models.json`` ``original_search_setup.block_layout_note``): the block
takes the TEACHER's previous-stage feature map (``in_chs`` = that stage's channels); the
first layer carries the block's stride; every layer but the last outputs the block's
width; the last outputs the teacher's stage channels so it can be compared with the
teacher's feature map. (In the final network every layer outputs the block's width.)

A path is a tuple of op indices, one per layer of the cell; :class:`PathSampler` draws
them, uniformly or "fairly" (each op once per group of ``len(ops)`` steps), as a pure
function of (seed, step), so a resumed run draws exactly the paths the uninterrupted run
would have drawn.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn as nn
from timm.models._efficientnet_blocks import InvertedResidual, SqueezeExcite

from dna_zoo.arch import Op
from dna_zoo.errors import ConfigError
from dna_zoo.search.space import Candidate, SearchSpace

BN_EPS = 1e-5
BN_MOMENTUM = 0.1
SAMPLING = ("uniform", "fair")


def make_layer(op: Op, in_chs: int, out_chs: int, stride: int) -> nn.Module:
    """One candidate layer as timm's EfficientNet builder would make it for dna_zoo."""
    if op.kind != "ir":
        raise ConfigError(f"supernet candidate ops must be MBConv ('ir'), got {op.name}")
    se_layer = None
    if op.se:
        # timm's builder divides the SE ratio by the expansion (se_from_exp=False), so the
        # SE width is op.se x the layer's input channels, rounded with round() as in dna_zoo.
        se_layer = partial(SqueezeExcite, rd_ratio=op.se / op.expansion, rd_round_fn=round)
    return InvertedResidual(
        in_chs,
        out_chs,
        dw_kernel_size=op.kernel,
        stride=stride,
        exp_ratio=float(op.expansion),
        act_layer=nn.SiLU,
        norm_layer=partial(nn.BatchNorm2d, eps=BN_EPS, momentum=BN_MOMENTUM),
        se_layer=se_layer,
    )


class Cell(nn.Module):
    """A cell of ``depth`` layer positions, each with one layer per candidate op."""

    def __init__(
        self, ops: Sequence[Op], depth: int, in_chs: int, hidden_chs: int, out_chs: int, stride: int
    ) -> None:
        super().__init__()
        self.depth = depth
        self.positions = nn.ModuleList()
        chs = in_chs
        for i in range(depth):
            out = out_chs if i == depth - 1 else hidden_chs
            self.positions.append(
                nn.ModuleList(make_layer(op, chs, out, stride if i == 0 else 1) for op in ops)
            )
            chs = out

    def layer(self, position: int, op_index: int) -> nn.Module:
        return self.positions[position][op_index]

    def forward(self, x: torch.Tensor, path: Sequence[int]) -> torch.Tensor:
        if len(path) != self.depth:
            raise ConfigError(f"path {tuple(path)} has {len(path)} layers, cell has {self.depth}")
        for position, op_index in zip(self.positions, path, strict=False):
            x = position[op_index](x)
        return x


class BlockSupernet(nn.Module):
    """Every candidate of one block: a :class:`Cell` per depth choice (keys ``d2``, ``d3``...)."""

    def __init__(
        self, space: SearchSpace, block: int, in_chs: int, out_chs: int, *, hidden_chs: int | None = None
    ) -> None:
        super().__init__()
        spec = space.blocks[block]
        self.block = block
        self.ops = tuple(space.ops)
        self.depths = tuple(spec.depths)
        self.in_chs, self.out_chs = in_chs, out_chs
        hidden = hidden_chs if hidden_chs is not None else spec.channels
        self.cells = nn.ModuleDict(
            {f"d{d}": Cell(space.ops, d, in_chs, hidden, out_chs, spec.stride) for d in spec.depths}
        )

    def cell(self, depth: int) -> Cell:
        return self.cells[f"d{depth}"]  # type: ignore[return-value]

    def forward(self, x: torch.Tensor, path: Sequence[int]) -> torch.Tensor:
        return self.cell(len(path))(x, path)

    def candidate(self, path: Sequence[int]) -> Candidate:
        return Candidate(self.block, tuple(self.ops[i] for i in path))


class Supernet(nn.Module):
    """The block supernets of a whole space, for a teacher's stage channels.

    ``stage_channels[0]`` is the channel count of the teacher stage feeding block 0 and
    ``stage_channels[b + 1]`` that of the stage block ``b`` imitates.
    """

    def __init__(self, space: SearchSpace, stage_channels: Sequence[int]) -> None:
        super().__init__()
        if len(stage_channels) != len(space.blocks) + 1:
            raise ConfigError(
                f"need {len(space.blocks) + 1} teacher stage channel counts, got {len(stage_channels)}"
            )
        self.space = space
        self.stage_channels = tuple(int(c) for c in stage_channels)
        self.blocks = nn.ModuleList(
            BlockSupernet(space, b, stage_channels[b], stage_channels[b + 1])
            for b in range(len(space.blocks))
        )

    def block(self, b: int) -> BlockSupernet:
        return self.blocks[b]  # type: ignore[return-value]


def _seeded(seed: int, *parts: int) -> torch.Generator:
    digest = hashlib.sha256(",".join(str(p) for p in (seed, *parts)).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


@dataclass(frozen=True)
class PathSampler:
    """Which path each cell trains at each step: a pure function of (seed, step).

    ``uniform``: each layer's op drawn uniformly and independently at every step.
    ``fair``: for each layer position, steps are grouped in groups of ``num_ops``; within a
    group each op is used exactly once (a fresh random permutation per group).
    """

    num_ops: int
    mode: str = "uniform"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in SAMPLING:
            raise ConfigError(
                f"unknown path sampling '{self.mode}'", hint=f"use one of {', '.join(SAMPLING)}"
            )

    def path(self, step: int, block: int, depth: int) -> tuple[int, ...]:
        if self.mode == "uniform":
            g = _seeded(self.seed, 0, step, block, depth)
            return tuple(int(i) for i in torch.randint(self.num_ops, (depth,), generator=g))
        group, slot = divmod(step, self.num_ops)
        return tuple(
            int(torch.randperm(self.num_ops, generator=_seeded(self.seed, 1, group, block, depth, pos))[slot])
            for pos in range(depth)
        )
