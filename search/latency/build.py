"""Building a latency table: enumerate the entries (:mod:`~dna_zoo.search.latency.items`),
measure each one as the whole network will pay for it
(:mod:`~dna_zoo.search.latency.measurement`), calibrate on whole networks
(:mod:`~dna_zoo.search.latency.calibration`), cache the result.

Resumable. Finished entries go to a partial file next to the table after every layer
(atomic writes); a killed build resumes from it. The complete table is written only at the
end, so a partial table is never in the cache as if complete.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dna_zoo.arch import ArchEncoding
from dna_zoo.errors import ConfigError
from dna_zoo.progress import Reporter, reporter_or_null
from dna_zoo.search.latency.cache import complete_path, partial_path
from dna_zoo.search.latency.calibration import calibration_networks, fit_calibration
from dna_zoo.search.latency.devices import DeviceIdentity, get_device, identify
from dna_zoo.search.latency.items import items_for
from dna_zoo.search.latency.measurement import (
    DEFAULT_COPIES,
    anchor_entries,
    measure_item,
    measure_networks,
    prepare_item,
    reference_item,
)
from dna_zoo.search.latency.runtimes import Runtime, RuntimeOptions, get_runtime
from dna_zoo.search.latency.table import LatencyTable, LatencyTableError, TableSpec, library_versions
from dna_zoo.search.space import SearchSpace
from dna_zoo.timing import TimingConfig

logger = logging.getLogger(__name__)


def resolve_spec(
    device: str,
    runtime: str | None = None,
    *,
    precision: str = "fp32",
    batch: int = 1,
    input_size: int = 224,
    threads: int | None = None,
    in_chans: int = 3,
    num_classes: int = 1000,
) -> TableSpec:
    """Canonical names (aliases resolved), checked runtime/precision, default threads;
    no ``runtime`` means the device's first (preferred) one."""
    from dna_zoo.search.latency.devices import available_cpus
    from dna_zoo.search.latency.runtimes import canonical_runtime

    profile = get_device(device)
    rt = canonical_runtime(runtime or profile.runtimes[0])
    profile.check_runtime(rt, precision)
    if threads is None and profile.kind == "cpu":
        threads = profile.threads or (available_cpus() if profile.local else None)
    if profile.kind != "cpu" and rt != "onnxruntime":
        threads = None
    return TableSpec(profile.name, rt, precision, batch, input_size, threads, in_chans, num_classes)


def make_runtime(spec: TableSpec, *, pin_threads: bool = True, shared_pool: bool = True) -> Runtime:
    rt = get_runtime(
        spec.runtime,
        RuntimeOptions(
            precision=spec.precision, threads=spec.threads, pin_threads=pin_threads, shared_pool=shared_pool
        ),
        device="cpu" if get_device(spec.device).kind == "cpu" else "gpu",
    )
    rt.check()
    return rt


def build_table(
    space: SearchSpace,
    spec: TableSpec,
    *,
    include_published: bool = True,
    networks: Iterable[ArchEncoding] = (),
    copies: int = DEFAULT_COPIES,
    timing: TimingConfig | None = None,
    calibration_timing: TimingConfig | None = None,
    calibrate: bool = True,
    pin_threads: bool = True,
    shared_pool: bool = True,
    cache_dir: str | Path | None = None,
    out: str | Path | None = None,
    rebuild: bool = False,
    progress: Reporter | None = None,
) -> LatencyTable:
    """Measure every missing entry for ``space`` (and DNA-a..d) on this device; cache and return the table.

    A complete cached table that already has every entry is returned as is; one that lacks
    entries (another space) is extended. A partial file from a killed build is resumed.
    """
    if copies < 2:
        raise ConfigError(f"copies must be >= 2 for a marginal cost, got {copies}")
    runtime = make_runtime(
        spec, pin_threads=pin_threads, shared_pool=shared_pool
    )  # not installed: say so first
    identity: DeviceIdentity = identify(get_device(spec.device))
    items = items_for(space, spec, include_published=include_published, networks=networks)
    final = Path(out) if out else complete_path(spec, cache_dir)
    part = partial_path(final)

    table = _start_table(
        spec, identity, runtime, final, part, rebuild=rebuild, copies=copies, pin_threads=pin_threads
    )
    todo = [it for it in items if it.key not in table.entries]
    if not todo and table.calibration.method != "none" and not rebuild:
        logger.info("latency table %s is complete (%d entries)", final, len(table.entries))
        if not final.exists():
            table.save(final)
        return table
    logger.info("measuring %d of %d entries into %s", len(todo), len(items), part)
    t0 = time.perf_counter()
    spent = float(table.meta.get("build_seconds", 0.0))
    work = Path(tempfile.mkdtemp(prefix="dna-latency-"))
    try:
        ref_item = reference_item(items, spec)
        ref_dir = work / "reference"
        ref_dir.mkdir()
        reference = prepare_item(ref_item, spec, runtime, ref_dir, copies=copies) if todo else None
        table.method["reference"] = ref_item.key
        for item in reporter_or_null(progress).track(
            todo, f"measure layers ({spec.device}/{spec.runtime})", total=len(todo)
        ):
            table.entries[item.key] = measure_item(
                item, spec, runtime, work, copies=copies, timing=timing, reference=reference
            )
            _clear(work)
            table.meta["build_seconds"] = round(spent + time.perf_counter() - t0, 1)
            table.save(part)
        ref_ms = anchor_entries(table.entries)
        if ref_ms is not None:
            table.meta["reference_ms"] = round(ref_ms, 6)
        if calibrate:
            nets = calibration_networks(space, include_published=include_published)
            measured = measure_networks(
                nets, spec, runtime, work, timing=calibration_timing, progress=progress
            )[0]
            from dna_zoo.search.latency.predict import summed_ms

            sums = [summed_ms(table, enc) for enc in nets]
            table.calibration = fit_calibration(sums, measured, nets)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table.meta["build_seconds"] = round(spent + time.perf_counter() - t0, 1)
    spaces = table.meta.setdefault("spaces", [])
    if {"name": space.name, "identity": space.identity} not in spaces:
        spaces.append({"name": space.name, "identity": space.identity})
    table.save(final)
    part.unlink(missing_ok=True)
    return table


def _start_table(
    spec, identity, runtime, final: Path, part: Path, *, rebuild: bool, copies: int, pin_threads: bool
) -> LatencyTable:
    fresh = LatencyTable(
        spec=spec,
        device_identity=identity.to_dict(),
        runtime_version=runtime.version(),
        method={
            "kind": "marginal-in-graph",
            "copies": copies,
            "formula": "(T_k - T_1) / (k - 1), k copies on distinct inputs in one model, interleaved rounds",
            "anchor": "each entry timed relative to a reference layer in the same rounds, "
            "then scaled by the reference's median over the build",
            "runtime_options": runtime.describe_options(),
            "pin_threads": pin_threads,
        },
        library_versions=library_versions(),
    )
    if rebuild:
        part.unlink(missing_ok=True)
        return fresh
    base = fresh
    for path, what in ((final, "complete"), (part, "partial")):
        if not path.exists():
            continue
        try:
            t = LatencyTable.load(path, expect=spec, identity=identity.to_dict())
        except LatencyTableError as e:
            if what == "complete":
                raise
            logger.warning("ignoring unusable partial table %s: %s", path, e)
            continue
        if t.method.get("kind") != fresh.method["kind"]:
            raise LatencyTableError(f"{path} was not measured by this method", hint="pass --rebuild")
        if what == "complete":
            base = t
        else:
            base.entries.update(t.entries)
            base.meta["build_seconds"] = t.meta.get("build_seconds", 0.0)
            logger.info("resuming from %s (%d entries)", path, len(t.entries))
    if base is not fresh or base.entries:
        base.runtime_version = fresh.runtime_version
        base.library_versions = fresh.library_versions
    return base


def _clear(folder: Path) -> None:
    for p in folder.iterdir():
        if p.is_file():
            p.unlink(missing_ok=True)


def table_summary(table: LatencyTable) -> dict[str, Any]:
    return {
        "spec": table.spec.to_dict(),
        "device": table.device_identity,
        "runtime_version": table.runtime_version,
        "estimated": table.estimated,
        "entries": len(table.entries),
        "calibration": table.calibration.to_dict(),
        "build_seconds": table.meta.get("build_seconds"),
        "source": table.source,
    }
