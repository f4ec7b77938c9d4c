"""The local roofline's dense peak comes from measured gemm rates, never fp32 x 2."""

from __future__ import annotations

import torch

from dna_zoo.search.latency.estimate import local_dense_peak

# the shape measure_local_specs gives on a GPU (H200-like figures: fp16 ~15x fp32)
GPU = {"fp32": 50_000.0, "tf32": 400_000.0, "fp16": 750_000.0, "bf16": 740_000.0}


def test_gpu_half_peak_is_the_measured_half_gemm():
    assert local_dense_peak(GPU, "fp16", gpu=True) == GPU["fp16"]
    assert local_dense_peak(GPU, "bf16", gpu=True) == GPU["bf16"]
    assert local_dense_peak(GPU, "fp16", gpu=True) != 2 * GPU["fp32"]


def test_gpu_fp32_peak_follows_cudnn_tf32(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    assert local_dense_peak(GPU, "fp32", gpu=True) == GPU["tf32"]
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    assert local_dense_peak(GPU, "fp32", gpu=True) == GPU["fp32"]


def test_cpu_measured_specs_give_the_fp32_rate():
    from dna_zoo.search.latency.devices import get_device, measure_local_specs

    m = measure_local_specs(get_device("cpu"), threads=1)
    assert set(m.peak_gflops) == {"fp32"}
    assert local_dense_peak(m.peak_gflops, "bf16", gpu=False) == m.peak_gflops["fp32"]
