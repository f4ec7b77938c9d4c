"""Device profiles: which devices a latency table can be for, and what is known about them.

Profiles are data (``dna_zoo/data/devices.json``), loaded into frozen dataclasses. Two kinds:

- local devices (``cpu``, ``gpu``): measured directly. :func:`identify` detects what they
  really are (CPU model and logical CPUs; GPU name and compute capability), and a table
  records that identity so a table from another machine is never taken for this one.
- named remote devices (the Jetson Orin family, phone CPU classes): published specs (peak
  throughput per precision, memory bandwidth, with the source named) for the roofline
  estimate; measured tables for them are built by running ``dna latency build`` on the
  device itself, where :func:`identify` checks the board.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from dna_zoo.errors import ConfigError, UnknownNameError

logger = logging.getLogger(__name__)

DEVICES_FORMAT = "dna-zoo-devices"
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
_BOARD_FILE = "/proc/device-tree/model"


@dataclass(frozen=True)
class DeviceProfile:
    """One device a latency table can be built for or estimated on."""

    name: str
    title: str
    kind: str  # "cpu" | "gpu" | "soc"
    runtimes: tuple[str, ...]
    precisions: dict[str, tuple[str, ...]] = field(hash=False)
    aliases: tuple[str, ...] = ()
    local: bool = False
    threads: int | None = None
    peak_gflops: dict[str, float] = field(default_factory=dict, hash=False)
    memory_bandwidth_gbs: float | None = None
    launch_overhead_us: float | None = None
    board_match: tuple[str, ...] = ()
    cpu_part_match: tuple[str, ...] = ()
    source: str = ""
    notes: str = ""

    def check_runtime(self, runtime: str, precision: str) -> None:
        """Raise a clear error if this device does not run ``runtime`` at ``precision``."""
        if runtime not in self.runtimes:
            raise UnknownNameError(
                f"runtime for device '{self.name}'",
                runtime,
                self.runtimes,
                hint=f"runtimes for {self.name}: {', '.join(self.runtimes)}",
            )
        allowed = self.precisions.get(runtime, ())
        if precision not in allowed:
            raise ConfigError(
                f"precision '{precision}' is not supported by {runtime} on {self.name}",
                hint=f"use one of: {', '.join(allowed)}",
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "kind": self.kind,
            "aliases": list(self.aliases),
            "local": self.local,
            "runtimes": list(self.runtimes),
            "precisions": {k: list(v) for k, v in self.precisions.items()},
            "threads": self.threads,
            "peak_gflops": dict(self.peak_gflops),
            "memory_bandwidth_gbs": self.memory_bandwidth_gbs,
            "launch_overhead_us": self.launch_overhead_us,
            "source": self.source,
        }


@dataclass(frozen=True)
class DeviceIdentity:
    """What a device really is, as recorded in a table: ``name`` plus a detected description."""

    name: str
    description: str
    details: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "details": self.details}


@lru_cache(maxsize=1)
def _load_profiles() -> dict[str, DeviceProfile]:
    data = json.loads(resources.files("dna_zoo").joinpath("data/devices.json").read_text())
    if data.get("format") != DEVICES_FORMAT:
        raise ConfigError("dna_zoo/data/devices.json is not a device list")
    out: dict[str, DeviceProfile] = {}
    for d in data["devices"]:
        out[d["name"]] = DeviceProfile(
            name=d["name"],
            title=d["title"],
            kind=d["kind"],
            runtimes=tuple(d["runtimes"]),
            precisions={k: tuple(v) for k, v in d["precisions"].items()},
            aliases=tuple(d.get("aliases", ())),
            local=bool(d.get("local", False)),
            threads=d.get("threads"),
            peak_gflops={k: float(v) for k, v in d.get("peak_gflops", {}).items()},
            memory_bandwidth_gbs=d.get("memory_bandwidth_gbs"),
            launch_overhead_us=d.get("launch_overhead_us"),
            board_match=tuple(d.get("board_match", ())),
            cpu_part_match=tuple(p.lower() for p in d.get("cpu_part_match", ())),
            source=d.get("source", ""),
            notes=d.get("notes", ""),
        )
    return out


def known_devices() -> dict[str, DeviceProfile]:
    """Every device profile by canonical name."""
    return dict(_load_profiles())


def known_runtimes() -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for p in _load_profiles().values():
        for r in p.runtimes:
            seen[r] = None
    return tuple(seen)


def get_device(name: str) -> DeviceProfile:
    """A profile by name or alias. ``jetson`` is the detected Orin board when run on one."""
    profiles = _load_profiles()
    key = name.strip().lower()
    if key == "jetson":
        board = read_board()
        if board:
            for p in profiles.values():
                if any(m.lower() in board.lower() for m in p.board_match):
                    return p
    if key in profiles:
        return profiles[key]
    for p in profiles.values():
        if key in p.aliases:
            return p
    names = list(profiles) + [a for p in profiles.values() for a in p.aliases]
    raise UnknownNameError("device", name, names, hint=f"known devices: {', '.join(profiles)}")


# --- detection --------------------------------------------------------------------------------
def read_board() -> str | None:
    """The board name of an embedded Linux device (e.g. a Jetson), or None elsewhere."""
    try:
        with open(_BOARD_FILE, "rb") as f:
            return f.read().rstrip(b"\0").decode(errors="replace").strip() or None
    except OSError:
        return None


def cpu_parts() -> set[str]:
    """Arm CPU part numbers in /proc/cpuinfo (e.g. 0xd0b = Cortex-A76); empty elsewhere."""
    try:
        with open("/proc/cpuinfo") as f:
            return {line.split(":", 1)[1].strip().lower() for line in f if line.startswith("CPU part")}
    except OSError:
        return set()


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "processor\t: arm")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def available_cpus() -> int:
    """Logical CPUs this process may run on (respects taskset / cgroups affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cuda_devices() -> list[dict[str, Any]]:
    """Local NVIDIA GPUs as torch sees them (empty without CUDA)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return []
    if not torch.cuda.is_available():
        return []
    out = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        out.append(
            {
                "index": i,
                "name": p.name,
                "compute_capability": f"{p.major}.{p.minor}",
                "memory_gib": round(p.total_memory / 2**30, 1),
                "multiprocessors": p.multi_processor_count,
            }
        )
    return out


def identify(profile: DeviceProfile) -> DeviceIdentity:
    """Detect the device this process runs on as ``profile``; an error if it is not that device.

    A measured table can only be built on the device it is for, so building for a remote
    device elsewhere fails here with the command to run on the device.
    """
    if profile.name == "cpu":
        model = cpu_model()
        n = available_cpus()
        return DeviceIdentity(
            "cpu",
            f"{model} ({n} logical CPUs, {platform.machine()})",
            {"cpu_model": model, "logical_cpus": n, "machine": platform.machine()},
        )
    if profile.name == "gpu":
        gpus = cuda_devices()
        if not gpus:
            raise ConfigError(
                "no NVIDIA GPU is usable here (torch.cuda.is_available() is False)",
                hint="build GPU tables on a machine with an NVIDIA GPU and CUDA, or use --device cpu",
            )
        g = gpus[0]
        return DeviceIdentity("gpu", f"{g['name']} (compute capability {g['compute_capability']})", g)
    parts = cpu_parts()
    if profile.cpu_part_match and parts & set(profile.cpu_part_match):
        model = cpu_model()
        return DeviceIdentity(
            profile.name,
            f"{model} (CPU parts {', '.join(sorted(parts))}, {platform.machine()})",
            {"cpu_model": model, "cpu_parts": sorted(parts), "machine": platform.machine()},
        )
    board = read_board()
    if board and any(m.lower() in board.lower() for m in profile.board_match):
        return DeviceIdentity(profile.name, board, {"board": board, "machine": platform.machine()})
    raise ConfigError(
        f"this machine is not the device '{profile.name}' ({profile.title}; "
        f"here: board: {board or 'none'}, CPU: {cpu_model()}); "
        "a measured table must be built on the device itself",
        hint=f"run on the device: {build_command(profile.name, _default_runtime(profile), 'fp16')}",
    )


def _default_runtime(profile: DeviceProfile) -> str:
    return profile.runtimes[0]


def build_command(device: str, runtime: str, precision: str, *, input_size: int = 224) -> str:
    """The exact command that measures a table on the device."""
    cmd = f"dna latency build --device {device} --runtime {runtime} --precision {precision}"
    if input_size != 224:
        cmd += f" --input-size {input_size}"
    return cmd


# --- specs of local devices, measured ------------------------------------------------------------
@dataclass(frozen=True)
class MeasuredSpecs:
    peak_gflops: dict[str, float]
    memory_bandwidth_gbs: float
    launch_overhead_us: float
    source: str


def measure_local_specs(profile: DeviceProfile, *, threads: int | None = None) -> MeasuredSpecs:
    """Peak throughput and memory bandwidth of a local device by a short torch micro-benchmark.

    A virtual machine does not say what its memory bandwidth is, and nominal clocks overstate
    what a shared core gives; half a second of matmul and copy says more. Used only by the
    roofline estimate (e.g. to measure the estimator's own error on this machine).
    """
    import torch

    dev = "cuda" if profile.name == "gpu" else "cpu"
    old_threads = torch.get_num_threads()
    if dev == "cpu" and threads:
        torch.set_num_threads(threads)
    try:
        n = 1024 if dev == "cpu" else 4096
        a = torch.randn(n, n, device=dev)
        b = torch.randn(n, n, device=dev)
        peak = {"fp32": _mm_rate(a, b, dev, tf32=False) / 1e9}
        if dev == "cuda":  # tensor cores: measured, not assumed (fp16 is ~15x fp32 on an H100)
            peak["tf32"] = _mm_rate(a, b, dev, tf32=True) / 1e9
            peak["fp16"] = _mm_rate(a.half(), b.half(), dev) / 1e9
            if torch.cuda.is_bf16_supported():
                peak["bf16"] = _mm_rate(a.bfloat16(), b.bfloat16(), dev) / 1e9
        m = 32 * 2**20 if dev == "cpu" else 512 * 2**20
        src = torch.empty(m // 4, device=dev)
        dst = torch.empty_like(src)
        bw = _best_rate(lambda: dst.copy_(src), 2 * m, dev)
        tiny = torch.zeros(8, device=dev)
        launch = _best_rate(lambda: tiny.add_(1), 1, dev)
    finally:
        torch.set_num_threads(old_threads)
    kinds = "sgemm" if dev == "cpu" else "sgemm, TF32, half and bf16 gemm"
    return MeasuredSpecs(peak, bw / 1e9, 1e6 / launch, f"measured here ({dev} {kinds} {n}x{n}, copy)")


def _mm_rate(a, b, dev: str, *, tf32: bool | None = None) -> float:
    """FLOP/s of ``torch.mm(a, b)``; ``tf32`` sets whether fp32 matmuls may use TF32 (CUDA)."""
    import torch

    old = torch.backends.cuda.matmul.allow_tf32
    if tf32 is not None and dev == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        return _best_rate(lambda: torch.mm(a, b), 2 * a.shape[0] * a.shape[1] * b.shape[1], dev)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


def _best_rate(fn, work: float, dev: str) -> float:
    import torch

    best = float("inf")
    for _ in range(3):
        fn()
    for _ in range(5):
        if dev == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(4):
            fn()
        if dev == "cuda":
            torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - t) / 4)
    return work / best
