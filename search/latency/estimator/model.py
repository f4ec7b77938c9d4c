"""The calibrated latency model: a roofline split by kernel kind, plus fixed costs, fitted per device class.

For a network of kernels on a device with dense peak ``P`` (at the precision), vector peak
``V`` (depthwise / elementwise work), memory bandwidth ``B`` and batch ``b``::

    latency = a_dense   x b x dense FLOPs / P       (1 / attainable efficiency of dense convs)
            + a_dw      x b x depthwise FLOPs / V
            + a_grouped x b x grouped-conv FLOPs / P
            + m_conv    x (b x activations + weights) of conv kernels x bytes / B
            + m_elt     x b x values of elementwise kernels (h-swish/swish, add, pool, SE scale, shuffle) / B
            + m_fuse    x b x values of batch-norm / ReLU kernels / B
            + (c_conv x n_conv + c_elt x n_elementwise + c_fuse x n_norm_relu) x u   (per-kernel fixed cost)
            + c_inf x u                                                            (per-inference fixed cost)

summed over kernels as written (the linear model), or, for ``overlap`` classes (GPUs), with
each kernel's launch cost and device time combined as ``max(c x u, device time)``.

Every coefficient is >= 0 (the throughput / bandwidth ones >= 1: no kernel beats the roofline)
and fitted per device class on public whole-network measurements (``bench/latency_public.py``
writes them to ``dna_zoo/data/latency_estimator.json``, with each class's held-out error and
the fit options in ``fit``). ``u`` is 1 (``fixed_cost: absolute``), or (``scaled``) the class's
reference fp32 peak over this device's, so a slower device pays proportionally more per kernel.
A device's own ``launch_overhead_us`` (if its profile has one) replaces the fitted per-kernel
cost of conv kernels. What each class keeps (few parameters each):

- ``phone-cpu`` (2 fitted numbers): one efficiency for every conv kind (dense, depthwise and
  grouped tied) and a cost per BN / ReLU kernel, i.e. per conv layer, scaled; no memory terms
  (a sum of compute and memory time double-counts on these cores and ranked worse). HELP's
  32 px nets alone would want convs ~3.5x less efficient than OFA's 224 px nets: one efficiency
  serves both levels, at some cost in ranking HELP's nets.
- ``gpu`` (overlap): a kernel costs ``max(launch cost, device time)``, not their sum: the GPU
  runs one kernel while the host launches the next, so at batch 1 (launch-bound) latency is
  the launch costs and at batch 64 mostly device time. One launch cost for every kernel kind
  plus a per-inference cost, scaled, fitted on the batch-1 settings alone (where they are
  nearly all of the latency; linear, as max and sum nearly agree there); then, with those
  held, the throughput terms (memory terms tied) on the batched settings by bounded least
  squares ("staged"). Depthwise convs come out ~7-10x slower than the roofline; the rest sit at it.
  Fixed costs by GPU architecture (``fixed_by_architecture``, 2 numbers per architecture): at
  batch 1 these nets are host / driver bound (~40-60 us per kernel), which no GPU spec
  predicts: HELP's two Turing cards pay 39 / 45 us per kernel and its three Pascal cards 58-60
  us, whatever their peak (the RTX 2080 Ti is faster than the Titan RTX, whose peak is 21%
  higher). A device whose profile names an ``architecture`` the fit has batch-1 data for pays
  that architecture's fixed costs, absolute (fitted on the other devices of that architecture
  when it is held out); any other device the class-wide scaled ones.
- ``jetson-gpu``: no Jetson data to fit on: the GPU coefficients with ABSOLUTE fixed costs (an
  assumption: a Jetson pays a desktop GPU's launch costs, its architecture's where fitted;
  scaling them by fp32 peak would extrapolate far outside the desktop range; at batch 16 the
  TX2 nets are device-bound, so this matters little there). Specs are those of the board's
  DEFAULT power mode unless a profile names another (the TX2: nvpmodel mode 3, GPU 1.12 GHz,
  memory clock 1.6 GHz; ``jetson-tx2-maxn`` is mode 0). Checked on the TX2: its four nets come
  out 16-25% too fast (see the README table).
- ``server-cpu``: free per-kind efficiencies and fixed costs, absolute.

The model is linear in its coefficients and additive over kernels, so it yields per-layer
table entries plus one per-inference overhead.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

from dna_zoo.errors import ConfigError
from dna_zoo.search.latency.devices import DeviceProfile
from dna_zoo.search.latency.estimator.network import (
    COMPUTE_KINDS,
    ELEMENTWISE_KINDS,
    FUSABLE_KINDS,
    Kernel,
    kernels,
)

PARAMS_FORMAT = "dna-zoo-latency-estimator"
PARAMS_FILE = "data/latency_estimator.json"
FEATURES = (
    "dense",
    "depthwise",
    "grouped",
    "conv_memory",
    "elementwise_memory",
    "fusable_memory",
    "conv_kernels",
    "elementwise_kernels",
    "fusable_kernels",
    "per_inference",
)
CLASSES = ("phone-cpu", "server-cpu", "gpu", "jetson-gpu")
_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}
_DEFAULT_CLASS = {"cpu": "server-cpu", "gpu": "gpu", "soc": "jetson-gpu"}


@dataclass(frozen=True)
class Specs:
    """What the model needs to know about a device at one precision."""

    peak_gflops: float
    vector_gflops: float
    bandwidth_gbs: float
    bytes_per_value: int
    fp32_gflops: float
    launch_overhead_us: float | None = None
    architecture: str | None = None  # GPU architecture (pascal, turing, ...), if the profile names one


def device_class(profile: DeviceProfile) -> str:
    """The estimator class of a profile: its ``estimator_class``, else by kind."""
    return profile.estimator_class or _DEFAULT_CLASS.get(profile.kind, "server-cpu")


def specs_for(profile: DeviceProfile, precision: str) -> Specs:
    """A named device's published specs at ``precision``; one clear error if any is missing."""
    if precision not in profile.peak_gflops:
        raise ConfigError(
            f"device '{profile.name}' has no peak_gflops for precision '{precision}'",
            hint=f"its precisions: {', '.join(profile.peak_gflops) or 'none'}",
        )
    if not profile.memory_bandwidth_gbs:
        raise ConfigError(f"device '{profile.name}' has no memory_bandwidth_gbs")
    peak = profile.peak_gflops[precision]
    fp32 = profile.peak_gflops.get("fp32", peak)
    vector = min(fp32 * (2.0 if precision in ("fp16", "bf16", "int8") else 1.0), peak)
    return Specs(
        peak,
        vector,
        float(profile.memory_bandwidth_gbs),
        _BYTES[precision],
        fp32,
        profile.launch_overhead_us,
        profile.architecture,
    )


@dataclass(frozen=True)
class ClassParams:
    """Fitted coefficients of one device class, and how well they predicted unseen devices."""

    device_class: str
    coef: dict[str, float]
    fixed_cost: str  # "absolute" | "scaled"
    ref_gflops: float
    fitted_on: tuple[str, ...]
    held_out: dict[str, Any] = field(default_factory=dict, hash=False)
    note: str = ""
    fit: dict[str, Any] = field(default_factory=dict, hash=False)  # fit.fit_coef options used
    overlap: bool = False  # a kernel costs max(launch, device time), not their sum (GPUs)
    # per GPU architecture: fixed costs (FIXED_FEATURES) fitted on that architecture's devices, absolute
    fixed_by_architecture: dict[str, dict[str, float]] = field(default_factory=dict, hash=False)

    def own_fixed(self, specs: Specs) -> dict[str, float] | None:
        """The fixed costs fitted on this device's GPU architecture, if the fit had any."""
        return self.fixed_by_architecture.get(specs.architecture) if specs.architecture else None

    def unit(self, specs: Specs) -> float:
        if self.own_fixed(specs) is not None:
            return 1.0
        return self.ref_gflops / specs.fp32_gflops if self.fixed_cost == "scaled" else 1.0

    def vector(self) -> np.ndarray:
        return np.array([self.coef.get(f, 0.0) for f in FEATURES])

    def to_dict(self) -> dict[str, Any]:
        return {
            "coef": {f: self.coef.get(f, 0.0) for f in FEATURES},
            "fixed_cost": self.fixed_cost,
            "ref_gflops": self.ref_gflops,
            "fitted_on": list(self.fitted_on),
            "held_out": self.held_out,
            "note": self.note,
            "fit": self.fit,
            "overlap": self.overlap,
            "fixed_by_architecture": self.fixed_by_architecture,
        }

    @classmethod
    def from_dict(cls, name: str, d: dict[str, Any]) -> ClassParams:
        return cls(
            name,
            {k: float(v) for k, v in d["coef"].items()},
            d["fixed_cost"],
            float(d["ref_gflops"]),
            tuple(d.get("fitted_on", ())),
            dict(d.get("held_out", {})),
            d.get("note", ""),
            dict(d.get("fit", {})),
            bool(d.get("overlap", False)),
            {a: {k: float(v) for k, v in c.items()} for a, c in d.get("fixed_by_architecture", {}).items()},
        )


SUMS = (
    "dense",
    "depthwise",
    "grouped",
    "conv_act",
    "conv_weights",
    "elt_values",
    "fuse_values",
    "n_conv",
    "n_elt",
    "n_fuse",
)


def kernel_sums(ks: Iterable[Kernel]) -> np.ndarray:
    """Per-image totals of a set of kernels, in :data:`SUMS` order (device independent)."""
    t = dict.fromkeys(SUMS, 0.0)
    for k in ks:
        if k.kind in COMPUTE_KINDS:
            t[k.kind] += k.flops
            t["conv_act"] += k.act_values
            t["conv_weights"] += k.weight_values
            t["n_conv"] += 1
        elif k.kind in ELEMENTWISE_KINDS:
            t["elt_values"] += k.act_values
            t["n_elt"] += 1
        elif k.kind in FUSABLE_KINDS:
            t["fuse_values"] += k.act_values
            t["n_fuse"] += 1
        else:  # pragma: no cover - network.kernels makes only these kinds
            raise ConfigError(f"unknown kernel kind {k.kind}")
    return np.array([t[n] for n in SUMS])


def features_from_sums(
    t: np.ndarray, specs: Specs, *, batch: int = 1, unit: float = 1.0, per_inference: bool = True
) -> np.ndarray:
    """The feature vector (ms per unit coefficient), in :data:`FEATURES` order; ``t`` may be
    one :func:`kernel_sums` vector or a stack of them (one row per network)."""
    t = np.asarray(t, float)
    dense, dw, grp, cact, cw, elt, fuse, nconv, nelt, nfuse = np.moveaxis(t, -1, 0)
    mem = specs.bytes_per_value / (specs.bandwidth_gbs * 1e9) * 1e3
    cols = [
        batch * dense / (specs.peak_gflops * 1e9) * 1e3,
        batch * dw / (specs.vector_gflops * 1e9) * 1e3,
        batch * grp / (specs.peak_gflops * 1e9) * 1e3,
        (batch * cact + cw) * mem,
        batch * elt * mem,
        batch * fuse * mem,
        nconv * unit * 1e-3,
        nelt * unit * 1e-3,
        nfuse * unit * 1e-3,
        np.full_like(dense, unit if per_inference else 0.0),
    ]
    return np.stack(cols, axis=-1)


def features(
    ks: Iterable[Kernel], specs: Specs, *, batch: int = 1, unit: float = 1.0, per_inference: bool = True
):
    """The feature vector of a set of kernels; see the module docstring."""
    return features_from_sums(kernel_sums(ks), specs, batch=batch, unit=unit, per_inference=per_inference)


def rows_features(
    rows: Sequence[Sequence[Any]],
    specs: Specs,
    params: ClassParams,
    *,
    batch: int = 1,
    per_inference: bool = True,
):
    return features(kernels(rows), specs, batch=batch, unit=params.unit(specs), per_inference=per_inference)


def coef_for(params: ClassParams, specs: Specs) -> np.ndarray:
    """The class's coefficients for this device: the fixed costs of its GPU architecture where
    the fit had that architecture; its own launch overhead (if given) replaces c_conv."""
    coef = params.vector()
    for f, v in (params.own_fixed(specs) or {}).items():
        coef[FEATURES.index(f)] = v
    if specs.launch_overhead_us is not None:
        i = FEATURES.index("conv_kernels")
        coef[i] = specs.launch_overhead_us / params.unit(specs)
    return coef


def apply(x: np.ndarray, params: ClassParams, specs: Specs) -> float:
    """Milliseconds from a feature vector."""
    return float(x @ coef_for(params, specs))


KERNEL_KINDS = COMPUTE_KINDS + ELEMENTWISE_KINDS + FUSABLE_KINDS
_GROUP = np.array([0] * len(COMPUTE_KINDS) + [1] * len(ELEMENTWISE_KINDS) + [2] * len(FUSABLE_KINDS))
_I = {f: FEATURES.index(f) for f in FEATURES}


def kernel_array(ks: Iterable[Kernel]) -> np.ndarray:
    """Kernels as rows ``[kind index in KERNEL_KINDS, FLOPs, activation values, weight values]``."""
    rows = [(KERNEL_KINDS.index(k.kind), k.flops, k.act_values, k.weight_values) for k in ks]
    return np.array(rows, float).reshape(-1, 4)


@dataclass(frozen=True)
class KernelTimes:
    """Per kernel, at unit coefficients: launch-cost units, compute ms and memory ms at peak."""

    kind: np.ndarray  # index into KERNEL_KINDS
    group: np.ndarray  # 0 conv, 1 elementwise, 2 norm / ReLU
    compute: np.ndarray
    memory: np.ndarray
    unit: float


def kernel_times(arr: np.ndarray, specs: Specs, *, batch: int, unit: float) -> KernelTimes:
    kind = arr[:, 0].astype(int)
    group = _GROUP[kind]
    peak = np.where(kind == KERNEL_KINDS.index("depthwise"), specs.vector_gflops, specs.peak_gflops)
    compute = batch * arr[:, 1] / (peak * 1e9) * 1e3
    values = batch * arr[:, 2] + np.where(group == 0, arr[:, 3], 0.0)
    memory = values * specs.bytes_per_value / (specs.bandwidth_gbs * 1e9) * 1e3
    return KernelTimes(kind, group, compute, memory, unit)


_COMPUTE_COEF = [_I[k] for k in COMPUTE_KINDS]
_MEMORY_COEF = [_I["conv_memory"], _I["elementwise_memory"], _I["fusable_memory"]]
_LAUNCH_COEF = [_I["conv_kernels"], _I["elementwise_kernels"], _I["fusable_kernels"]]


def kernel_ms(t: KernelTimes, coef: np.ndarray, *, overlap: bool) -> np.ndarray:
    """Milliseconds of each kernel. ``overlap``: ``max(launch, device time)`` (a GPU runs one
    kernel while the host launches the next, so only the longer of the two counts); else
    their sum (exactly the linear model of :func:`features`)."""
    a = np.append(coef[_COMPUTE_COEF], 0.0)[np.minimum(t.kind, len(COMPUTE_KINDS))]
    device = a * t.compute + coef[_MEMORY_COEF][t.group] * t.memory
    launch = coef[_LAUNCH_COEF][t.group] * t.unit * 1e-3
    return np.maximum(launch, device) if overlap else launch + device


def network_ms(
    ks: Iterable[Kernel],
    specs: Specs,
    params: ClassParams,
    *,
    batch: int = 1,
    per_inference: bool = True,
) -> float:
    """The class's latency (ms) of a set of kernels on a device (the whole model, either mode)."""
    coef = coef_for(params, specs)
    unit = params.unit(specs)
    times = kernel_times(kernel_array(ks), specs, batch=batch, unit=unit)
    total = float(kernel_ms(times, coef, overlap=params.overlap).sum())
    return total + (float(coef[_I["per_inference"]] * unit) if per_inference else 0.0)


# --- the shipped parameters ------------------------------------------------------------------------
@dataclass(frozen=True)
class EstimatorParams:
    classes: dict[str, ClassParams]
    meta: dict[str, Any]

    def get(self, device_class_name: str) -> ClassParams:
        if device_class_name not in self.classes:
            raise ConfigError(
                f"the latency estimator has no parameters for device class '{device_class_name}'",
                hint=f"classes: {', '.join(self.classes)}",
            )
        return self.classes[device_class_name]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PARAMS_FORMAT,
            "version": 1,
            **self.meta,
            "features": list(FEATURES),
            "classes": {k: v.to_dict() for k, v in self.classes.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EstimatorParams:
        if d.get("format") != PARAMS_FORMAT:
            raise ConfigError("not a latency-estimator parameter file")
        meta = {k: v for k, v in d.items() if k not in ("format", "version", "features", "classes")}
        return cls({k: ClassParams.from_dict(k, v) for k, v in d["classes"].items()}, meta)


@lru_cache(maxsize=1)
def shipped_params() -> EstimatorParams:
    """The parameters fitted by ``bench/latency_public.py`` and shipped in the package."""
    text = resources.files("dna_zoo").joinpath(PARAMS_FILE).read_text()
    return EstimatorParams.from_dict(json.loads(text))
