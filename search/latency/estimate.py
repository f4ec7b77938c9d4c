"""Estimated latency tables from a device's specs, for devices without a measured table.

Named devices (phones, Jetsons, GPUs, a user's ``board.json``) get the calibrated estimator
(:mod:`dna_zoo.search.latency.estimator`, fitted on public on-device measurements); every
such table quotes the estimator's held-out error for the device's class
(:func:`estimate_info`). Local devices (``cpu``, ``gpu``) keep the plain roofline below, with
specs measured by a micro-benchmark: their measured tables are what to use there.

The plain roofline:

Each layer is split into the kernels a runtime launches (expand 1x1, depthwise kxk, SE
pool / two FCs / scale, project 1x1, residual add; stem conv; head conv, pool,
classifier). A kernel takes ``max(FLOPs / peak, bytes / bandwidth)`` plus a launch
overhead; a layer is the sum of its kernels. Dense matrix work may run at the precision's
peak (tensor cores); depthwise and elementwise work runs on the vector units.

Rooflines are optimistic (real kernels rarely reach peak) but keep the ORDER of layers
right, which is what a search needs most. Everything made here is marked ``estimated`` and
comes with a warning naming the command that measures the device for real.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dna_zoo.arch import ArchEncoding
from dna_zoo.complexity import make_divisible
from dna_zoo.errors import ConfigError
from dna_zoo.search.latency.devices import DeviceProfile, build_command, get_device, measure_local_specs
from dna_zoo.search.latency.estimator.model import (
    FEATURES,
    coef_for,
    device_class,
    network_ms,
    shipped_params,
    specs_for,
)
from dna_zoo.search.latency.estimator.network import Network, head_rows, kernels, layer_row, stem_rows
from dna_zoo.search.latency.items import Item, items_for, network_items, published_networks
from dna_zoo.search.latency.table import (
    ESTIMATED,
    Calibration,
    Entry,
    LatencyTable,
    TableSpec,
    library_versions,
)
from dna_zoo.search.space import SearchSpace

logger = logging.getLogger(__name__)

_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}


@dataclass(frozen=True)
class Roofline:
    """The three numbers the estimate uses, and where they come from."""

    peak_gflops: float  # dense (matrix) work at this precision
    vector_gflops: float  # depthwise / elementwise work
    bandwidth_gbs: float
    launch_us: float
    bytes_per_value: int
    source: str

    def kernel_ms(self, macs: float, values: float, *, dense: bool = True) -> float:
        peak = self.peak_gflops if dense else self.vector_gflops
        compute = 2.0 * macs / (peak * 1e9)
        memory = values * self.bytes_per_value / (self.bandwidth_gbs * 1e9)
        return (max(compute, memory) + self.launch_us * 1e-6) * 1e3


def local_dense_peak(measured: dict[str, float], precision: str, *, gpu: bool) -> float:
    """Dense peak (GFLOP/s) of a local device at ``precision`` from its measured gemm rates:
    half / bf16 gemm on a GPU (tensor cores), TF32 for fp32 where cuDNN convolutions may use
    it (torch's default), else the fp32 gemm rate."""
    import torch

    if gpu and precision in measured:
        if precision == "fp32" and "tf32" in measured and torch.backends.cudnn.allow_tf32:
            return measured["tf32"]
        return measured[precision]
    if gpu and precision in ("fp16", "bf16"):
        return measured.get("fp16", measured["fp32"])
    return measured["fp32"]


def roofline_for(profile: DeviceProfile, precision: str, *, threads: int | None = None) -> Roofline:
    """The device's roofline: published specs, or for a local device a short micro-benchmark."""
    if profile.local:
        m = measure_local_specs(profile, threads=threads)
        peak = local_dense_peak(m.peak_gflops, precision, gpu=profile.kind == "gpu")
        return Roofline(
            peak,
            m.peak_gflops["fp32"],
            m.memory_bandwidth_gbs,
            m.launch_overhead_us,
            _BYTES[precision],
            m.source,
        )
    if precision not in profile.peak_gflops or not profile.memory_bandwidth_gbs:
        raise ConfigError(
            f"no published {precision} specs for {profile.name}",
            hint=f"known precisions: {', '.join(profile.peak_gflops) or 'none'}",
        )
    fp32 = profile.peak_gflops.get("fp32", profile.peak_gflops[precision])
    vector = fp32 * (2.0 if precision in ("fp16", "bf16", "int8") else 1.0)
    vector = min(vector, profile.peak_gflops[precision])
    return Roofline(
        profile.peak_gflops[precision],
        vector,
        float(profile.memory_bandwidth_gbs),
        float(profile.launch_overhead_us or 5.0),
        _BYTES[precision],
        profile.source,
    )


def item_ms(item: Item, roof: Roofline, *, batch: int = 1, num_classes: int = 1000) -> float:
    """Roofline time (ms) of one table item."""
    b = batch
    if item.kind == "stem":
        cin, cout, r = item.in_chs, item.out_chs, item.in_res
        ro = (r + 1) // 2
        return roof.kernel_ms(
            b * 9 * cin * cout * ro * ro, b * (cin * r * r + cout * ro * ro) + 9 * cin * cout
        )
    if item.kind == "head":
        cin, f, r = item.in_chs, item.out_chs, item.in_res
        t = roof.kernel_ms(b * cin * f * r * r, b * (cin + f) * r * r + cin * f)
        t += roof.kernel_ms(0, b * f * r * r, dense=False)  # global pool
        t += roof.kernel_ms(b * f * num_classes, b * (f + num_classes) + f * num_classes)
        return t
    assert item.layer is not None
    layer, op = item.layer, item.layer.op
    cin, cout, k, r = item.in_chs, layer.out_chs, op.kernel, item.in_res
    ro = (r + layer.stride - 1) // layer.stride
    t = 0.0
    if op.kind == "ir":
        mid = make_divisible(cin * op.expansion)
        t += roof.kernel_ms(b * cin * mid * r * r, b * (cin + mid) * r * r + cin * mid)
        se_ratio = op.se / op.expansion if op.se else 0.0
    else:
        mid = cin
        se_ratio = op.se
    t += roof.kernel_ms(b * k * k * mid * ro * ro, b * mid * (r * r + ro * ro) + k * k * mid, dense=False)
    if se_ratio:
        rd = round(mid * se_ratio)
        t += roof.kernel_ms(0, b * mid * ro * ro, dense=False)  # pool
        t += roof.kernel_ms(b * 2 * mid * rd, 2 * mid * rd, dense=False)  # two tiny FCs
        t += roof.kernel_ms(0, b * 2 * mid * ro * ro, dense=False)  # scale
    t += roof.kernel_ms(b * mid * cout * ro * ro, b * (mid + cout) * ro * ro + mid * cout)
    if layer.stride == 1 and cin == cout:
        t += roof.kernel_ms(0, b * 3 * cout * ro * ro, dense=False)
    return t


def estimate_info(spec: TableSpec) -> dict[str, Any]:
    """What an estimate for ``spec`` is: the estimator, the device class, its held-out error and
    the command that measures the device for real (the ``estimate`` sub-object of outputs)."""
    profile = get_device(spec.device)
    command = build_command(spec.device, spec.runtime, spec.precision, input_size=spec.input_size)
    if profile.local:
        return {
            "estimated": True,
            "estimator": "roofline (uncalibrated; specs measured here)",
            "device_class": None,
            "held_out_error": None,
            "measure_command": command,
        }
    cls = device_class(profile)
    held = shipped_params().get(cls).held_out
    return {
        "estimated": True,
        "estimator": "calibrated roofline v2 (fitted on public on-device measurements)",
        "device_class": cls,
        "held_out_error": {
            "mean_abs_pct_error": round(held["mean_abs_pct_error"], 1),
            "worst_setting_mean_abs_pct_error": round(held["worst_setting_mean_abs_pct_error"], 1),
            "mean_spearman_rho": None
            if held.get("mean_spearman_rho") is None
            else round(held["mean_spearman_rho"], 3),
            "method": held["method"],
        },
        "measure_command": command,
    }


def held_out_text(info: dict[str, Any]) -> str:
    """E.g. ``held-out error on unseen phone-cpu devices: mean 21.7%, worst 33.5%``."""
    h = info.get("held_out_error")
    if not h:
        return "no held-out error (uncalibrated roofline)"
    return (
        f"held-out error on unseen {info['device_class']} devices: mean {h['mean_abs_pct_error']:.1f}%, "
        f"worst {h['worst_setting_mean_abs_pct_error']:.1f}%"
    )


def estimate_warning(spec: TableSpec) -> str:
    info = estimate_info(spec)
    return (
        f"latency for {spec.device} ({spec.runtime}, {spec.precision}) is an ESTIMATE from the "
        f"device's specs ({info['estimator']}; {held_out_text(info)}), not a measurement; "
        f"to measure it, run on the device: {info['measure_command']}"
    )


def item_rows(item: Item, *, in_chans: int = 3, num_classes: int = 1000) -> list[tuple[Any, ...]]:
    """The estimator's layer rows of one table item."""
    if item.kind == "stem":
        return stem_rows(item.in_chs, item.out_chs, item.in_res)
    if item.kind == "head":
        return head_rows(item.in_chs, item.out_chs, item.in_res, num_classes)
    assert item.layer is not None
    return [layer_row(item.layer, item.in_chs, item.in_res)]


def _v2_entries(
    items: list[Item], spec: TableSpec, profile: DeviceProfile
) -> tuple[dict[str, Entry], float, dict]:
    params = shipped_params().get(device_class(profile))
    specs = specs_for(profile, spec.precision)
    coef = coef_for(params, specs)
    unit = params.unit(specs)
    entries = {}
    for it in items:
        ks = kernels(item_rows(it, num_classes=spec.num_classes))
        ms = network_ms(ks, specs, params, batch=spec.batch, per_inference=False)
        entries[it.key] = Entry(ms, 0.0, 0, ESTIMATED)
    overhead = float(coef[FEATURES.index("per_inference")] * unit)
    method = {
        "kind": "calibrated-roofline-v2",
        "device_class": params.device_class,
        "coefficients": dict(zip(FEATURES, map(float, coef), strict=True)),  # this device's (architecture)
        "fixed_cost": "absolute" if params.own_fixed(specs) is not None else params.fixed_cost,
        "fixed_cost_unit": unit,
        "overlap": params.overlap,
        "peak_gflops": specs.peak_gflops,
        "vector_gflops": specs.vector_gflops,
        "memory_bandwidth_gbs": specs.bandwidth_gbs,
        "specs_source": profile.source,
        "estimate": estimate_info(spec),
        "warning": estimate_warning(spec),
    }
    return entries, overhead, method


def estimate_table(
    space: SearchSpace | None,
    spec: TableSpec,
    *,
    include_published: bool = True,
    networks: Iterable[ArchEncoding] = (),
    roofline: Roofline | None = None,
) -> LatencyTable:
    """A table of roofline estimates for every entry of ``space`` (if given), DNA-a..d and
    ``networks``, marked estimated."""
    profile = get_device(spec.device)
    roof = roofline or (
        roofline_for(profile, spec.precision, threads=spec.threads) if profile.local else None
    )
    if space is not None:
        items = items_for(space, spec, include_published=include_published, networks=networks)
    else:
        nets = list(networks) + (published_networks() if include_published else [])
        items = list({it.key: it for enc in nets for it in network_items(enc, spec)}.values())
    if not profile.local and roofline is None:
        entries, overhead, method = _v2_entries(items, spec, profile)
        calibration = Calibration(1.0, overhead, "estimator v2: per-inference fixed cost")
        source = profile.source
    else:
        entries = {
            it.key: Entry(
                item_ms(it, roof, batch=spec.batch, num_classes=spec.num_classes), 0.0, 0, ESTIMATED
            )
            for it in items
        }
        calibration = Calibration(1.0, 0.0, "none (roofline estimate)")
        source = roof.source
        method = {
            "kind": "roofline",
            "peak_gflops": roof.peak_gflops,
            "vector_gflops": roof.vector_gflops,
            "memory_bandwidth_gbs": roof.bandwidth_gbs,
            "launch_overhead_us": roof.launch_us,
            "specs_source": roof.source,
            "estimate": estimate_info(spec),
            "warning": estimate_warning(spec),
        }
    return LatencyTable(
        spec=spec,
        device_identity={
            "name": profile.name,
            "description": profile.title,
            "details": {"source": source},
        },
        runtime_version="n/a (estimated)",
        entries=entries,
        calibration=calibration,
        estimated=True,
        method=method,
        library_versions=library_versions(),
        meta={"spaces": [{"name": space.name, "identity": space.identity}] if space else []},
    )


def estimate_network_ms(net: Network, spec: TableSpec) -> float:
    """Estimator v2's whole-network latency (ms) of a layer-row network on a named device."""
    profile = get_device(spec.device)
    if profile.local:
        raise ConfigError(
            f"layer-row networks are estimated for named devices only, not the local '{profile.name}'",
            hint="use a zoo name / encoding file, or a named device (dna latency devices)",
        )
    params = shipped_params().get(device_class(profile))
    specs = specs_for(profile, spec.precision)
    return network_ms(kernels(net.rows), specs, params, batch=spec.batch)
