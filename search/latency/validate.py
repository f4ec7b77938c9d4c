"""Proving a table: predicted vs measured latency of random whole networks of the space.

N random networks are exported and timed end to end on the same runtime as the table, all
interleaved in every round, in two separate passes (median over rounds each). The measured
figure is the mean of the passes; the passes' disagreement is the machine's own
repeatability, the floor under any prediction error. Reported: mean absolute % error, share
within ±10%, max error, Spearman rho, for the table and, on a device we can reach, for the
roofline estimator too (raw, and after one best-fit scale, since a roofline is optimistic
by a roughly constant factor). Figures go to JSON, the scatter plot to PNG.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import statistics
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dna_zoo.errors import ConfigError, OutputExistsError
from dna_zoo.progress import Reporter
from dna_zoo.search.latency.build import make_runtime
from dna_zoo.search.latency.calibration import calibration_references, speed_ratio
from dna_zoo.search.latency.items import network_items, random_network
from dna_zoo.search.latency.measurement import measure_networks
from dna_zoo.search.latency.predict import predict
from dna_zoo.search.latency.table import LatencyTable
from dna_zoo.search.space import SearchSpace
from dna_zoo.timing import TimingConfig

logger = logging.getLogger(__name__)

VALIDATION_SEED = 7


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (average ranks for ties)."""
    if len(x) != len(y) or len(x) < 2:
        return float("nan")
    rx, ry = _ranks(x), _ranks(y)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    num = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    den = (sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry)) ** 0.5
    return num / den if den else float("nan")


def _ranks(v: Sequence[float]) -> list[float]:
    order = sorted(range(len(v)), key=lambda i: v[i])
    ranks = [0.0] * len(v)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def error_metrics(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    """Mean / max absolute % error, share within ±10%, Spearman rho."""
    errs = [100.0 * (p - m) / m for p, m in zip(predicted, measured, strict=True)]
    abs_errs = [abs(e) for e in errs]
    return {
        "n": len(errs),
        "mean_abs_pct_error": round(statistics.fmean(abs_errs), 3),
        "median_abs_pct_error": round(statistics.median(abs_errs), 3),
        "within_10pct": round(sum(e <= 10.0 for e in abs_errs) / len(errs), 4),
        "max_abs_pct_error": round(max(abs_errs), 3),
        "mean_signed_pct_error": round(statistics.fmean(errs), 3),
        "spearman_rho": round(spearman(predicted, measured), 4),
    }


@dataclass
class ValidationReport:
    table: dict[str, Any]
    networks: list[dict[str, Any]]
    metrics: dict[str, float]
    repeatability: dict[str, float]
    estimator: dict[str, Any] | None = None
    #: the machine's speed now vs at build time (the table's calibration networks measured
    #: again in the same rounds) and the errors once that drift is taken out
    drift: dict[str, Any] | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "settings": self.settings,
            "metrics": self.metrics,
            "repeatability": self.repeatability,
            "estimator": self.estimator,
            "drift": self.drift,
            "networks": self.networks,
        }


def validate_table(
    table: LatencyTable,
    space: SearchSpace,
    *,
    samples: int = 50,
    seed: int = VALIDATION_SEED,
    timing: TimingConfig | None = None,
    estimator: bool = True,
    pin_threads: bool | None = None,
    shared_pool: bool | None = None,
    progress: Reporter | None = None,
) -> ValidationReport:
    """Measure ``samples`` random networks of ``space`` and compare with the table's predictions."""
    if samples < 2:
        raise ConfigError(f"need at least 2 networks to validate, got {samples}")
    if table.estimated:
        raise ConfigError(
            "cannot validate an estimated table by measuring here",
            hint="build a measured table on this device first: `dna latency build ...`",
        )
    spec = table.spec
    rng = random.Random(seed)
    nets = [random_network(space, rng, name=f"random{i}") for i in range(samples)]
    predicted = [predict(table, enc).total_ms for enc in nets]  # missing entries fail before measuring
    # The table's calibration networks, measured again in the same rounds: how fast the
    # machine is NOW compared with when the table was built (entries are not touched).
    refs = calibration_references(table)
    built_with = table.method.get("runtime_options", {})  # measure as the table was measured
    runtime = make_runtime(
        spec,
        pin_threads=built_with.get("pin_threads", True) if pin_threads is None else pin_threads,
        shared_pool=built_with.get("shared_pool", True) if shared_pool is None else shared_pool,
    )
    work = Path(tempfile.mkdtemp(prefix="dna-validate-"))
    try:
        passes = measure_networks(
            nets + [enc for _, enc in refs], spec, runtime, work, timing=timing, passes=2, progress=progress
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    a, b = (p[:samples] for p in passes)
    drift = None
    if refs:
        now = [(x + y) / 2 for x, y in zip(passes[0][samples:], passes[1][samples:], strict=True)]
        ratio = speed_ratio(refs, now)
        drift = {"machine_speed_ratio_now_vs_build": round(ratio, 4), "reference_networks": len(refs)}
    measured = [(x + y) / 2 for x, y in zip(a, b, strict=True)]
    rep = [100.0 * abs(x - y) / ((x + y) / 2) for x, y in zip(a, b, strict=True)]
    # the same with the machine's common speed change between the passes taken out: the
    # per-network noise that limits how well any prediction can rank networks
    common = statistics.median(x / y for x, y in zip(a, b, strict=True))
    rep_own = [100.0 * abs(x / (common * y) - 1.0) for x, y in zip(a, b, strict=True)]
    rows = [
        {
            "name": enc.name,
            "arch_def": enc.to_arch_def(),
            "predicted_ms": round(p, 4),
            "measured_ms": round(m, 4),
            "measured_pass_ms": [round(x, 4), round(y, 4)],
            "error_pct": round(100.0 * (p - m) / m, 3),
        }
        for enc, p, m, x, y in zip(nets, predicted, measured, a, b, strict=True)
    ]
    est = None
    if estimator:
        est = _estimator_error(space, table, nets, measured, rows)
    if drift is not None:
        drift["metrics_drift_corrected"] = error_metrics(
            [p * drift["machine_speed_ratio_now_vs_build"] for p in predicted], measured
        )
    return ValidationReport(
        table={
            "describe": table.describe(),
            "source": table.source,
            "entries": len(table.entries),
            **spec.to_dict(),
        },
        networks=rows,
        metrics=error_metrics(predicted, measured),
        repeatability={
            "mean_abs_pct_diff_between_passes": round(statistics.fmean(rep), 3),
            "max_abs_pct_diff_between_passes": round(max(rep), 3),
            "pass_speed_ratio": round(common, 4),
            "mean_abs_pct_diff_common_drift_removed": round(statistics.fmean(rep_own), 3),
            "max_abs_pct_diff_common_drift_removed": round(max(rep_own), 3),
            "spearman_rho_between_passes": round(spearman(a, b), 4),
        },
        estimator=est,
        drift=drift,
        settings={"samples": samples, "seed": seed, "space": space.name, "passes": 2},
    )


def _estimator_error(space, table: LatencyTable, nets, measured, rows) -> dict[str, Any] | None:
    """The roofline estimator's own error on this (reachable) device."""
    from dna_zoo.search.latency.devices import get_device
    from dna_zoo.search.latency.estimate import item_ms, roofline_for

    spec = table.spec
    profile = get_device(spec.device)
    try:
        roof = roofline_for(profile, spec.precision, threads=spec.threads)
    except Exception as e:  # no specs for this device / precision: report why, keep the rest
        logger.warning("no roofline estimate for %s: %s", spec.device, e)
        return {"error": str(e)}
    est = [
        sum(
            item_ms(it, roof, batch=spec.batch, num_classes=spec.num_classes)
            for it in network_items(enc, spec)
        )
        for enc in nets
    ]
    for row, e in zip(rows, est, strict=True):
        row["estimated_ms"] = round(e, 4)
    ratio = statistics.median(m / e for m, e in zip(measured, est, strict=True))
    return {
        "specs": {
            "peak_gflops": round(roof.peak_gflops, 1),
            "memory_bandwidth_gbs": round(roof.bandwidth_gbs, 1),
            "launch_overhead_us": round(roof.launch_us, 2),
            "source": roof.source,
        },
        "raw": error_metrics(est, measured),
        "median_measured_over_estimated": round(ratio, 3),
        "after_one_scale": error_metrics([e * ratio for e in est], measured),
    }


def save_report(report: ValidationReport, out_dir: str | Path, *, force: bool = False) -> tuple[Path, Path]:
    """Write ``validation.json`` and ``validation.png`` into ``out_dir`` (each atomically)."""
    out = Path(out_dir)
    js, png = out / "validation.json", out / "validation.png"
    if not force:
        for p in (js, png):
            if p.exists():
                raise OutputExistsError(p)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create output folder {out}: {e}") from e
    tmp_js = out / ".validation.json.tmp"
    tmp_js.write_text(json.dumps(report.to_dict(), indent=1))
    tmp_png = out / ".validation.png.tmp"
    plot_report(report, tmp_png)
    tmp_js.replace(js)
    tmp_png.replace(png)
    return js, png


def plot_report(report: ValidationReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report.networks
    meas = [r["measured_ms"] for r in rows]
    panels = [("table prediction", [r["predicted_ms"] for r in rows], report.metrics)]
    if report.drift:  # the same prediction at the machine's current speed
        ratio = report.drift["machine_speed_ratio_now_vs_build"]
        panels.append(
            (
                f"table x machine speed now ({ratio:.3f})",
                [r["predicted_ms"] * ratio for r in rows],
                report.drift["metrics_drift_corrected"],
            )
        )
    if report.estimator and "raw" in report.estimator:
        panels.append(("roofline estimate", [r["estimated_ms"] for r in rows], report.estimator["raw"]))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 5), squeeze=False)
    for ax, (title, pred, m) in zip(axes[0], panels, strict=True):
        lo, hi = min(meas + pred) * 0.9, max(meas + pred) * 1.1
        ax.plot([lo, hi], [lo, hi], "k-", lw=1, label="y = x")
        ax.fill_between([lo, hi], [lo * 0.9, hi * 0.9], [lo * 1.1, hi * 1.1], color="0.85", label="±10%")
        ax.scatter(meas, pred, s=18, color="tab:blue" if title.startswith("table") else "tab:orange")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel("measured latency (ms)")
        ax.set_ylabel(f"{title} (ms)")
        ax.set_title(
            f"{title}: {100 * m['within_10pct']:.0f}% within ±10%\n"
            f"mean |err| {m['mean_abs_pct_error']:.1f}%, rho {m['spearman_rho']:.3f}",
            fontsize=10,
        )
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle(report.table["describe"], fontsize=9)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)
