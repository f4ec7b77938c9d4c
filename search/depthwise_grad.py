"""Faster training of depthwise convolutions on small feature maps, on a CPU.

PyTorch's CPU kernel for the *weight* gradient of a depthwise convolution is very slow when
the feature map is not larger than the kernel: a 5x5 depthwise conv over 672 channels on
2x2 maps (batch 128) takes 0.8 ms forward and about 35-50 ms for its weight gradient, and
at 1x1 the same holds. At 32 px every MBConv network of DNA's space spends most of a
training step there (bench/depthwise_grad.py: about 80% of an EfficientNet-B0 step).

On such maps the weight gradient is small work done as one batched matrix product: for
each channel, the products of every input position with every output position summed over
the batch (``C x HiWi x HoWo``), then each pair routed to the kernel tap that joins them
(a fixed 0/1 matrix per shape). The result equals PyTorch's (same sums, other order; about
1e-7 relative) and is deterministic. Larger maps keep PyTorch's kernel, which is fast there.

:func:`speed_up_depthwise` switches the depthwise ``nn.Conv2d`` modules of a model to
:class:`DepthwiseConv2d` in place: same parameters, same state dict, same forward. The fast
backward is used only while training on a CPU; evaluation, tracing and export run the plain
convolution.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn as nn
import torch.nn.functional as F

#: the batched product is used when the input map has at most this many positions or the
#: output map is a single position; on larger maps PyTorch's kernel is as fast or faster
SMALL_MAP = 16


def uses_matmul_grad(in_hw: tuple[int, int], out_hw: tuple[int, int]) -> bool:
    """Whether the weight gradient of a depthwise conv of these map sizes takes the batched product."""
    return in_hw[0] * in_hw[1] <= SMALL_MAP or out_hw[0] * out_hw[1] == 1


@lru_cache(maxsize=512)
def _tap_matrix(hi: int, wi: int, ho: int, wo: int, k: int, stride: int, pad: int) -> torch.Tensor:
    """``(hi*wi*ho*wo, k*k)``: 1 where input position and output position meet at that tap."""
    a = torch.arange(hi).view(hi, 1, 1, 1)
    b = torch.arange(wi).view(1, wi, 1, 1)
    h = torch.arange(ho).view(1, 1, ho, 1)
    w = torch.arange(wo).view(1, 1, 1, wo)
    i, j = a - h * stride + pad, b - w * stride + pad
    valid = ((i >= 0) & (i < k) & (j >= 0) & (j < k)).expand(hi, wi, ho, wo)
    tap = (i.clamp(0, k - 1) * k + j.clamp(0, k - 1)).expand(hi, wi, ho, wo)
    out = torch.zeros(hi, wi, ho, wo, k * k)
    out.scatter_(-1, tap.unsqueeze(-1), valid.unsqueeze(-1).float())
    return out.view(hi * wi * ho * wo, k * k)


def depthwise_weight_grad(
    x: torch.Tensor, grad_out: torch.Tensor, k: int, stride: int, pad: int
) -> torch.Tensor:
    """The weight gradient ``(C, 1, k, k)`` of a bias-free depthwise conv, as one batched product."""
    n, c, hi, wi = x.shape
    ho, wo = grad_out.shape[-2:]
    # contiguous copies: a channels_last tensor permuted this way is a strided view that
    # bmm handles about 100x slower
    xt = x.permute(1, 2, 3, 0).reshape(c, hi * wi, n).contiguous()
    gt = grad_out.permute(1, 0, 2, 3).reshape(c, n, ho * wo).contiguous()
    pairs = torch.bmm(xt, gt).view(c, -1)
    taps = _tap_matrix(hi, wi, ho, wo, k, stride, pad).to(pairs.dtype)
    return (pairs @ taps).view(c, 1, k, k)


class _DepthwiseConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, stride: int, pad: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.pad = stride, pad
        return F.conv2d(x, weight, None, stride, pad, 1, x.shape[1])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        x, weight = ctx.saved_tensors
        s, p, k = ctx.stride, ctx.pad, weight.shape[-1]
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        matmul = need_w and uses_matmul_grad(tuple(x.shape[-2:]), tuple(grad_out.shape[-2:]))
        gx = gw = None
        if need_x or (need_w and not matmul):
            gx, gw, _ = torch.ops.aten.convolution_backward(
                grad_out, x, weight, None, [s, s], [p, p], [1, 1], False, [0, 0], x.shape[1],
                [need_x, need_w and not matmul, False],
            )  # fmt: skip
        if matmul:
            gw = depthwise_weight_grad(x, grad_out, k, s, p)
        return gx, gw, None, None


class DepthwiseConv2d(nn.Conv2d):
    """A depthwise ``nn.Conv2d`` (square kernel, equal stride and padding, no bias) whose
    weight gradient on small maps takes :func:`depthwise_weight_grad` while training on a CPU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            torch.is_grad_enabled()
            and x.device.type == "cpu"
            and self.weight.requires_grad
            and not torch.jit.is_tracing()
            and not torch.jit.is_scripting()
        ):
            return _DepthwiseConv.apply(x, self.weight, self.stride[0], self.padding[0])
        return super().forward(x)


def _eligible(m: nn.Module) -> bool:
    return (
        type(m) is nn.Conv2d
        and m.groups == m.in_channels == m.out_channels
        and m.bias is None
        and m.padding_mode == "zeros"
        and isinstance(m.padding, tuple)
        and m.kernel_size[0] == m.kernel_size[1]
        and m.stride[0] == m.stride[1]
        and m.padding[0] == m.padding[1]
        and m.dilation == (1, 1)
    )


def speed_up_depthwise(model: nn.Module) -> int:
    """Switch ``model``'s depthwise convolutions to :class:`DepthwiseConv2d` in place (same
    parameters and state dict); returns how many were switched."""
    n = 0
    for m in model.modules():
        if _eligible(m):
            m.__class__ = DepthwiseConv2d
            n += 1
    return n
