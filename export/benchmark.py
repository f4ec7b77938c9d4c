"""``dna benchmark``: every format of one model side by side, in one process, on real images.

Each format is exported (dynamic batch, so one artifact serves every batch size), loaded
through the same runners parity uses, and timed interleaved with the others (round-robin,
order rotated each round, warm-up excluded): a CPU's speed drifts within seconds (the
drift measured here is in bench/results/README.md), so only side-by-side figures mean
anything. Accuracy is top-1 on the labelled real images where the model has their classes,
and top-1 agreement with torch always.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dna_zoo.errors import ConfigError
from dna_zoo.export.api import export_artifact, prepare_model, safe_stem
from dna_zoo.export.artifact import library_versions
from dna_zoo.export.inputs import data_config, image_set
from dna_zoo.export.load import load_runner
from dna_zoo.export.options import ExportOptions
from dna_zoo.export.parity import time_interleaved
from dna_zoo.export.registry import get_format
from dna_zoo.export.runners import Runner, torch_runner
from dna_zoo.io import atomic_save, atomic_write_json
from dna_zoo.progress import Reporter, reporter_or_null

log = logging.getLogger(__name__)

# Benchmark names that are an export format plus options.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "openvino-int8": ("openvino", {"int8": True}),
    "ov-int8": ("openvino", {"int8": True}),
    "openvino-bf16": ("openvino", {"half": True}),
    "ov-bf16": ("openvino", {"half": True}),
    "engine-fp16": ("engine", {"half": True}),
    "trt-fp16": ("engine", {"half": True}),
}
CALIBRATED = {"onnx-int8"}


@dataclass(frozen=True)
class BenchmarkSettings:
    batches: tuple[int, ...] = (1, 8)
    rounds: int = 5
    runs: int = 10
    warmup: int = 3
    threads: int = 2


def parse_formats(text: str) -> list[str]:
    """``"torch,onnx,onnx-int8"`` -> names, each checked (unknown: did you mean)."""
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    if not names:
        raise ConfigError("no formats given", hint="e.g. --formats torch,onnx,onnx-int8,openvino")
    for n in names:
        if n != "torch" and n not in VARIANTS:
            get_format(n)
    return names


def parse_batches(text: str) -> tuple[int, ...]:
    try:
        out = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError as e:
        raise ConfigError(f"--batch must be comma-separated integers, got {text!r}") from e
    if not out or min(out) < 1:
        raise ConfigError(f"--batch sizes must be >= 1, got {text!r}")
    return out


def _export(model: str, name: str, work: Path, weights, data, calib, threads: int) -> tuple[Runner, dict]:
    fmt, extra = VARIANTS.get(name, (name, {}))
    opts: dict[str, Any] = {"dynamic": True, "latency": False, "threads": threads, "data": data, **extra}
    if name in CALIBRATED or extra.get("int8"):
        opts["calib"] = calib
    art = export_artifact(model, fmt, work, weights=weights, force=True, **opts)
    runner = load_runner(art.path, threads=threads)
    runner.name = name
    return runner, art.manifest


def run_benchmark(
    model: str,
    formats: list[str],
    *,
    weights: Path | None = None,
    data: str | None = "builtin",
    calib: str | None = None,
    settings: BenchmarkSettings = BenchmarkSettings(),
    out_dir: Path | None = None,
    progress: Reporter | None = None,
) -> dict[str, Any]:
    """Export, check and time every format; returns (and with ``out_dir`` saves) the results."""
    net = prepare_model(model, weights, ExportOptions(data=None if data == "builtin" else data))
    cfg = data_config(net)
    images = image_set(None if data in (None, "builtin") else data, cfg, limit=64)
    runners: dict[str, Runner] = {}
    info: dict[str, dict[str, Any]] = {}
    track = reporter_or_null(progress).track
    with tempfile.TemporaryDirectory(prefix="dna-bench-") as tmp:
        for name in track(formats, "exporting", total=len(formats)):
            if name == "torch":
                runners[name] = torch_runner(net, threads=settings.threads)
                info[name] = {
                    "size_bytes": sum(p.numel() * p.element_size() for p in net.state_dict().values())
                }
                continue
            runner, manifest = _export(model, name, Path(tmp), weights, data, calib, settings.threads)
            runners[name] = runner
            info[name] = {
                "size_bytes": sum(f["bytes"] for f in manifest["files"].values()),
                "precision": manifest["precision"],
                "parity": manifest["parity"],
            }
        ref = runners.get("torch") or torch_runner(net, threads=settings.threads)
        ref_logits = ref(images.x)
        for name, r in runners.items():
            logits = r(images.x)
            info[name]["top1_agreement"] = float(np.mean(logits.argmax(1) == ref_logits.argmax(1)))
            if images.labelled and logits.shape[1] > max(images.labels):
                info[name]["top1_accuracy"] = float(np.mean(logits.argmax(1) == np.asarray(images.labels)))
        rows = []
        for b in track(settings.batches, "timing", total=len(settings.batches)):
            idx = np.arange(b) % len(images.x)
            timings = time_interleaved(
                runners, images.x[idx], rounds=settings.rounds, runs=settings.runs, warmup=settings.warmup
            )
            for name, t in timings.items():
                rows.append({"format": name, **t, **{k: v for k, v in info[name].items() if k != "parity"}})
    result = {
        "model": model,
        "weights": str(weights) if weights else None,
        "weights_note": None
        if weights
        else "random-init weights (seeded): accuracy is meaningless, agreement is not",
        "images": images.source,
        "n_images": len(images.labels),
        "settings": {**settings.__dict__, "batches": list(settings.batches)},
        "method": "formats interleaved in one process, order rotated each round, warm-up excluded",
        "rows": rows,
        "parity": {n: i.get("parity") for n, i in info.items() if i.get("parity")},
        "versions": library_versions(),
    }
    if out_dir is not None:
        out_dir = Path(out_dir)
        stem = safe_stem(Path(model).stem if model.endswith(".json") else model)
        result["json"] = str(atomic_write_json(out_dir / f"benchmark-{stem}.json", result))
        result["plot"] = str(plot(result, out_dir / f"benchmark-{stem}.png"))
    return result


def plot(result: dict[str, Any], path: Path) -> Path:
    """Median latency per format (bars, p90 as error bar) for each batch size, saved atomically."""

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batches = sorted({r["batch"] for r in result["rows"]})
    fig, axes = plt.subplots(1, len(batches), figsize=(5 * len(batches), 4), squeeze=False)
    for ax, b in zip(axes[0], batches, strict=True):
        rows = [r for r in result["rows"] if r["batch"] == b]
        names = [r["format"] for r in rows]
        med = [r["median_ms"] for r in rows]
        err = [max(r["p90_ms"] - r["median_ms"], 0) for r in rows]
        ax.bar(names, med, yerr=[[0] * len(err), err], capsize=3, color="#4c72b0")
        ax.set_title(f"{result['model']}, batch {b}")
        ax.set_ylabel("latency ms (median, p90 bar)")
        ax.tick_params(axis="x", rotation=30)
    fig.suptitle(f"threads={result['settings']['threads']}, interleaved, warm-up excluded", fontsize=9)
    fig.tight_layout()
    try:
        return atomic_save(path, lambda tmp: fig.savefig(tmp, dpi=100), suffix=".png")
    finally:
        plt.close(fig)
