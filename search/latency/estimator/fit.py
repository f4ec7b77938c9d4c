"""Fitting the estimator's coefficients on public measurements, and leave-one-device-out checks.

Least squares on RELATIVE error (each row divided by its measured latency, which is close to
least squares on log latency for errors of this size) with every coefficient >= 0
(``scipy.optimize.nnls``). Each (device, batch) setting weighs the same however many
networks it has. Used by ``bench/latency_public.py``; scipy is a dev dependency.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dna_zoo.search.latency.devices import DeviceProfile, get_device
from dna_zoo.search.latency.estimator.model import (
    FEATURES,
    ClassParams,
    Specs,
    coef_for,
    features_from_sums,
    kernel_sums,
    specs_for,
)
from dna_zoo.search.latency.estimator.network import kernels
from dna_zoo.search.latency.estimator.public import PublicData, Setting


@dataclass(frozen=True)
class SettingData:
    """One setting with its device profile, specs and per-network kernels."""

    setting: Setting
    profile: DeviceProfile
    specs: Specs
    sums: np.ndarray  # one kernel_sums row per network
    macs: np.ndarray
    y: np.ndarray

    def x(self, fixed_cost: str, ref_gflops: float) -> np.ndarray:
        unit = ref_gflops / self.specs.fp32_gflops if fixed_cost == "scaled" else 1.0
        return features_from_sums(self.sums, self.specs, batch=self.setting.batch, unit=unit)


def setting_data(
    data: PublicData, settings: Sequence[Setting], *, precision: str = "fp32"
) -> list[SettingData]:
    out = []
    cache: dict[str, np.ndarray] = {}
    for s in settings:
        profile = get_device(s.device)
        for n in s.nets:
            if n not in cache:
                cache[n] = kernel_sums(kernels(data.networks[n].rows))
        sums = np.stack([cache[n] for n in s.nets])
        macs = sums[:, :3].sum(axis=1) / 2 * s.batch
        out.append(SettingData(s, profile, specs_for(profile, precision), sums, macs, np.array(s.ms, float)))
    return out


ROOFLINE_FEATURES = ("dense", "depthwise", "grouped", "conv_memory", "elementwise_memory")


FIXED_FEATURES = ("conv_kernels", "elementwise_kernels", "fusable_kernels", "per_inference")


def _floor(feature: str) -> float:
    return 1.0 if feature in ROOFLINE_FEATURES else 0.0


def _solve(
    rows: Sequence[SettingData],
    free: Sequence[str],
    held: np.ndarray,
    *,
    fixed_cost: str,
    ref_gflops: float,
    tied: Sequence[Sequence[str]],
) -> np.ndarray:
    """``held`` with the ``free`` features refitted (non-negative, roofline features >= 1) to
    minimise the settings' relative squared error; the other features keep their ``held`` value."""
    from scipy.optimize import nnls

    coef = held.copy()
    if not rows or not free:
        return coef
    a, b = [], []
    free_idx = [FEATURES.index(f) for f in free]
    rest = np.ones(len(FEATURES), bool)
    rest[free_idx] = False
    for sd in rows:
        w = 1.0 / np.sqrt(len(sd.y))
        x = sd.x(fixed_cost, ref_gflops)
        a.append(x / sd.y[:, None] * w)
        b.append((1.0 - x[:, rest] @ held[rest] / sd.y) * w)
    A, B = np.concatenate(a), np.concatenate(b)
    groups: list[list[int]] = []
    seen: set[str] = set()
    for g in tied:
        members = [FEATURES.index(f) for f in g if f in free]
        if members:
            groups.append(members)
            seen |= set(g)
    groups += [[FEATURES.index(f)] for f in free if f not in seen]
    G = np.stack([A[:, g].sum(axis=1) for g in groups], axis=1)
    floor = np.array([_floor(FEATURES[g[0]]) for g in groups])
    # no kernel beats the roofline: throughput / bandwidth coefficients >= 1 (theta = floor + phi, phi >= 0)
    B = B - G @ floor
    scale = np.maximum(np.abs(G).max(axis=0), 1e-12)  # column scaling for a well-posed nnls
    c, _ = nnls(G / scale, B, maxiter=50 * G.shape[1])
    c = c / scale + floor
    for g, v in zip(groups, c, strict=True):
        coef[g] = v
    return coef


def fit_coef(
    rows: Sequence[SettingData],
    *,
    fixed_cost: str,
    ref_gflops: float,
    tied: Sequence[Sequence[str]] = (),
    dropped: Sequence[str] = (),
    staged: bool = False,
) -> np.ndarray:
    """Non-negative coefficients minimising the settings' relative squared error.

    ``tied`` groups of features share one coefficient (e.g. every kernel pays the same launch
    cost); ``dropped`` features get 0. ``staged``: the fixed costs (per kernel, per inference)
    are fitted on the batch-1 settings alone, where they are nearly all of the latency (the
    throughput terms held at the roofline), then the throughput / bandwidth coefficients on the
    batched settings with those fixed costs held, so neither regime distorts the other's terms.
    """
    keep = [f for f in FEATURES if f not in dropped]
    floors = np.array([_floor(f) if f in keep else 0.0 for f in FEATURES])
    kw = {"fixed_cost": fixed_cost, "ref_gflops": ref_gflops, "tied": tied}
    if not staged:
        return _solve(rows, keep, floors, **kw)
    fixed = [f for f in keep if f in FIXED_FEATURES]
    rest = [f for f in keep if f not in FIXED_FEATURES]
    single = [sd for sd in rows if sd.setting.batch == 1]
    batched = [sd for sd in rows if sd.setting.batch > 1]
    coef = _solve(single, fixed, floors, **kw)
    return _solve(batched, rest, coef, **kw)


def make_params(
    name: str,
    rows: Sequence[SettingData],
    *,
    fixed_cost: str,
    ref_gflops: float,
    note: str = "",
    tied: Sequence[Sequence[str]] = (),
    dropped: Sequence[str] = (),
    staged: bool = False,
) -> ClassParams:
    coef = fit_coef(
        rows, fixed_cost=fixed_cost, ref_gflops=ref_gflops, tied=tied, dropped=dropped, staged=staged
    )
    devices = sorted({sd.profile.name for sd in rows})
    return ClassParams(
        name,
        dict(zip(FEATURES, map(float, coef), strict=True)),
        fixed_cost,
        ref_gflops,
        tuple(devices),
        note=note,
        fit={"tied": [list(g) for g in tied], "dropped": list(dropped), "staged": staged},
    )


def predict(sd: SettingData, params: ClassParams) -> np.ndarray:
    return sd.x(params.fixed_cost, params.ref_gflops) @ coef_for(params, sd.specs)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def metrics(pred: np.ndarray, meas: np.ndarray, macs: np.ndarray | None = None) -> dict[str, float]:
    err = (pred - meas) / meas
    out = {
        "n": len(meas),
        "spearman_rho": spearman(pred, meas),
        "mean_abs_pct_error": float(100 * np.mean(np.abs(err))),
        "median_ratio": float(np.median(pred / meas)),
        "within_10pct": float(np.mean(np.abs(err) <= 0.10)),
        "within_25pct": float(np.mean(np.abs(err) <= 0.25)),
    }
    if macs is not None:
        out["macs_spearman_rho"] = spearman(macs, meas)
    return out


def same_chip(a: DeviceProfile, b: DeviceProfile) -> bool:
    """Devices with identical specs (same SoC / chip): held out together, so none leaks."""
    return (
        a.peak_gflops.get("fp32") == b.peak_gflops.get("fp32")
        and a.memory_bandwidth_gbs == b.memory_bandwidth_gbs
    )


def leave_one_device_out(
    name: str,
    rows: Sequence[SettingData],
    *,
    fixed_cost: str,
    ref_gflops: float,
    tied: Sequence[Sequence[str]] = (),
    dropped: Sequence[str] = (),
    staged: bool = False,
) -> dict[str, list[tuple[SettingData, np.ndarray, ClassParams]]]:
    """Per device: fit on every other device of the class (not sharing its chip), predict it."""
    out: dict[str, list[tuple[SettingData, np.ndarray, ClassParams]]] = {}
    for dev in sorted({sd.profile.name for sd in rows}):
        prof = next(sd.profile for sd in rows if sd.profile.name == dev)
        train = [sd for sd in rows if not same_chip(sd.profile, prof)]
        params = make_params(
            name,
            train,
            fixed_cost=fixed_cost,
            ref_gflops=ref_gflops,
            tied=tied,
            dropped=dropped,
            staged=staged,
        )
        out[dev] = [(sd, predict(sd, params), params) for sd in rows if sd.profile.name == dev]
    return out


RAW_LAUNCH_US = 5.0  # the uncalibrated roofline's assumed launch cost per kernel (estimator v1)


def raw_roofline(sd: SettingData, *, launch_us: float = RAW_LAUNCH_US) -> np.ndarray:
    """The uncalibrated roofline (estimator v1): per conv / elementwise kernel
    ``max(FLOPs / peak, bytes / bandwidth)`` plus a launch cost; BN and ReLU fused."""
    t = sd.sums
    s = sd.specs
    b = sd.setting.batch
    mem = s.bytes_per_value / (s.bandwidth_gbs * 1e9) * 1e3
    compute = (
        b * (t[:, 0] + t[:, 2]) / (s.peak_gflops * 1e9) * 1e3 + b * t[:, 1] / (s.vector_gflops * 1e9) * 1e3
    )
    memory = (b * t[:, 3] + t[:, 4] + b * t[:, 5]) * mem
    # the sums add kernels up before the max: per-kernel max is at least this, close for these nets
    return np.maximum(compute, memory) + (t[:, 7] + t[:, 8]) * launch_us * 1e-3
