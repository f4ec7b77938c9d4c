"""Parameters and multiply-accumulates (MACs) of DNA-family networks.

Two ways that must agree, and tests check they do:

- :func:`encoding_cost` computes them analytically from an :class:`ArchEncoding`, layer by
  layer (no torch): the search's params/MACs cost models add these per-layer figures.
- :func:`count_params` / :func:`count_macs` measure a built torch model.

MAC conventions (always say which one a figure uses):

- ``"conv_linear"``: multiply-adds of convolutions and linear layers only (what
  ``torch.utils.flop_counter`` counts, halved). The authors' 394M for DNA-b is this.
- ``"all"``: plus one op per element of every BatchNorm and activation output, which is how
  the paper's other figures (348M, 466M, 611M) were counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dna_zoo.arch import ArchEncoding, LayerInstance, Part, conv_out_size, iter_parts

MAC_CONVENTIONS = ("conv_linear", "all")
#: What each MAC convention counts, in words (printed next to the figures).
MAC_CONVENTION_TEXT = {
    "conv_linear": "conv+linear = multiply-adds of convolutions and linear layers",
    "all": "all = conv+linear plus one per BatchNorm/activation output element (the paper's count)",
}


@dataclass(frozen=True)
class Cost:
    """Parameters and MACs (both conventions) of a layer or a network."""

    params: int = 0
    macs: int = 0  # conv_linear
    elementwise: int = 0  # BN + activation output elements

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            self.params + other.params,
            self.macs + other.macs,
            self.elementwise + other.elementwise,
        )

    def macs_as(self, convention: str = "conv_linear") -> int:
        if convention == "conv_linear":
            return self.macs
        if convention == "all":
            return self.macs + self.elementwise
        from dna_zoo.errors import UnknownNameError

        raise UnknownNameError("MAC convention", convention, MAC_CONVENTIONS)

    def to_dict(self) -> dict[str, int]:
        return {
            "params": self.params,
            "macs_conv_linear": self.macs_as("conv_linear"),
            "macs_all": self.macs_as("all"),
        }


def make_divisible(v: float, divisor: int = 8, round_limit: float = 0.9) -> int:
    """Channel rounding as timm's ``InvertedResidual`` applies it to expanded widths."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < round_limit * v:
        new_v += divisor
    return new_v


def _se(chs: int, se_ratio: float) -> tuple[int, int, int]:
    """(params, macs, elementwise) of a squeeze-excite on ``chs`` channels."""
    if not se_ratio:
        return 0, 0, 0
    rd = round(chs * se_ratio)
    return chs * rd + rd + rd * chs + chs, 2 * chs * rd, rd + chs


def layer_cost(inst: LayerInstance) -> Cost:
    """Params and MACs of one placed layer, matching timm's blocks exactly."""
    layer, op = inst.layer, inst.layer.op
    cin, cout, k = inst.in_chs, layer.out_chs, op.kernel
    hin, hout = inst.in_res**2, inst.out_res**2
    if op.kind == "ds":
        se_p, se_m, se_e = _se(cin, op.se)
        params = k * k * cin + 2 * cin + se_p + cin * cout + 2 * cout
        macs = k * k * cin * hout + se_m + cin * cout * hout
        elementwise = 2 * cin * hout + se_e + cout * hout
        return Cost(params, macs, elementwise)
    mid = make_divisible(cin * op.expansion)
    # timm divides the SE ratio by the expansion and applies it to the expanded width
    se_p, se_m, se_e = _se(mid, op.se / op.expansion if op.se else 0.0)
    params = cin * mid + 2 * mid + k * k * mid + 2 * mid + se_p + mid * cout + 2 * cout
    macs = cin * mid * hin + k * k * mid * hout + se_m + mid * cout * hout
    elementwise = 2 * mid * hin + 2 * mid * hout + se_e + cout * hout
    return Cost(params, macs, elementwise)


def stem_cost(in_chans: int, stem_size: int, input_size: int) -> Cost:
    res = ((input_size + 1) // 2) ** 2
    return Cost(
        9 * in_chans * stem_size + 2 * stem_size,
        9 * in_chans * stem_size * res,
        2 * stem_size * res,
    )


def head_cost(in_chs: int, num_features: int, in_res: int, num_classes: int) -> Cost:
    hw = in_res**2
    params = in_chs * num_features + 2 * num_features
    macs = in_chs * num_features * hw
    if num_classes:
        params += num_features * num_classes + num_classes
        macs += num_features * num_classes
    return Cost(params, macs, 2 * num_features * hw)


def encoding_cost(
    enc: ArchEncoding, *, input_size: int = 224, in_chans: int = 3, num_classes: int = 1000
) -> Cost:
    """Analytic params and MACs of a whole network."""
    parts = iter_parts(enc, input_size, in_chans=in_chans)
    return sum((part_cost(p, num_classes=num_classes) for p in parts), Cost())


def part_cost(part: Part, *, num_classes: int = 1000) -> Cost:
    """Analytic params and MACs of one :class:`~dna_zoo.arch.Part` of a network."""
    if part.kind == "stem":
        return stem_cost(part.in_chs, part.out_chs, part.in_res)
    if part.kind == "head":
        return head_cost(part.in_chs, part.out_chs, part.in_res, num_classes)
    assert part.inst is not None
    return layer_cost(part.inst)


@dataclass(frozen=True)
class StageCost:
    """One row of a network's per-stage table: the stem, a stage of layers, or the head."""

    stage: int | str
    layers: int
    ops: str
    out_chs: int
    stride: int
    out_res: int
    cost: Cost

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "layers": self.layers,
            "ops": self.ops,
            "out_chs": self.out_chs,
            "stride": self.stride,
            "out_res": self.out_res,
            **self.cost.to_dict(),
        }


def stage_costs(
    enc: ArchEncoding, *, input_size: int = 224, in_chans: int = 3, num_classes: int = 1000
) -> list[StageCost]:
    """Params and MACs per stage (stem, each stage, head); they add up to :func:`encoding_cost`."""
    rows: list[StageCost] = []
    by_stage: dict[int, list[LayerInstance]] = {}
    for part in iter_parts(enc, input_size, in_chans=in_chans):
        cost = part_cost(part, num_classes=num_classes)
        if part.kind == "stem":
            rows.append(StageCost("stem", 1, "conv3x3", part.out_chs, 2, conv_out_size(part.in_res, 2), cost))
        elif part.kind == "layer":
            assert part.inst is not None
            by_stage.setdefault(part.inst.stage, []).append(part.inst)
        else:
            for si, insts in by_stage.items():
                stride = 1
                for i in insts:
                    stride *= i.layer.stride
                rows.append(
                    StageCost(
                        si, len(insts), " ".join(i.layer.op.name.replace("_se0.25", "") for i in insts),
                        insts[-1].layer.out_chs, stride, insts[-1].out_res,
                        sum((layer_cost(i) for i in insts), start=Cost()),
                    )
                )  # fmt: skip
            rows.append(StageCost("head", 1, f"conv1x1+pool+fc{num_classes}", part.out_chs, 1, 1, cost))
    return rows


def count_params(model) -> int:
    """Number of parameters of a torch model."""
    return sum(p.numel() for p in model.parameters())


def count_macs(
    model, input_size: tuple[int, int, int] = (3, 224, 224), *, convention: str = "conv_linear"
) -> int:
    """MACs of one forward pass at batch 1, measured with torch's FLOP counter.

    ``"all"`` adds the output elements of every BatchNorm and activation module.
    """
    import torch
    import torch.nn as nn
    from torch.utils.flop_counter import FlopCounterMode

    if convention not in MAC_CONVENTIONS:
        from dna_zoo.errors import UnknownNameError

        raise UnknownNameError("MAC convention", convention, MAC_CONVENTIONS)
    elementwise = [0]
    handles = []
    if convention == "all":
        norm_act = (
            nn.BatchNorm2d,
            nn.SiLU,
            nn.Sigmoid,
            nn.ReLU,
            nn.Hardswish,
            nn.Hardsigmoid,
            nn.GELU,
        )

        def hook(mod: nn.Module, inp: object, out: torch.Tensor) -> None:
            elementwise[0] += out.numel()

        handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, norm_act)]
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters())
        x = torch.zeros(1, *input_size, dtype=param.dtype, device=param.device)
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return fc.get_total_flops() // 2 + elementwise[0]
