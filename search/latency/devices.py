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

import difflib
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
    estimator_class: str | None = None  # phone-cpu | server-cpu | gpu | jetson-gpu (default: by kind)
    architecture: str | None = None  # GPU architecture (pascal, turing, ...): the estimator's fixed costs

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
            "class": self.estimator_class,
            "architecture": self.architecture,
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
            estimator_class=d.get("class"),
            architecture=d.get("architecture"),
        )
    return out


def known_devices() -> dict[str, DeviceProfile]:
    """Every device profile by canonical name."""
    return dict(_load_profiles())


def inventory() -> dict[str, Any]:
    """What `dna latency devices` shows: every device profile (with how many measured tables of
    it are cached), whether each runtime is usable here, and the cached tables."""
    from dna_zoo.errors import MissingDependencyError
    from dna_zoo.search.latency.cache import cached_tables, latency_dir
    from dna_zoo.search.latency.runtimes import RUNTIMES
    from dna_zoo.search.latency.table import LatencyTable, LatencyTableError

    tables: list[dict[str, Any]] = []
    for p in cached_tables():
        try:
            t = LatencyTable.load(p)
        except LatencyTableError as e:
            tables.append({"path": str(p), "error": e.one_line()})
            continue
        tables.append(
            {
                "path": str(p),
                **t.spec.to_dict(),
                "entries": len(t.entries),
                "measured_on": t.device_identity.get("description"),
                "created": t.created,
            }
        )
    runtimes: dict[str, str] = {}
    for name, cls in RUNTIMES.items():
        try:
            cls().check()
            runtimes[name] = "installed"
        except (MissingDependencyError, ConfigError) as e:
            runtimes[name] = f"not usable here: {e.message}"
    devices = [
        p.to_dict() | {"measured_tables": sum(1 for t in tables if t.get("device") == p.name)}
        for p in known_devices().values()
    ]
    return {"devices": devices, "runtimes": runtimes, "cache": str(latency_dir()), "tables": tables}


def get_device(name: str) -> DeviceProfile:
    """THE resolution of a device: a built-in name or alias, or a device file (``board.json``).

    ``jetson`` is the detected Orin board when run on one. A device file has the fields of a
    built-in profile (see :func:`load_device_file`); once loaded, its profile is known by its
    ``name`` for the rest of the process (tables and estimates refer to devices by name).
    """
    if _looks_like_path(name):
        profile = load_device_file(name)
        _user_profiles[profile.name] = profile
        return profile
    profiles = {**_load_profiles(), **_user_profiles}
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
        if key in (a.lower() for a in p.aliases):
            return p
    names = list(profiles) + [a for p in profiles.values() for a in p.aliases]
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.5)
    hint = f"did you mean {close[0]}? " if close else ""
    hint += "see `dna latency devices`, or pass a device file: --device path/to/board.json"
    raise UnknownNameError("device", name, names, hint=hint)


# --- user device files ---------------------------------------------------------------------------
_user_profiles: dict[str, DeviceProfile] = {}
KINDS = ("cpu", "gpu", "soc")
ESTIMATOR_CLASSES = ("phone-cpu", "server-cpu", "gpu", "jetson-gpu")
GPU_ARCHITECTURES = ("maxwell", "pascal", "volta", "turing", "ampere", "ada", "hopper", "blackwell")
DEVICE_FILE_FIELDS = {
    "name": "device name (lower case, no spaces), e.g. 'my-board'",
    "kind": "cpu | gpu | soc (an SoC with an integrated GPU, e.g. a Jetson)",
    "peak_gflops": "peak dense throughput per precision in GFLOP/s (GOP/s for int8), e.g. {'fp32': 1280}",
    "memory_bandwidth_gbs": "memory bandwidth in GB/s (> 0)",
    "runtimes": "runtimes the device runs, e.g. ['tensorrt', 'onnxruntime']",
    "source": "where the figures come from (data sheet, URL)",
}


def _looks_like_path(name: str) -> bool:
    return name.endswith(".json") or os.sep in name


def _bad(path: str, field_name: str, problem: str) -> ConfigError:
    return ConfigError(
        f"device file {path}: field '{field_name}' {problem}",
        hint=f"'{field_name}': {DEVICE_FILE_FIELDS.get(field_name, 'see README.md, Devices')}",
    )


def _positive(path: str, field_name: str, v: Any, *, zero_ok: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _bad(path, field_name, f"must be a number, got {v!r}")
    if v < 0 or (v == 0 and not zero_ok):
        raise _bad(path, field_name, f"must be {'>= 0' if zero_ok else '> 0'}, got {v}")
    return float(v)


def load_device_file(path: str | os.PathLike[str]) -> DeviceProfile:
    """A user's device profile from JSON, validated: one clear error naming each bad field.

    Required: ``name``, ``kind`` (cpu | gpu | soc), ``peak_gflops`` ({precision: GFLOP/s}),
    ``memory_bandwidth_gbs``, ``runtimes``, ``source``. Optional: ``title``, ``aliases``,
    ``launch_overhead_us`` (per-kernel dispatch cost, replaces the fitted one), ``architecture``
    (GPU architecture, e.g. ``turing``: the fixed costs fitted on that architecture), ``class``
    (estimator class: phone-cpu | server-cpu | gpu | jetson-gpu; default by kind), ``precisions``
    ({runtime: [precision, ...]}; default: every precision of ``peak_gflops`` for each runtime),
    ``threads``.
    """
    from dna_zoo.io import read_json
    from dna_zoo.search.latency.runtimes import RUNTIMES, canonical_runtime

    p = str(path)
    d = read_json(p, what="device file", hint="a JSON file with the fields of a built-in device (README.md)")
    if not isinstance(d, dict):
        raise ConfigError(f"device file {p} must hold one JSON object")
    for f in DEVICE_FILE_FIELDS:
        if f not in d or d[f] in (None, "", [], {}):
            raise _bad(p, f, "is missing")
    name = d["name"]
    if not isinstance(name, str) or not name.strip() or " " in name.strip():
        raise _bad(p, "name", f"must be a name without spaces, got {name!r}")
    if d["kind"] not in KINDS:
        raise _bad(p, "kind", f"must be one of {', '.join(KINDS)}, got {d['kind']!r}")
    peaks = d["peak_gflops"]
    if not isinstance(peaks, dict):
        raise _bad(p, "peak_gflops", "must be an object {precision: GFLOP/s}")
    for prec, v in peaks.items():
        if prec not in PRECISIONS:
            raise _bad(p, f"peak_gflops.{prec}", f"is not a precision (known: {', '.join(PRECISIONS)})")
        _positive(p, f"peak_gflops.{prec}", v)
    bw = _positive(p, "memory_bandwidth_gbs", d["memory_bandwidth_gbs"])
    launch = d.get("launch_overhead_us")
    if launch is not None:
        launch = _positive(p, "launch_overhead_us", launch, zero_ok=True)
    if not isinstance(d["runtimes"], list) or not all(isinstance(r, str) for r in d["runtimes"]):
        raise _bad(p, "runtimes", "must be a list of runtime names")
    runtimes = []
    for r in d["runtimes"]:
        try:
            runtimes.append(canonical_runtime(r))
        except UnknownNameError as e:
            raise _bad(p, "runtimes", f"names an unknown runtime '{r}' (known: {', '.join(RUNTIMES)})") from e
    precisions = d.get("precisions") or {r: list(peaks) for r in runtimes}
    if not isinstance(precisions, dict):
        raise _bad(p, "precisions", "must be an object {runtime: [precision, ...]}")
    for r, ps in precisions.items():
        for prec in ps:
            if prec not in peaks:
                raise _bad(p, f"precisions.{r}", f"lists '{prec}', which peak_gflops does not give")
    cls = d.get("class")
    if cls is not None and cls not in ESTIMATOR_CLASSES:
        raise _bad(p, "class", f"must be one of {', '.join(ESTIMATOR_CLASSES)}, got {cls!r}")
    arch = d.get("architecture")
    if arch is not None and arch not in GPU_ARCHITECTURES:
        raise _bad(p, "architecture", f"must be one of {', '.join(GPU_ARCHITECTURES)}, got {arch!r}")
    threads = d.get("threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise _bad(p, "threads", f"must be a positive integer, got {threads!r}")
    if not isinstance(d["source"], str):
        raise _bad(p, "source", "must be a string")
    return DeviceProfile(
        name=name.strip().lower(),
        title=str(d.get("title", name)),
        kind=d["kind"],
        runtimes=tuple(runtimes),
        precisions={canonical_runtime(r): tuple(v) for r, v in precisions.items()},
        aliases=tuple(str(a).lower() for a in d.get("aliases", ())),
        threads=threads,
        peak_gflops={k: float(v) for k, v in peaks.items()},
        memory_bandwidth_gbs=bw,
        launch_overhead_us=launch,
        source=d["source"],
        notes=str(d.get("notes", "")),
        estimator_class=cls,
        architecture=arch,
    )


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


def cpu_isa() -> list[str]:
    """The vector ISA extensions that matter for CPU speed (AVX2, AVX-512, VNNI, bf16, AMX)
    that /proc/cpuinfo lists; empty where it cannot be read."""
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return [w for w in wanted if w in have]
    except OSError:
        pass
    return []


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


def default_setting(device: str, runtime: str | None, precision: str | None) -> tuple[str, str]:
    """The runtime and precision a user of ``device`` means when they name none: the device's
    first runtime, at fp16 where that is TensorRT and the device runs it at fp16 (a Jetson),
    else fp32."""
    from dna_zoo.search.latency.runtimes import canonical_runtime

    profile = get_device(device)
    runtime = canonical_runtime(runtime) if runtime else profile.runtimes[0]
    if precision is None:
        fp16 = runtime == "tensorrt" and "fp16" in profile.precisions.get(runtime, ())
        precision = "fp16" if fp16 else "fp32"
    return runtime, precision
