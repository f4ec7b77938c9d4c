"""Architecture encodings: the one place that defines what a DNA-family layer is.

Pure data, no torch. A network is a stem (conv 3x3 s2), a list of stages of layers, and a
head (conv 1x1 to ``num_features``, pool, classifier). Each :class:`Layer` is one timm
block (``ds`` depthwise-separable or ``ir`` inverted residual / MBConv) and maps 1:1 onto a
timm block string such as ``ir_r1_k5_s2_e6_c24_se0.25``. The zoo builds timm
``EfficientNet`` models from :meth:`ArchEncoding.to_arch_def`; the search emits
:class:`ArchEncoding`; latency tables key layers with :func:`layer_key` over
:func:`iter_layers`. Nothing else parses block strings.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dna_zoo.errors import ArchitectureError

ENCODING_VERSION = 1
_BLOCK_RE = re.compile(r"^(ds|ir)(_[a-z]+[0-9.]+)+$")
_KINDS = ("ds", "ir")


@dataclass(frozen=True)
class Op:
    """What a layer computes, independent of its width: kind, kernel, expansion, SE ratio.

    ``se`` is relative to the layer's input channels (timm's EfficientNet convention).
    """

    kind: str = "ir"
    kernel: int = 3
    expansion: int = 6
    se: float = 0.25

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ArchitectureError(f"unknown layer kind '{self.kind}'", hint="use 'ir' or 'ds'")
        if self.kernel not in (1, 3, 5, 7, 9):
            raise ArchitectureError(f"kernel {self.kernel} is not one of 1, 3, 5, 7, 9")
        if self.kind == "ds" and self.expansion != 1:
            raise ArchitectureError("a 'ds' layer has no expansion (use expansion=1)")
        if self.expansion < 1:
            raise ArchitectureError(f"expansion must be >= 1, got {self.expansion}")
        if not 0.0 <= self.se < 1.0:
            raise ArchitectureError(f"se ratio must be in [0, 1), got {self.se}")

    @property
    def name(self) -> str:
        """Short name, e.g. ``e6_k3`` (or ``ds_k3``); used in tables and search spaces."""
        head = "ds" if self.kind == "ds" else f"e{self.expansion}"
        return f"{head}_k{self.kernel}" + (f"_se{self.se:g}" if self.se else "")

    @classmethod
    def parse(cls, name: str) -> Op:
        """Inverse of :attr:`name` (``e6_k3_se0.25``, ``ds_k3``)."""
        m = re.fullmatch(r"(ds|e(\d+))_k(\d+)(?:_se([0-9.]+))?", name)
        if not m:
            raise ArchitectureError(f"cannot parse op '{name}'", hint="expected e.g. 'e6_k3_se0.25'")
        kind = "ds" if m.group(1) == "ds" else "ir"
        return cls(
            kind=kind,
            kernel=int(m.group(3)),
            expansion=1 if kind == "ds" else int(m.group(2)),
            se=float(m.group(4) or 0.0),
        )


@dataclass(frozen=True)
class Layer:
    """One timm block: an :class:`Op` with its output channels and stride."""

    op: Op
    out_chs: int
    stride: int = 1

    def __post_init__(self) -> None:
        if self.out_chs < 1:
            raise ArchitectureError(f"out_chs must be positive, got {self.out_chs}")
        if self.stride not in (1, 2):
            raise ArchitectureError(f"stride must be 1 or 2, got {self.stride}")

    def block_str(self, repeat: int = 1) -> str:
        """The timm block string of this layer, repeated ``repeat`` times (stride on the first)."""
        op = self.op
        parts = [op.kind, f"r{repeat}", f"k{op.kernel}", f"s{self.stride}"]
        if op.kind == "ir":
            parts.append(f"e{op.expansion}")
        parts.append(f"c{self.out_chs}")
        if op.se:
            parts.append(f"se{op.se:g}")
        return "_".join(parts)

    @classmethod
    def parse_block(cls, block: str) -> list[Layer]:
        """Parse one timm block string into its (repeated) layers."""
        if not isinstance(block, str) or not _BLOCK_RE.match(block):
            raise ArchitectureError(
                f"cannot parse block string '{block}'",
                hint="expected e.g. 'ir_r1_k3_s2_e6_c24_se0.25'",
            )
        kind, *opts = block.split("_")
        values: dict[str, str] = {}
        for opt in opts:
            m = re.fullmatch(r"([a-z]+)([0-9.]+)", opt)
            if not m:
                raise ArchitectureError(f"cannot parse option '{opt}' in block string '{block}'")
            values[m.group(1)] = m.group(2)
        unknown = set(values) - {"r", "k", "s", "e", "c", "se"}
        if unknown:
            raise ArchitectureError(
                f"block string '{block}' uses options {sorted(unknown)} that DNA models do not use"
            )
        if "c" not in values:
            raise ArchitectureError(f"block string '{block}' has no output channels (c..)")
        try:
            repeat = int(values.get("r", "1"))
            op = Op(
                kind=kind,
                kernel=int(values.get("k", "3")),
                expansion=int(values.get("e", "1")),
                se=float(values.get("se", "0")),
            )
            stride = int(values.get("s", "1"))
            out_chs = int(values["c"])
        except ValueError as e:
            raise ArchitectureError(f"cannot parse block string '{block}': {e}") from e
        if repeat < 1:
            raise ArchitectureError(f"block string '{block}' repeats {repeat} times")
        first = cls(op, out_chs, stride)
        return [first] + [cls(op, out_chs, 1) for _ in range(repeat - 1)]


@dataclass(frozen=True)
class ArchEncoding:
    """A whole DNA-family network: stem width, stages of layers, head width.

    Stages follow timm's ``arch_def``: stage 0 is the fixed ``ds`` layer after the stem,
    stages 1..6 are the searched blocks of DNA.
    """

    stages: tuple[tuple[Layer, ...], ...]
    stem_size: int = 32
    num_features: int = 1280
    name: str | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not self.stages or any(len(s) == 0 for s in self.stages):
            raise ArchitectureError("an architecture needs at least one stage, and no empty stage")
        if self.stem_size < 1 or self.num_features < 1:
            raise ArchitectureError("stem_size and num_features must be positive")

    # --- conversions -------------------------------------------------------------------
    @classmethod
    def from_arch_def(
        cls,
        arch_def: Sequence[Sequence[str]],
        *,
        stem_size: int = 32,
        num_features: int = 1280,
        name: str | None = None,
    ) -> ArchEncoding:
        if isinstance(arch_def, str) or not isinstance(arch_def, Sequence):
            raise ArchitectureError("arch_def must be a list of stages, each a list of block strings")
        stages = []
        for stage in arch_def:
            if isinstance(stage, str) or not isinstance(stage, Sequence):
                raise ArchitectureError("each arch_def stage must be a list of block strings")
            layers: list[Layer] = []
            for block in stage:
                layers.extend(Layer.parse_block(block))
            stages.append(tuple(layers))
        return cls(tuple(stages), stem_size=stem_size, num_features=num_features, name=name)

    def to_arch_def(self) -> list[list[str]]:
        """timm ``arch_def`` strings; a layer and the identical stride-1 layers after it share one string."""
        out: list[list[str]] = []
        for stage in self.stages:
            strs: list[str] = []
            i = 0
            while i < len(stage):
                j = i + 1
                # timm applies a block string's stride to its first repeat only
                while (
                    j < len(stage)
                    and stage[j].stride == 1
                    and (stage[j].op, stage[j].out_chs) == (stage[i].op, stage[i].out_chs)
                ):
                    j += 1
                strs.append(stage[i].block_str(repeat=j - i))
                i = j
            out.append(strs)
        return out

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "encoding_version": ENCODING_VERSION,
            "arch_def": self.to_arch_def(),
            "stem_size": self.stem_size,
            "num_features": self.num_features,
        }
        if self.name:
            d["name"] = self.name
        if self.meta:
            d["meta"] = self.meta
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ArchEncoding:
        if not isinstance(d, dict) or "arch_def" not in d:
            raise ArchitectureError("an architecture encoding needs an 'arch_def' entry")
        version = d.get("encoding_version", ENCODING_VERSION)
        if version != ENCODING_VERSION:
            raise ArchitectureError(
                f"architecture encoding version {version} is not supported (this dna-zoo reads "
                f"version {ENCODING_VERSION})",
                hint="upgrade dna-zoo",
            )
        enc = cls.from_arch_def(
            d["arch_def"],
            stem_size=int(d.get("stem_size", 32)),
            num_features=int(d.get("num_features", 1280)),
            name=d.get("name"),
        )
        if d.get("meta"):
            object.__setattr__(enc, "meta", dict(d["meta"]))
        return enc

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @property
    def num_layers(self) -> int:
        return sum(len(s) for s in self.stages)


def load_encoding(source: str | Path | dict | ArchEncoding) -> ArchEncoding:
    """An encoding from an object, a dict, a JSON string, or a JSON file.

    A JSON file may be a bare encoding or any dna-zoo result file holding one under the
    key ``"arch"`` (search results, hub configs' ``model_args``).
    """
    if isinstance(source, ArchEncoding):
        return source
    if isinstance(source, dict):
        if "arch" in source and isinstance(source["arch"], dict):
            return ArchEncoding.from_dict(source["arch"])
        return ArchEncoding.from_dict(source)
    text = str(source)
    if text.lstrip().startswith("{"):
        try:
            return load_encoding(json.loads(text))
        except json.JSONDecodeError as e:
            raise ArchitectureError(f"architecture JSON is invalid: {e}") from e
    path = Path(text)
    if not path.is_file():
        raise ArchitectureError(f"architecture file {path} does not exist")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArchitectureError(f"{path} is not a valid architecture JSON file: {e}") from e
    return load_encoding(data)


# --- walking a network layer by layer (shared by cost models and latency tables) ---------
@dataclass(frozen=True)
class LayerInstance:
    """A layer placed in a network: its input channels and input resolution."""

    stage: int
    index: int
    layer: Layer
    in_chs: int
    in_res: int

    @property
    def out_res(self) -> int:
        return conv_out_size(self.in_res, self.layer.stride)

    @property
    def has_skip(self) -> bool:
        return self.layer.stride == 1 and self.in_chs == self.layer.out_chs


def conv_out_size(size: int, stride: int) -> int:
    """Spatial size after a 'same'-padded conv with this stride (timm pads k//2)."""
    return (size + stride - 1) // stride


def iter_layers(enc: ArchEncoding, input_size: int = 224) -> Iterator[LayerInstance]:
    """Every layer of ``enc`` in order, with its input channels and resolution."""
    chs = enc.stem_size
    res = conv_out_size(input_size, 2)
    for si, stage in enumerate(enc.stages):
        for li, layer in enumerate(stage):
            inst = LayerInstance(si, li, layer, chs, res)
            yield inst
            chs, res = layer.out_chs, inst.out_res


@dataclass(frozen=True)
class Part:
    """One part of a network in order: the stem, a placed layer, or the head.

    ``in_chs``/``in_res`` are what the part sees; ``out_chs`` is the stem width, the layer's
    output channels, or the head's ``num_features``; ``inst`` is set for layers only.
    """

    kind: str  # "stem" | "layer" | "head"
    in_chs: int
    in_res: int
    out_chs: int
    inst: LayerInstance | None = None


def iter_parts(enc: ArchEncoding, input_size: int = 224, *, in_chans: int = 3) -> Iterator[Part]:
    """The one walk over a network: stem, every layer (as :func:`iter_layers`), head."""
    yield Part("stem", in_chans, input_size, enc.stem_size)
    last: LayerInstance | None = None
    for inst in iter_layers(enc, input_size):
        yield Part("layer", inst.in_chs, inst.in_res, inst.layer.out_chs, inst)
        last = inst
    if last is None:  # ArchEncoding forbids empty networks
        raise ArchitectureError("network has no layers")
    yield Part("head", last.layer.out_chs, last.out_res, enc.num_features)


def layer_key(layer: Layer, in_chs: int, in_res: int, act: str = "swish") -> str:
    """The canonical key of a layer configuration, e.g.
    ``ir_k5_e6_se0.25_swish_i24_o40_r56_s2``. Latency tables are keyed by it."""
    op = layer.op
    exp = f"_e{op.expansion}" if op.kind == "ir" else ""
    se = f"_se{op.se:g}" if op.se else ""
    return f"{op.kind}_k{op.kernel}{exp}{se}_{act}_i{in_chs}_o{layer.out_chs}_r{in_res}_s{layer.stride}"


def stem_key(in_chans: int, stem_size: int, input_size: int, act: str = "swish") -> str:
    return f"stem_k3_{act}_i{in_chans}_o{stem_size}_r{input_size}_s2"


def head_key(in_chs: int, num_features: int, in_res: int, num_classes: int, act: str = "swish") -> str:
    return f"head_{act}_i{in_chs}_f{num_features}_r{in_res}_n{num_classes}"


def network_keys(
    enc: ArchEncoding, *, input_size: int = 224, in_chans: int = 3, num_classes: int = 1000
) -> list[str]:
    """All keys of a network, stem first and head last."""
    return [part_key(p, num_classes=num_classes) for p in iter_parts(enc, input_size, in_chans=in_chans)]


def part_key(part: Part, *, num_classes: int = 1000) -> str:
    """The latency-table key of one :class:`Part`."""
    if part.kind == "stem":
        return stem_key(part.in_chs, part.out_chs, part.in_res)
    if part.kind == "head":
        return head_key(part.in_chs, part.out_chs, part.in_res, num_classes)
    assert part.inst is not None
    return layer_key(part.inst.layer, part.in_chs, part.in_res)
