"""The fast depthwise weight gradient equals PyTorch's, and a switched model is the same model."""

from __future__ import annotations

import copy

import pytest
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F

from dna_zoo.search.depthwise_grad import (
    DepthwiseConv2d,
    depthwise_weight_grad,
    speed_up_depthwise,
    uses_matmul_grad,
)


@pytest.mark.parametrize(
    "channels,k,hw,stride",
    [
        (8, 3, 4, 1),
        (8, 5, 4, 1),
        (6, 5, 2, 1),
        (6, 3, 2, 2),
        (5, 5, 2, 2),
        (7, 3, 1, 1),
        (4, 3, 3, 1),
        (4, 5, 1, 1),
    ],
)
def test_weight_grad_matches_pytorch(channels: int, k: int, hw: int, stride: int) -> None:
    g = torch.Generator().manual_seed(channels * k + hw)
    pad = k // 2
    x = torch.randn(5, channels, hw, hw, generator=g)
    w = torch.randn(channels, 1, k, k, generator=g)
    out = F.conv2d(x, w, None, stride, pad, 1, channels)
    gy = torch.randn(out.shape, generator=g)
    ref = torch.ops.aten.convolution_backward(
        gy, x, w, None, [stride] * 2, [pad] * 2, [1, 1], False, [0, 0], channels, [False, True, False]
    )[1]
    ours = depthwise_weight_grad(x, gy, k, stride, pad)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    # channels_last inputs give the same numbers
    cl = depthwise_weight_grad(
        x.contiguous(memory_format=torch.channels_last),
        gy.contiguous(memory_format=torch.channels_last),
        k,
        stride,
        pad,
    )
    torch.testing.assert_close(cl, ours)


def test_small_maps_only() -> None:
    assert uses_matmul_grad((2, 2), (2, 2))
    assert uses_matmul_grad((2, 2), (1, 1))
    assert not uses_matmul_grad((16, 16), (16, 16))
    assert not uses_matmul_grad((8, 8), (4, 4))


def test_switched_model_trains_like_the_original() -> None:
    torch.manual_seed(0)
    ref = timm.create_model("efficientnet_b0", num_classes=10).train()
    fast = copy.deepcopy(ref)
    n = speed_up_depthwise(fast)
    assert n == sum(1 for m in ref.modules() if isinstance(m, nn.Conv2d) and m.groups > 1) > 10
    assert all(
        type(m) is DepthwiseConv2d for m in fast.modules() if isinstance(m, nn.Conv2d) and m.groups > 1
    )
    assert list(fast.state_dict()) == list(ref.state_dict())
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    for net in (ref, fast):
        F.cross_entropy(net(x), y).backward()
    for (name, p), q in zip(ref.named_parameters(), fast.parameters(), strict=True):
        # summation order differs between the two kernels (and between AVX2 and AVX-512 builds
        # of them): allow float32 rounding relative to the tensor's own scale
        scale = float(p.grad.abs().max())
        torch.testing.assert_close(
            q.grad, p.grad, rtol=1e-4, atol=1e-4 * scale + 1e-8, msg=lambda m, n=name: f"{n}: {m}"
        )
    with torch.no_grad():
        torch.testing.assert_close(fast.eval()(x), ref.eval()(x))


def test_switched_model_exports_to_onnx(tmp_path) -> None:
    from dna_zoo.export.onnx_writer import write_onnx_file

    net = timm.create_model("mobilenetv3_small_050", num_classes=10).eval()
    assert speed_up_depthwise(net) > 0
    path = write_onnx_file(
        net, [torch.randn(1, 3, 32, 32)], tmp_path / "m.onnx", input_names=["input"], exporter="torchscript"
    )
    assert path.stat().st_size > 0  # onnx.checker ran inside the writer
