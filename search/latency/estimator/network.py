"""Networks as the latency estimator sees them: layer rows, and the kernels a runtime launches.

A network is a list of layer rows (plain lists, so they live in JSON files as they are):

- ``["conv", in_hw, cin, cout, kernel, stride, groups, act, has_bn]``: a convolution;
- ``["mb", in_hw, cin, cout, kernel, stride, mid, act, se_chs, id_skip, groups, has_expand]``:
  an inverted-residual (MBConv) or depthwise-separable block: 1x1 expansion to ``mid`` (if
  ``has_expand``; ``groups`` > 1 means grouped 1x1 convs with a channel shuffle), kxk depthwise,
  squeeze-excite with ``se_chs`` reduced channels (0 = none), 1x1 projection, identity add;
- ``["pool", hw, channels]``: global average pool;
- ``["fc", in_features, out_features]``: the classifier.

``act`` is ``relu`` (ReLU / ReLU6, which runtimes fuse into the conv), ``hswish``, ``swish``
(their own elementwise kernels) or ``none``. Anything else is an :class:`UnsupportedOpError`
naming the op. Builders here turn DNA / timm encodings and the FBNet space of the public data
into rows; :func:`kernels` expands rows into :class:`Kernel` records.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from dna_zoo.arch import ArchEncoding, Layer, iter_layers
from dna_zoo.complexity import make_divisible
from dna_zoo.errors import ConfigError

ACTS = ("relu", "hswish", "swish", "none")
ROW_KINDS = ("conv", "mb", "pool", "fc")
# kernel kinds
COMPUTE_KINDS = ("dense", "depthwise", "grouped")
FUSABLE_KINDS = ("norm", "relu")  # batch norm and ReLU: folded / fused by most runtimes
ELEMENTWISE_KINDS = ("act", "add", "pool", "shuffle", "scale")


class UnsupportedOpError(ConfigError):
    """A network uses an op the latency estimator cannot express."""

    def __init__(self, op: str, where: str = "") -> None:
        self.op = op
        at = f" ({where})" if where else ""
        super().__init__(
            f"the latency estimator cannot express op '{op}'{at}",
            hint=f"it covers layer rows {', '.join(ROW_KINDS)} with activations {', '.join(ACTS)}, "
            "squeeze-excite, grouped 1x1 convs with channel shuffle and identity skips; "
            "measure such a network on the device instead (dna latency build)",
        )


@dataclass(frozen=True)
class Kernel:
    """One kernel a runtime launches, per image: FLOPs, activation values moved, weight values."""

    kind: str
    flops: float = 0.0
    act_values: float = 0.0
    weight_values: float = 0.0


@dataclass(frozen=True)
class Network:
    """A network for the estimator: a name, its input size and layer rows."""

    name: str
    input_size: int
    rows: tuple[tuple[Any, ...], ...]

    def __post_init__(self) -> None:
        for i, row in enumerate(self.rows):
            check_row(row, where=f"{self.name} layer {i}")

    def macs(self) -> float:
        """Multiply-accumulates of the conv and linear kernels (per image)."""
        return sum(k.flops for k in kernels(self.rows) if k.kind in COMPUTE_KINDS) / 2

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, name: str = "network") -> Network:
        if "layers" not in d or "input_size" not in d:
            raise ConfigError(f"{name}: a layer-row network needs 'input_size' and 'layers'")
        return cls(str(d.get("name", name)), int(d["input_size"]), tuple(tuple(r) for r in d["layers"]))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "input_size": self.input_size, "layers": [list(r) for r in self.rows]}


_ROW_LEN = {"conv": 9, "mb": 12, "pool": 3, "fc": 3}


def check_row(row: Sequence[Any], *, where: str = "") -> None:
    """Raise :class:`UnsupportedOpError` for a row kind or activation the estimator does not know."""
    if not row or row[0] not in ROW_KINDS:
        raise UnsupportedOpError(str(row[0]) if row else "<empty row>", where)
    if len(row) != _ROW_LEN[row[0]]:
        raise ConfigError(
            f"layer row {list(row)} ({where}) has {len(row)} fields, '{row[0]}' needs {_ROW_LEN[row[0]]}",
            hint="see search/latency/estimator/network.py for the row layout",
        )
    act = row[7] if row[0] in ("conv", "mb") else "none"
    if act not in ACTS:
        raise UnsupportedOpError(f"activation {act}", where)


def _out(hw: int, stride: int) -> int:
    return (hw + stride - 1) // stride


def _act_kernel(act: str, values: float) -> list[Kernel]:
    if act == "relu":
        return [Kernel("relu", act_values=2 * values)]
    if act in ("hswish", "swish"):
        return [Kernel("act", act_values=2 * values)]
    return []


def _conv(hw: int, cin: int, cout: int, k: int, s: int, g: int, act: str, bn: bool) -> list[Kernel]:
    ho = _out(hw, s)
    kind = "dense" if g == 1 else ("depthwise" if g == cin == cout else "grouped")
    out = [
        Kernel(
            kind,
            flops=2.0 * k * k * (cin // g) * cout * ho * ho,
            act_values=cin * hw * hw + cout * ho * ho,
            weight_values=k * k * (cin // g) * cout,
        )
    ]
    if bn:
        out.append(Kernel("norm", act_values=2 * cout * ho * ho))
    return out + _act_kernel(act, cout * ho * ho)


def _mb(row: Sequence[Any]) -> list[Kernel]:
    _, hw, cin, cout, k, s, mid, act, se, skip, g, expand = row
    ho = _out(hw, s)
    out: list[Kernel] = []
    if expand:
        out += _conv(hw, cin, mid, 1, 1, g, act, True)
        if g > 1:
            out.append(Kernel("shuffle", act_values=2 * mid * hw * hw))
    out += _conv(hw, mid, mid, k, s, mid, act, True)
    if se:
        out += [
            Kernel("pool", act_values=mid * ho * ho + mid),
            Kernel("dense", flops=2.0 * mid * se, act_values=mid + se, weight_values=mid * se),
            Kernel("dense", flops=2.0 * se * mid, act_values=mid + se, weight_values=mid * se),
            Kernel("act", act_values=2 * mid),  # the gate (sigmoid / hard sigmoid)
            Kernel("scale", act_values=3 * mid * ho * ho),
        ]
    out += _conv(ho, mid, cout, 1, 1, g, "none", True)
    if skip:
        out.append(Kernel("add", act_values=3 * cout * ho * ho))
    return out


def kernels(rows: Iterable[Sequence[Any]]) -> list[Kernel]:
    """Every kernel of the rows, in order (per image)."""
    out: list[Kernel] = []
    for row in rows:
        kind = row[0]
        if kind == "conv":
            _, hw, cin, cout, k, s, g, act, bn = row
            out += _conv(hw, cin, cout, k, s, g, act, bool(bn))
        elif kind == "mb":
            out += _mb(row)
        elif kind == "pool":
            out.append(Kernel("pool", act_values=row[2] * row[1] * row[1] + row[2]))
        elif kind == "fc":
            cin, cout = row[1], row[2]
            out.append(
                Kernel("dense", flops=2.0 * cin * cout, act_values=cin + cout, weight_values=cin * cout)
            )
        else:
            raise UnsupportedOpError(str(kind))
    return out


# --- builders ------------------------------------------------------------------------------------
def layer_row(layer: Layer, cin: int, in_res: int) -> tuple[Any, ...]:
    """The row of one DNA / timm layer (``ir`` or ``ds``, swish, SE on the expanded channels)."""
    op = layer.op
    if op.kind == "ir":
        mid = make_divisible(cin * op.expansion)
        se = round(mid * op.se / op.expansion) if op.se else 0
    else:
        mid = cin
        se = round(cin * op.se) if op.se else 0
    skip = int(layer.stride == 1 and cin == layer.out_chs)
    expand = int(op.kind == "ir")
    return ("mb", in_res, cin, layer.out_chs, op.kernel, layer.stride, mid, "swish", se, skip, 1, expand)


def stem_rows(in_chans: int, stem: int, input_size: int) -> list[tuple[Any, ...]]:
    return [("conv", input_size, in_chans, stem, 3, 2, 1, "swish", 1)]


def head_rows(in_chs: int, features: int, in_res: int, num_classes: int) -> list[tuple[Any, ...]]:
    return [
        ("conv", in_res, in_chs, features, 1, 1, 1, "swish", 1),
        ("pool", in_res, features),
        ("fc", features, num_classes),
    ]


def encoding_rows(enc: ArchEncoding, *, input_size: int = 224, in_chans: int = 3, num_classes: int = 1000):
    """Rows of a DNA / timm EfficientNet encoding, grouped as stem, one entry per layer, head."""
    layers = []
    last = None
    for inst in iter_layers(enc, input_size):
        layers.append((layer_row(inst.layer, inst.in_chs, inst.in_res),))
        last = inst
    assert last is not None  # ArchEncoding forbids empty networks
    head = head_rows(last.layer.out_chs, enc.num_features, last.out_res, num_classes)
    return stem_rows(in_chans, enc.stem_size, input_size), layers, head


def encoding_network(
    enc: ArchEncoding, *, input_size: int = 224, in_chans: int = 3, num_classes: int = 1000
) -> Network:
    stem, layers, head = encoding_rows(enc, input_size=input_size, in_chans=in_chans, num_classes=num_classes)
    rows = [*stem, *(r for rows in layers for r in rows), *head]
    return Network(enc.name or "network", input_size, tuple(rows))


def fbnet_network(name: str, ops: Sequence[int], space: dict[str, Any]) -> Network:
    """A network of the FBNet (HW-NAS-Bench CIFAR) space from its 22 op indices."""
    fields = space["positions_fields"]
    stem_in, stem_out = space["stem"]
    head_in, feats, classes = space["head"]
    rows: list[tuple[Any, ...]] = [("conv", 32, stem_in, stem_out, 3, 1, 1, "relu", 1)]
    for idx, pos in zip(ops, space["positions"], strict=True):
        p = dict(zip(fields, pos, strict=True))
        hw, cin, cout, s = p["in_hw"], p["in_channels"], p["out_channels"], p["stride"]
        op_name = space["op_names"][idx]
        op = space["ops"][op_name]
        if op["kernel"] is None:  # skip
            if cin != cout or s != 1:
                rows.append(("conv", hw, cin, cout, 1, s, 1, "relu", 1))
            continue
        e, g = op["expansion"], op["groups"]
        skip = int(cin == cout and s == 1)
        rows.append(("mb", hw, cin, cout, op["kernel"], s, cin * e, "relu", 0, skip, g, 1))
    last_hw = space["positions"][-1][fields.index("out_hw")]
    rows += [
        ("conv", last_hw, head_in, feats, 1, 1, 1, "relu", 1),
        ("pool", last_hw, feats),
        ("fc", feats, classes),
    ]
    return Network(name, 32, tuple(rows))
