"""The latency table file: per-layer latencies of one device / runtime / precision / shape.

A table is a versioned JSON file. Its header says what it was measured on and how (device
identity, runtime and version, precision, batch, input size, threads, date, library
versions, method); its entries map a layer key (:func:`dna_zoo.arch.layer_key`, and the
stem / head keys) to a median, a spread and the number of runs, each marked ``measured``
or ``estimated``. A calibration (scale and fixed overhead, fitted on measured whole
networks) turns sums of entries into whole-network predictions.

Loading is strict: a file that is not a table, is corrupt, or was made for another device,
runtime, precision or shape is refused unless the caller forces it. Saving is atomic.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dna_zoo.errors import ConfigError, DnaZooError

TABLE_FORMAT = "dna-zoo-latency-table"
TABLE_VERSION = 1
MEASURED = "measured"
ESTIMATED = "estimated"


class LatencyTableError(DnaZooError, ValueError):
    """A latency table that is missing, corrupt, foreign, or does not fit the request."""


class MissingEntriesError(LatencyTableError, KeyError):
    """A network needs layer keys the table does not have."""

    def __init__(self, missing: Iterable[str], *, table: str = "the latency table") -> None:
        self.missing = sorted(set(missing))
        shown = ", ".join(self.missing[:8]) + (
            f" (+{len(self.missing) - 8} more)" if len(self.missing) > 8 else ""
        )
        super().__init__(
            f"{table} has no entry for {len(self.missing)} layer key(s): {shown}",
            hint="build the table for this search space / network: `dna latency build ...` "
            "(it measures only the missing layers)",
        )

    def __str__(self) -> str:
        return self.one_line()


@dataclass(frozen=True)
class TableSpec:
    """What a table is for: everything that must match before its figures may be used."""

    device: str
    runtime: str
    precision: str = "fp32"
    batch: int = 1
    input_size: int = 224
    threads: int | None = None
    in_chans: int = 3
    num_classes: int = 1000

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise ConfigError(f"batch must be >= 1, got {self.batch}")
        if self.input_size < 8:
            raise ConfigError(f"input size must be >= 8, got {self.input_size}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1, got {self.threads}")

    @property
    def slug(self) -> str:
        """File name stem in the cache, e.g. ``onnxruntime-fp32-b1-r224-t2``."""
        t = f"-t{self.threads}" if self.threads else ""
        extra = (
            "" if (self.in_chans, self.num_classes) == (3, 1000) else f"-c{self.in_chans}-n{self.num_classes}"
        )
        return f"{self.runtime}-{self.precision}-b{self.batch}-r{self.input_size}{t}{extra}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "runtime": self.runtime,
            "precision": self.precision,
            "batch": self.batch,
            "input_size": self.input_size,
            "threads": self.threads,
            "in_chans": self.in_chans,
            "num_classes": self.num_classes,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TableSpec:
        return cls(
            device=str(d["device"]),
            runtime=str(d["runtime"]),
            precision=str(d["precision"]),
            batch=int(d["batch"]),
            input_size=int(d["input_size"]),
            threads=None if d.get("threads") is None else int(d["threads"]),
            in_chans=int(d.get("in_chans", 3)),
            num_classes=int(d.get("num_classes", 1000)),
        )


@dataclass(frozen=True)
class Entry:
    """One layer's latency: median and spread (interquartile range of repeats), in ms."""

    median_ms: float
    spread_ms: float = 0.0
    runs: int = 0
    source: str = MEASURED
    #: cost relative to the build's reference layer, timed in the same rounds (drift-free);
    #: ``median_ms`` is this ratio times the reference's median over the whole build
    relative: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {
            "median_ms": round(self.median_ms, 6),
            "spread_ms": round(self.spread_ms, 6),
            "runs": self.runs,
            "source": self.source,
        }
        if self.relative is not None:
            d["relative"] = round(self.relative, 6)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Entry:
        rel = d.get("relative")
        e = cls(
            float(d["median_ms"]),
            float(d.get("spread_ms", 0.0)),
            int(d.get("runs", 0)),
            str(d["source"]),
            None if rel is None else float(rel),
        )
        if not (math.isfinite(e.median_ms) and math.isfinite(e.spread_ms)) or e.median_ms < 0:
            raise ValueError(f"invalid latency {e.median_ms}")
        if e.relative is not None and not (math.isfinite(e.relative) and e.relative >= 0):
            raise ValueError(f"invalid relative cost {e.relative}")
        if e.source not in (MEASURED, ESTIMATED):
            raise ValueError(f"invalid entry source {e.source!r}")
        return e


@dataclass(frozen=True)
class Calibration:
    """Whole network = ``scale`` x (sum of entries) + ``overhead_ms``; fitted on measured networks."""

    scale: float = 1.0
    overhead_ms: float = 0.0
    method: str = "none"
    networks: tuple[dict[str, Any], ...] = ()

    def apply(self, summed_ms: float) -> float:
        return self.scale * summed_ms + self.overhead_ms

    def to_dict(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "overhead_ms": self.overhead_ms,
            "method": self.method,
            "networks": list(self.networks),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        c = cls(
            float(d["scale"]),
            float(d["overhead_ms"]),
            str(d.get("method", "none")),
            tuple(d.get("networks", ())),
        )
        if not (math.isfinite(c.scale) and c.scale > 0 and math.isfinite(c.overhead_ms)):
            raise ValueError(f"invalid calibration {d}")
        return c


@dataclass
class LatencyTable:
    """A latency table in memory. ``entries`` grows while a build runs."""

    spec: TableSpec
    device_identity: dict[str, Any]
    runtime_version: str
    entries: dict[str, Entry] = field(default_factory=dict)
    calibration: Calibration = field(default_factory=Calibration)
    estimated: bool = False
    method: dict[str, Any] = field(default_factory=dict)
    library_versions: dict[str, str] = field(default_factory=dict)
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    meta: dict[str, Any] = field(default_factory=dict)

    # --- use -------------------------------------------------------------------------------
    def missing(self, keys: Iterable[str]) -> list[str]:
        return sorted({k for k in keys if k not in self.entries})

    def require(self, keys: Iterable[str]) -> None:
        """An error naming every key the table lacks (never a silent zero)."""
        missing = self.missing(keys)
        if missing:
            raise MissingEntriesError(missing, table=f"latency table {self.describe()}")

    def ms(self, key: str) -> float:
        try:
            return self.entries[key].median_ms
        except KeyError:
            raise MissingEntriesError([key], table=f"latency table {self.describe()}") from None

    def describe(self) -> str:
        s = self.spec
        t = f", {s.threads} threads" if s.threads else ""
        est = ", ESTIMATED" if self.estimated else ""
        rt = f"{s.runtime} {self.runtime_version}"
        return f"[{s.device} / {rt} / {s.precision} / bs{s.batch} / {s.input_size}px{t}{est}]"

    @property
    def source(self) -> str:
        """One line saying where the figures come from (shown next to them)."""
        how = self.method.get("kind", "")
        dev = self.device_identity.get("description") or self.spec.device
        if self.estimated:
            return f"{ESTIMATED} ({how} from specs): {self.spec.runtime} {self.spec.precision} on {dev}"
        return (
            f"{MEASURED} ({how}): {self.spec.runtime} {self.runtime_version} {self.spec.precision} on {dev}"
        )

    # --- persistence -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": TABLE_FORMAT,
            "version": TABLE_VERSION,
            "spec": self.spec.to_dict(),
            "device_identity": self.device_identity,
            "runtime_version": self.runtime_version,
            "estimated": self.estimated,
            "method": self.method,
            "created": self.created,
            "library_versions": self.library_versions,
            "calibration": self.calibration.to_dict(),
            "meta": self.meta,
            "entries": {k: self.entries[k].to_dict() for k in sorted(self.entries)},
        }

    def save(self, path: str | Path) -> Path:
        """Atomic write (temp file in the same folder, then rename): never half a table."""
        from dna_zoo.io import atomic_write_json

        try:
            return atomic_write_json(path, self.to_dict())
        except OSError as e:
            raise LatencyTableError(f"cannot write latency table {path}: {e}") from e

    @classmethod
    def from_dict(cls, d: Any, *, origin: str = "table") -> LatencyTable:
        if not isinstance(d, dict) or d.get("format") != TABLE_FORMAT:
            raise LatencyTableError(
                f"{origin} is not a dna-zoo latency table", hint="build one with `dna latency build`"
            )
        if d.get("version") != TABLE_VERSION:
            raise LatencyTableError(
                f"{origin} has latency table version {d.get('version')}, this dna-zoo reads {TABLE_VERSION}",
                hint="rebuild it with `dna latency build`",
            )
        try:
            table = cls(
                spec=TableSpec.from_dict(d["spec"]),
                device_identity=dict(d["device_identity"]),
                runtime_version=str(d["runtime_version"]),
                entries={str(k): Entry.from_dict(v) for k, v in d["entries"].items()},
                calibration=Calibration.from_dict(d["calibration"]),
                estimated=bool(d["estimated"]),
                method=dict(d.get("method", {})),
                library_versions={str(k): str(v) for k, v in d.get("library_versions", {}).items()},
                created=str(d.get("created", "")),
                meta=dict(d.get("meta", {})),
            )
        except (KeyError, TypeError, ValueError, AttributeError, DnaZooError) as e:
            raise LatencyTableError(f"{origin} is a corrupt latency table: {e}", hint="rebuild it") from e
        if not table.estimated and any(e.source != MEASURED for e in table.entries.values()):
            raise LatencyTableError(f"{origin} is inconsistent: a measured table holds estimated entries")
        return table

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        expect: TableSpec | None = None,
        identity: dict[str, Any] | None = None,
        force: bool = False,
    ) -> LatencyTable:
        """Read a table; refuse one made for another device / runtime / precision / shape.

        ``expect`` is what the caller wants the figures for; ``identity`` the detected device
        (a table measured on another CPU model or GPU is refused too). ``force`` accepts a
        mismatch (the table keeps saying what it was measured on).
        """
        p = Path(path)
        if not p.is_file():
            raise LatencyTableError(
                f"latency table {p} does not exist", hint="build it with `dna latency build`"
            )
        try:
            d = json.loads(p.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise LatencyTableError(f"{p} is not a valid latency table: {e}", hint="rebuild it") from e
        table = cls.from_dict(d, origin=str(p))
        if expect is not None:
            problems = table.mismatches(expect, identity)
            if problems and not force:
                raise LatencyTableError(
                    f"latency table {p} was made for another setting: {'; '.join(problems)}",
                    hint="build a table for this device/runtime/precision, or pass --force to use it anyway",
                )
        return table

    def mismatches(self, expect: TableSpec, identity: dict[str, Any] | None = None) -> list[str]:
        """What differs between this table and the wanted spec / detected device."""
        out = []
        mine = self.spec.to_dict()
        for k, want in expect.to_dict().items():
            if k == "threads" and want is None:
                continue
            if mine[k] != want:
                out.append(f"{k} is {mine[k]}, wanted {want}")
        if identity is not None and not self.estimated:
            have, want = self.device_identity.get("description"), identity.get("description")
            if have != want:
                out.append(f"measured on '{have}', this device is '{want}'")
        return out


def library_versions() -> dict[str, str]:
    """Versions of the libraries that decide latencies, recorded in every table."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("dna-zoo", "torch", "timm", "onnx", "onnxruntime", "numpy", "tensorrt"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out
