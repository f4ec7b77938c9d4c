"""Search spaces: pure data (no torch).

A DNA search space is a fixed stem (conv 3x3 s2 to ``stem_size``, then one ``ds`` layer),
then searched blocks, then the head. Each block has a width, a stride and depth choices
(cells of different layer counts, trained and rated separately); each layer of a cell
picks one op among ``ops``. A :class:`Candidate` is one cell path of one block; choosing
one candidate per block gives an :class:`~dna_zoo.arch.ArchEncoding` (the final network:
every layer of a block outputs the block's width).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dna_zoo.arch import ArchEncoding, Layer, LayerInstance, Op, conv_out_size
from dna_zoo.errors import ArchitectureError, ConfigError, UnknownNameError

SPACE_VERSION = 1

#: The paper's candidate ops: MBConv e{6,3} x k{3,5,7}, SE 0.25 (of the block input), swish.
PAPER_OPS: tuple[Op, ...] = tuple(Op("ir", k, e, 0.25) for e in (6, 3) for k in (3, 5, 7))
#: The fixed layer after the stem in every DNA network: depthwise-separable k3 to 16 channels.
_FIRST_LAYER = Layer(Op("ds", 3, 1, 0.25), 16, 1)


@dataclass(frozen=True)
class BlockSpec:
    """One searched block: width of its layers, stride of its first layer, depth choices."""

    channels: int
    stride: int
    depths: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.channels < 1 or self.stride not in (1, 2):
            raise ConfigError(f"invalid block: channels={self.channels}, stride={self.stride}")
        if not self.depths or any(d < 1 for d in self.depths) or len(set(self.depths)) != len(self.depths):
            raise ConfigError(f"invalid depth choices {self.depths}: need distinct positive depths")


@dataclass(frozen=True)
class Candidate:
    """One path through one block: an op per layer (depth = number of ops)."""

    block: int
    ops: tuple[Op, ...]

    @property
    def depth(self) -> int:
        return len(self.ops)

    @property
    def key(self) -> str:
        """Stable text key, e.g. ``b2:e6_k3_se0.25,e3_k5_se0.25``."""
        return f"b{self.block}:" + ",".join(op.name for op in self.ops)

    @classmethod
    def parse(cls, key: str) -> Candidate:
        try:
            head, ops = key.split(":", 1)
            return cls(int(head.lstrip("b")), tuple(Op.parse(o) for o in ops.split(",")))
        except (ValueError, ArchitectureError) as e:
            raise ConfigError(f"cannot parse candidate key '{key}'") from e


@dataclass(frozen=True)
class SearchSpace:
    """A DNA search space; saved with every run so results name what they came from."""

    name: str
    blocks: tuple[BlockSpec, ...]
    ops: tuple[Op, ...] = PAPER_OPS
    stem_size: int = 32
    first_layer: Layer = _FIRST_LAYER
    num_features: int = 1280
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not self.blocks:
            raise ConfigError("a search space needs at least one block")
        if not self.ops or len(set(self.ops)) != len(self.ops):
            raise ConfigError("a search space needs distinct candidate ops")

    # --- enumeration ----------------------------------------------------------------------
    def block_candidates(self, block: int, depth: int | None = None) -> Iterator[Candidate]:
        """Every candidate path of ``block`` (of one depth, or of all its depths)."""
        spec = self.blocks[block]
        depths = spec.depths if depth is None else (depth,)
        for d in depths:
            for ops in itertools.product(self.ops, repeat=d):
                yield Candidate(block, ops)

    def num_candidates(self, block: int | None = None) -> int:
        if block is None:
            return sum(self.num_candidates(b) for b in range(len(self.blocks)))
        return sum(len(self.ops) ** d for d in self.blocks[block].depths)

    def num_networks(self) -> int:
        n = 1
        for b in range(len(self.blocks)):
            n *= self.num_candidates(b)
        return n

    # --- geometry of the final network ----------------------------------------------------
    def block_input(self, block: int, input_size: int) -> tuple[int, int]:
        """(channels, resolution) entering ``block`` in the final network."""
        chs = self.first_layer.out_chs
        res = conv_out_size(conv_out_size(input_size, 2), self.first_layer.stride)
        for spec in self.blocks[:block]:
            chs, res = spec.channels, conv_out_size(res, spec.stride)
        return chs, res

    def layer_instances(self, cand: Candidate, input_size: int) -> list[LayerInstance]:
        """The candidate's layers as placed in the final network (stage = block + 1)."""
        spec = self.blocks[cand.block]
        chs, res = self.block_input(cand.block, input_size)
        out = []
        for i, op in enumerate(cand.ops):
            layer = Layer(op, spec.channels, spec.stride if i == 0 else 1)
            inst = LayerInstance(cand.block + 1, i, layer, chs, res)
            out.append(inst)
            chs, res = layer.out_chs, inst.out_res
        return out

    def to_encoding(self, choice: Sequence[Candidate], *, name: str | None = None) -> ArchEncoding:
        """The network made of one candidate per block."""
        if len(choice) != len(self.blocks) or [c.block for c in choice] != list(range(len(self.blocks))):
            raise ConfigError(f"need one candidate per block, in order (0..{len(self.blocks) - 1})")
        for c in choice:
            self.check_candidate(c)
        stages = [(self.first_layer,)]
        for c in choice:
            spec = self.blocks[c.block]
            stages.append(
                tuple(Layer(op, spec.channels, spec.stride if i == 0 else 1) for i, op in enumerate(c.ops))
            )
        return ArchEncoding(
            tuple(stages), stem_size=self.stem_size, num_features=self.num_features, name=name
        )

    def from_encoding(self, enc: ArchEncoding) -> list[Candidate]:
        """The candidates an encoding is made of; an error if it is not in this space."""
        if len(enc.stages) != len(self.blocks) + 1:
            raise ConfigError(
                f"network has {len(enc.stages)} stages, space '{self.name}' has {len(self.blocks) + 1}"
            )
        cands = [Candidate(b, tuple(layer.op for layer in stage)) for b, stage in enumerate(enc.stages[1:])]
        for c in cands:
            self.check_candidate(c)
        return cands

    def check_candidate(self, cand: Candidate) -> None:
        if not 0 <= cand.block < len(self.blocks):
            raise ConfigError(f"block {cand.block} is not in space '{self.name}'")
        if cand.depth not in self.blocks[cand.block].depths:
            raise ConfigError(
                f"depth {cand.depth} is not a choice of block {cand.block} in space '{self.name}'"
            )
        bad = [op.name for op in cand.ops if op not in self.ops]
        if bad:
            raise ConfigError(f"ops {bad} are not in space '{self.name}'")

    # --- persistence ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "space_version": SPACE_VERSION,
            "name": self.name,
            "stem_size": self.stem_size,
            "first_layer": self.first_layer.block_str(),
            "num_features": self.num_features,
            "ops": [op.name for op in self.ops],
            "blocks": [
                {"channels": b.channels, "stride": b.stride, "depths": list(b.depths)} for b in self.blocks
            ],
            **({"meta": self.meta} if self.meta else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SearchSpace:
        if not isinstance(d, dict) or d.get("space_version") != SPACE_VERSION:
            raise ConfigError(
                "not a dna-zoo search space description",
                hint=f"expected space_version {SPACE_VERSION}",
            )
        try:
            return cls(
                name=d["name"],
                blocks=tuple(
                    BlockSpec(int(b["channels"]), int(b["stride"]), tuple(b["depths"])) for b in d["blocks"]
                ),
                ops=tuple(Op.parse(o) for o in d["ops"]),
                stem_size=int(d["stem_size"]),
                first_layer=Layer.parse_block(d["first_layer"])[0],
                num_features=int(d["num_features"]),
                meta=dict(d.get("meta", {})),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"invalid search space description: {e}") from e

    @property
    def identity(self) -> str:
        """A short hash of everything that defines the space (not its name)."""
        d = self.to_dict()
        d.pop("name")
        d.pop("meta", None)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.write_text(json.dumps(self.to_dict(), indent=2))
        return p

    @classmethod
    def load(cls, path: str | Path) -> SearchSpace:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"cannot read search space {path}: {e}") from e


def paper_space() -> SearchSpace:
    """The paper's space: 6 blocks of widths 24/40/80/112/192/320, up to 2/4/4/4/4/1 layers,
    each 4-layer block with cells of 2, 3 and 4 layers, 6 MBConv ops."""
    return SearchSpace(
        name="default",
        blocks=(
            BlockSpec(24, 2, (2,)),
            BlockSpec(40, 2, (2, 3, 4)),
            BlockSpec(80, 2, (2, 3, 4)),
            BlockSpec(112, 1, (2, 3, 4)),
            BlockSpec(192, 2, (2, 3, 4)),
            BlockSpec(320, 1, (1,)),
        ),
    )


def small_space() -> SearchSpace:
    """A reduced space for the CPU demo and tests: cells of 1-2 layers, 4 ops."""
    ops = tuple(Op("ir", k, e, 0.25) for e in (6, 3) for k in (3, 5))
    return SearchSpace(
        name="small",
        ops=ops,
        blocks=(
            BlockSpec(24, 2, (1, 2)),
            BlockSpec(40, 2, (1, 2)),
            BlockSpec(80, 2, (1, 2)),
            BlockSpec(112, 1, (1, 2)),
            BlockSpec(192, 2, (1, 2)),
            BlockSpec(320, 1, (1,)),
        ),
    )


SPACES = {"default": paper_space, "small": small_space}


def get_space(name_or_path: str | Path) -> SearchSpace:
    """A built-in space by name, or a space JSON file."""
    text = str(name_or_path)
    if text in SPACES:
        return SPACES[text]()
    if text.endswith(".json") or Path(text).is_file():
        if not Path(text).is_file():
            raise ConfigError(f"search space file {text} does not exist")
        return SearchSpace.load(text)
    raise UnknownNameError(
        "search space", text, SPACES, hint=f"use one of {', '.join(SPACES)} or a .json file"
    )
