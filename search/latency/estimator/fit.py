"""Fitting the estimator's coefficients on public measurements, and leave-one-device-out checks.

Least squares on RELATIVE error (each row divided by its measured latency, which is close to
least squares on log latency for errors of this size) with every coefficient >= 0
(``scipy.optimize.nnls``; for an ``overlap`` class, whose kernels cost max(launch, device
time), the throughput terms by ``scipy.optimize.least_squares`` within the same bounds). Each
(device, batch) setting weighs the same however many networks it has. Used by
``bench/latency_public.py``; scipy is a dev dependency.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dna_zoo.search.latency.devices import DeviceProfile, get_device
from dna_zoo.search.latency.estimator.model import (
    FEATURES,
    ClassParams,
    KernelTimes,
    Specs,
    coef_for,
    features_from_sums,
    kernel_array,
    kernel_ms,
    kernel_sums,
    kernel_times,
    specs_for,
)
from dna_zoo.search.latency.estimator.network import kernels
from dna_zoo.search.latency.estimator.public import PublicData, Setting


@dataclass(frozen=True)
class FitOptions:
    """How one device class's coefficients are fitted (see :func:`fit_coef`).

    ``fixed_cost``: "scaled" (per-kernel / per-inference costs scale with 1 / fp32 peak) or
    "absolute" (the same on every device of the class). ``tied`` groups of features share one
    coefficient; ``dropped`` features get 0; ``staged``, ``overlap`` and ``by_architecture`` as
    in :func:`fit_coef`."""

    fixed_cost: str
    tied: tuple[tuple[str, ...], ...] = ()
    dropped: tuple[str, ...] = ()
    staged: bool = False
    overlap: bool = False
    by_architecture: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "tied", tuple(tuple(g) for g in self.tied))
        object.__setattr__(self, "dropped", tuple(self.dropped))
        if self.fixed_cost not in ("scaled", "absolute"):
            raise ValueError(f"fixed_cost must be 'scaled' or 'absolute', got {self.fixed_cost!r}")
        unknown = sorted(({f for g in self.tied for f in g} | set(self.dropped)) - set(FEATURES))
        if unknown:
            raise ValueError(f"unknown estimator features {unknown}; known: {list(FEATURES)}")
        if self.overlap and not self.staged:
            raise ValueError("the overlap model is fitted staged (fixed costs from batch 1)")
        if self.by_architecture and not self.overlap:
            raise ValueError("fixed costs by architecture are fitted with the overlap model")

    def recorded(self) -> dict[str, object]:
        """What a fitted :class:`ClassParams` records in ``fit`` (its ``fixed_cost`` is a field of
        its own)."""
        return {
            "tied": [list(g) for g in self.tied],
            "dropped": list(self.dropped),
            "staged": self.staged,
            "overlap": self.overlap,
            "by_architecture": self.by_architecture,
        }

    @classmethod
    def of(cls, params: ClassParams) -> FitOptions:
        """The options a fitted class was made with (to refit it)."""
        f = params.fit
        return cls(
            params.fixed_cost,
            tied=tuple(tuple(g) for g in f.get("tied", ())),
            dropped=tuple(f.get("dropped", ())),
            staged=bool(f.get("staged", False)),
            overlap=bool(f.get("overlap", False)),
            by_architecture=bool(f.get("by_architecture", False)),
        )


@dataclass(frozen=True)
class SettingData:
    """One setting with its device profile, specs and per-network kernels."""

    setting: Setting
    profile: DeviceProfile
    specs: Specs
    sums: np.ndarray  # one kernel_sums row per network
    macs: np.ndarray
    y: np.ndarray
    kern: np.ndarray  # every network's kernel_array, concatenated
    owner: np.ndarray  # the network (row of y) of each kernel

    def unit(self, fixed_cost: str, ref_gflops: float) -> float:
        return ref_gflops / self.specs.fp32_gflops if fixed_cost == "scaled" else 1.0

    def x(self, fixed_cost: str, ref_gflops: float) -> np.ndarray:
        unit = self.unit(fixed_cost, ref_gflops)
        return features_from_sums(self.sums, self.specs, batch=self.setting.batch, unit=unit)

    def times(self, fixed_cost: str, ref_gflops: float) -> KernelTimes:
        return self.times_at(self.unit(fixed_cost, ref_gflops))

    def times_at(self, unit: float) -> KernelTimes:
        return kernel_times(self.kern, self.specs, batch=self.setting.batch, unit=unit)

    def overlap_ms(self, times: KernelTimes, coef: np.ndarray) -> np.ndarray:
        """Per network: the sum over its kernels of max(launch, device time), plus per inference."""
        per_kernel = kernel_ms(times, coef, overlap=True)
        total = np.bincount(self.owner, weights=per_kernel, minlength=len(self.y))
        return total + coef[FEATURES.index("per_inference")] * times.unit


def setting_data(
    data: PublicData, settings: Sequence[Setting], *, precision: str = "fp32"
) -> list[SettingData]:
    out = []
    cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    flat: dict[tuple[str, ...], tuple[np.ndarray, np.ndarray]] = {}  # settings of the same nets share one
    for s in settings:
        profile = get_device(s.device)
        for n in s.nets:
            if n not in cache:
                ks = kernels(data.networks[n].rows)
                cache[n] = (kernel_sums(ks), kernel_array(ks))
        sums = np.stack([cache[n][0] for n in s.nets])
        if s.nets not in flat:
            arrs = [cache[n][1] for n in s.nets]
            owner = np.concatenate([np.full(len(a), i) for i, a in enumerate(arrs)])
            flat[s.nets] = (np.concatenate(arrs), owner)
        macs = sums[:, :3].sum(axis=1) / 2 * s.batch
        specs = specs_for(profile, precision)
        out.append(SettingData(s, profile, specs, sums, macs, np.array(s.ms, float), *flat[s.nets]))
    return out


ROOFLINE_FEATURES = ("dense", "depthwise", "grouped", "conv_memory", "elementwise_memory")


FIXED_FEATURES = ("conv_kernels", "elementwise_kernels", "fusable_kernels", "per_inference")


def _floor(feature: str) -> float:
    return 1.0 if feature in ROOFLINE_FEATURES else 0.0


def _groups(free: Sequence[str], tied: Sequence[Sequence[str]]) -> list[list[int]]:
    """Feature indices sharing one coefficient: each tied group (its free members), then singles."""
    groups: list[list[int]] = []
    seen: set[str] = set()
    for g in tied:
        members = [FEATURES.index(f) for f in g if f in free]
        if members:
            groups.append(members)
            seen |= set(g)
    return groups + [[FEATURES.index(f)] for f in free if f not in seen]


def _solve_overlap(
    rows: Sequence[SettingData],
    free: Sequence[str],
    held: np.ndarray,
    *,
    fixed_cost: str,
    ref_gflops: float,
    tied: Sequence[Sequence[str]],
    by_architecture: dict[str, np.ndarray] | None = None,
) -> np.ndarray:
    """Like :func:`_solve` for the overlap model (kernel = max(launch, device time)), which is
    not linear in the throughput coefficients: bounded least squares on log latency ratios.
    ``by_architecture``: fixed costs (absolute) per GPU architecture, held for the rows of a
    device of that architecture instead of ``held``'s (scaled or absolute) ones."""
    from scipy.optimize import least_squares

    coef = held.copy()
    if not rows or not free:
        return coef
    groups = _groups(free, tied)
    lo = np.array([_floor(FEATURES[g[0]]) for g in groups])
    own = by_architecture or {}
    fixed = [FEATURES.index(f) for f in FIXED_FEATURES]
    row_held, times = [], []
    for sd in rows:
        c = coef.copy()
        if sd.specs.architecture in own:
            c[fixed] = own[sd.specs.architecture][fixed]
            times.append(sd.times_at(1.0))
        else:
            times.append(sd.times(fixed_cost, ref_gflops))
        row_held.append(c)

    def with_theta(base: np.ndarray, log_theta: np.ndarray) -> np.ndarray:
        c = base.copy()
        for g, v in zip(groups, np.exp(log_theta), strict=True):
            c[g] = v
        return c

    def residuals(log_theta: np.ndarray) -> np.ndarray:
        out = []
        for sd, t, h in zip(rows, times, row_held, strict=True):
            out.append(np.log(sd.overlap_ms(t, with_theta(h, log_theta)) / sd.y) / np.sqrt(len(sd.y)))
        return np.concatenate(out)

    # in log space (log ratio residuals, log coefficients): the max() makes the problem badly
    # scaled in the plain coefficients
    lower = np.log(np.maximum(lo, 1e-6))
    fit = least_squares(residuals, np.maximum(lower, 0.0), bounds=(lower, np.log(lo + 1e3)))
    return with_theta(coef, fit.x)


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
    groups = _groups(free, tied)
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


def fit_coef(rows: Sequence[SettingData], opts: FitOptions, *, ref_gflops: float) -> np.ndarray:
    """Non-negative coefficients minimising the settings' relative squared error.

    ``opts.tied`` groups of features share one coefficient (e.g. every kernel pays the same
    launch cost); ``opts.dropped`` features get 0. ``staged``: the fixed costs (per kernel, per
    inference) are fitted on the batch-1 settings alone, where they are nearly all of the latency
    (the throughput terms held at the roofline), then the throughput / bandwidth coefficients on
    the batched settings with those fixed costs held, so neither regime distorts the other's
    terms. ``overlap`` (needs ``staged``): the batched settings are fitted with the overlap model,
    a kernel costing max(launch, device time); the batch-1 fixed costs stay linear (there a
    kernel's device time is far below its launch cost, so max and sum nearly agree).
    ``by_architecture`` (needs ``overlap``): a device whose GPU architecture has batch-1 settings
    pays that architecture's fixed costs (:func:`fixed_by_architecture`) in the throughput fit;
    the returned fixed costs stay the class-wide ones (for architectures without data).
    """
    keep = [f for f in FEATURES if f not in opts.dropped]
    floors = np.array([_floor(f) if f in keep else 0.0 for f in FEATURES])
    kw = {"fixed_cost": opts.fixed_cost, "ref_gflops": ref_gflops, "tied": opts.tied}
    if not opts.staged:
        return _solve(rows, keep, floors, **kw)
    fixed = [f for f in keep if f in FIXED_FEATURES]
    rest = [f for f in keep if f not in FIXED_FEATURES]
    single = [sd for sd in rows if sd.setting.batch == 1]
    batched = [sd for sd in rows if sd.setting.batch > 1]
    coef = _solve(single, fixed, floors, **kw)
    if opts.by_architecture:
        own = fixed_by_architecture(rows, tied=opts.tied, dropped=opts.dropped)
        return _solve_overlap(batched, rest, coef, **kw, by_architecture=own)
    return (_solve_overlap if opts.overlap else _solve)(batched, rest, coef, **kw)


def fixed_by_architecture(
    rows: Sequence[SettingData], *, tied: Sequence[Sequence[str]] = (), dropped: Sequence[str] = ()
) -> dict[str, np.ndarray]:
    """Per GPU architecture with batch-1 settings: the fixed costs (per kernel, per inference,
    absolute: not scaled by peak) fitted on that architecture's batch-1 settings alone, the
    throughput terms held at the roofline (full coefficient vectors; only the fixed ones differ)."""
    floors = np.array([_floor(f) if f not in dropped else 0.0 for f in FEATURES])
    fixed = [f for f in FIXED_FEATURES if f not in dropped]
    archs = sorted({sd.specs.architecture for sd in rows if sd.specs.architecture and sd.setting.batch == 1})
    out = {}
    for a in archs:
        single = [sd for sd in rows if sd.specs.architecture == a and sd.setting.batch == 1]
        out[a] = _solve(single, fixed, floors, fixed_cost="absolute", ref_gflops=1.0, tied=tied)
    return out


def make_params(
    name: str, rows: Sequence[SettingData], opts: FitOptions, *, ref_gflops: float, note: str = ""
) -> ClassParams:
    coef = fit_coef(rows, opts, ref_gflops=ref_gflops)
    own = fixed_by_architecture(rows, tied=opts.tied, dropped=opts.dropped) if opts.by_architecture else {}
    devices = sorted({sd.profile.name for sd in rows})
    return ClassParams(
        name,
        dict(zip(FEATURES, map(float, coef), strict=True)),
        opts.fixed_cost,
        ref_gflops,
        tuple(devices),
        note=note,
        fit=opts.recorded(),
        overlap=opts.overlap,
        fixed_by_architecture={
            a: {f: float(c[FEATURES.index(f)]) for f in FIXED_FEATURES} for a, c in own.items()
        },
    )


def predict(sd: SettingData, params: ClassParams) -> np.ndarray:
    unit = params.unit(sd.specs)
    if params.overlap:
        return sd.overlap_ms(sd.times_at(unit), coef_for(params, sd.specs))
    x = features_from_sums(sd.sums, sd.specs, batch=sd.setting.batch, unit=unit)
    return x @ coef_for(params, sd.specs)


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
    name: str, rows: Sequence[SettingData], opts: FitOptions, *, ref_gflops: float
) -> dict[str, list[tuple[SettingData, np.ndarray, ClassParams]]]:
    """Per device: fit on every other device of the class (not sharing its chip), predict it."""
    out: dict[str, list[tuple[SettingData, np.ndarray, ClassParams]]] = {}
    for dev in sorted({sd.profile.name for sd in rows}):
        prof = next(sd.profile for sd in rows if sd.profile.name == dev)
        train = [sd for sd in rows if not same_chip(sd.profile, prof)]
        params = make_params(name, train, opts, ref_gflops=ref_gflops)
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
