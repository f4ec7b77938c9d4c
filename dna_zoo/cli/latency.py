"""`dna latency devices | build | validate | predict`: hardware-aware latency tables."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from dna_zoo.cli.common import JsonOpt, QuietOpt, console, print_json, print_table, reporter
from dna_zoo.errors import ConfigError

app = typer.Typer(
    help="Latency tables: measure every layer on a device, predict whole networks, prove it.",
    no_args_is_help=True,
)

DeviceOpt = typer.Option(
    "cpu",
    "--device",
    "-d",
    help="Device name or alias (see `dna latency devices`), or a device file board.json.",
)
RuntimeOpt = typer.Option(
    None, "--runtime", "-r", help="onnxruntime (ort), torch, tensorrt (trt); default: the device's first."
)
PrecisionOpt = typer.Option(
    None,
    "--precision",
    help="fp32, fp16, bf16 (what the runtime supports) [fp16 with TensorRT on a Jetson, else fp32].",
)
BatchOpt = typer.Option(1, "--batch", min=1, help="Batch size.")
SizeOpt = typer.Option(224, "--input-size", min=8, help="Input resolution.")
ThreadsOpt = typer.Option(None, "--threads", min=1, help="CPU threads (default: all this process may use).")
SpaceOpt = typer.Option("default", "--space", help="Search space: default, small, or a space .json file.")
ForceOpt = typer.Option(False, "--force", help="Use a table made for another device/setting anyway.")
TableOpt = typer.Option(None, "--table", help="A table file to use instead of the cached one.")


def _spec(
    device: str, runtime: str | None, precision: str | None, batch: int, input_size: int, threads: int | None
):
    from dna_zoo.search.latency.build import resolve_spec
    from dna_zoo.search.latency.devices import default_setting

    runtime, precision = default_setting(device, runtime, precision)  # what a user of the device means
    return resolve_spec(
        device, runtime, precision=precision, batch=batch, input_size=input_size, threads=threads
    )


def _warn(msg: str) -> None:
    typer.echo(f"warning: {msg}", err=True)


@app.command("devices")
def devices(json_out: bool = JsonOpt) -> None:
    """Known devices and runtimes, and which measured tables this machine has cached."""
    from dna_zoo.search.latency.devices import inventory

    inv = inventory()
    devs, runtimes, tables, cache = inv["devices"], inv["runtimes"], inv["tables"], inv["cache"]
    if json_out:
        print_json(inv)
        return
    print_table(
        "devices",
        ["device", "aliases", "kind", "runtimes", "fp32 GFLOP/s", "fp16 GFLOP/s", "mem GB/s", "tables here"],
        [
            (
                d["name"],
                ", ".join(d["aliases"]),
                d["kind"] + (" (local)" if d["local"] else ""),
                ", ".join(d["runtimes"]),
                d["peak_gflops"].get("fp32", "measured" if d["local"] else "-"),
                d["peak_gflops"].get("fp16", "measured" if d["local"] else "-"),
                d["memory_bandwidth_gbs"] or ("measured" if d["local"] else "-"),
                d["measured_tables"],
            )
            for d in devs
        ],
    )
    print_table("runtimes", ["runtime", "status"], runtimes.items())
    if tables:
        print_table(
            f"measured tables in {cache}",
            ["device", "runtime", "precision", "batch", "size", "threads", "entries", "measured on"],
            [
                (
                    t.get("device", "?"),
                    t.get("runtime", ""),
                    t.get("precision", ""),
                    t.get("batch", ""),
                    t.get("input_size", ""),
                    t.get("threads", ""),
                    t.get("entries", t.get("error")),
                    t.get("measured_on", ""),
                )
                for t in tables
            ],
        )
    else:
        console.print(
            f"no measured tables in {cache} yet: `dna latency build --device cpu --runtime onnxruntime`"
        )
    for d in devs:
        if d["source"]:
            console.print(f"[dim]{d['name']}: {d['source']}[/dim]")


@app.command("build")
def build(
    device: str = DeviceOpt,
    runtime: str | None = RuntimeOpt,
    precision: str | None = PrecisionOpt,
    batch: int = BatchOpt,
    input_size: int = SizeOpt,
    threads: int | None = ThreadsOpt,
    space: str = SpaceOpt,
    published: bool = typer.Option(
        True, "--published/--no-published", help="Also measure DNA-a..d's layers."
    ),
    copies: int = typer.Option(4, "--copies", min=2, help="Copies of a layer in the k-copy graph."),
    out: Path | None = typer.Option(None, "--out", help="Write the table here instead of the cache."),
    rebuild: bool = typer.Option(False, "--rebuild", help="Measure everything again (drop cached entries)."),
    estimate: bool = typer.Option(
        False, "--estimate", help="Write a roofline estimate (needs --out); measures nothing."
    ),
    json_out: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Measure every layer configuration of a search space on THIS device (resumes a killed build)."""
    from dna_zoo.search.latency.build import build_table, table_summary
    from dna_zoo.search.latency.cache import complete_path
    from dna_zoo.search.space import get_space

    sp = get_space(space)
    spec = _spec(device, runtime, precision, batch, input_size, threads)
    if estimate:
        from dna_zoo.search.latency.estimate import estimate_table, estimate_warning

        if out is None:
            raise ConfigError(
                "--estimate writes a file: give --out PATH",
                hint="estimates are never cached as measured tables",
            )
        table = estimate_table(sp, spec, include_published=published)
        table.save(out)
        _warn(estimate_warning(spec))
        path = out
    else:
        table = build_table(
            sp,
            spec,
            include_published=published,
            copies=copies,
            out=out,
            rebuild=rebuild,
            progress=reporter(quiet or json_out),
        )
        path = out or complete_path(spec)
    summary = {"path": str(path), **table_summary(table)}
    if json_out:
        print_json(summary)
        return
    cal = table.calibration
    console.print(f"latency table: {path}")
    console.print(escape(f"  {table.describe()}  {len(table.entries)} entries"))
    console.print(f"  {table.source}")
    if not table.estimated:
        console.print(
            f"  calibration: {cal.method}: scale {cal.scale:.3f}, "
            f"overhead {cal.overhead_ms:.3f} ms ({len(cal.networks)} networks)"
        )
        console.print(f"  build time: {table.meta.get('build_seconds', 0):.0f} s")


@app.command("validate")
def validate(
    device: str = DeviceOpt,
    runtime: str | None = RuntimeOpt,
    precision: str | None = PrecisionOpt,
    batch: int = BatchOpt,
    input_size: int = SizeOpt,
    threads: int | None = ThreadsOpt,
    space: str = SpaceOpt,
    samples: int = typer.Option(50, "--samples", min=2, help="Random networks to measure."),
    seed: int = typer.Option(7, "--seed", help="Seed of the random networks."),
    out: Path = typer.Option(
        Path("latency-validation"), "--out", help="Folder for validation.json and validation.png."
    ),
    table_path: Path | None = TableOpt,
    force: bool = ForceOpt,
    estimator: bool = typer.Option(
        True, "--estimator/--no-estimator", help="Also measure the roofline estimator's error."
    ),
    json_out: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Predicted vs measured latency of random networks of the space: errors, Spearman rho, plot."""
    from dna_zoo.search.latency.cost import measured_table
    from dna_zoo.search.latency.validate import save_report, validate_table
    from dna_zoo.search.space import get_space

    sp = get_space(space)
    spec = _spec(device, runtime, precision, batch, input_size, threads)
    table = measured_table(spec, force=force, path=table_path)
    for p in (out / "validation.json", out / "validation.png"):
        if p.exists() and not force:
            from dna_zoo.errors import OutputExistsError

            raise OutputExistsError(p)
    report = validate_table(
        table, sp, samples=samples, seed=seed, estimator=estimator, progress=reporter(quiet or json_out)
    )
    js, png = save_report(report, out, force=force)
    if json_out:
        print_json({"json": str(js), "plot": str(png), **report.to_dict()})
        return
    m, r = report.metrics, report.repeatability
    console.print(escape(f"{table.describe()}  {samples} random networks of space '{sp.name}'"))
    rows = [
        ("table prediction", m),
    ]
    if report.drift:
        rows.append(("table, machine drift taken out", report.drift["metrics_drift_corrected"]))
    if report.estimator and "raw" in report.estimator:
        rows += [
            ("roofline estimate", report.estimator["raw"]),
            ("roofline x one scale", report.estimator["after_one_scale"]),
        ]
    print_table(
        "predicted vs measured",
        ["predictor", "mean |err| %", "within ±10%", "max |err| %", "Spearman rho"],
        [
            (
                n,
                f"{x['mean_abs_pct_error']:.2f}",
                f"{100 * x['within_10pct']:.0f}%",
                f"{x['max_abs_pct_error']:.1f}",
                f"{x['spearman_rho']:.3f}",
            )
            for n, x in rows
        ],
    )
    console.print(
        "machine repeatability (two passes of the same networks): "
        f"mean {r['mean_abs_pct_diff_between_passes']:.2f}%, "
        f"max {r['max_abs_pct_diff_between_passes']:.2f}%; with their common speed change "
        f"(x{r['pass_speed_ratio']:.3f}) taken out: mean {r['mean_abs_pct_diff_common_drift_removed']:.2f}%, "
        f"rho between passes {r['spearman_rho_between_passes']:.3f}"
    )
    if report.drift:
        console.print(
            f"machine speed now vs at build time: x{report.drift['machine_speed_ratio_now_vs_build']:.3f} "
            f"({report.drift['reference_networks']} calibration networks measured again)"
        )
    console.print(f"wrote {js} and {png}")


@app.command("predict")
def predict(
    models: list[str] = typer.Argument(
        ...,
        help="Zoo names (dna_b), searched-net / encoding .json files, or layer-row network .json files.",
    ),
    device: str = DeviceOpt,
    runtime: str | None = RuntimeOpt,
    precision: str | None = PrecisionOpt,
    batch: int = BatchOpt,
    input_size: int = SizeOpt,
    threads: int | None = ThreadsOpt,
    table_path: Path | None = TableOpt,
    force: bool = ForceOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Networks' predicted latency (per-stage breakdown), estimated where the device has no table."""
    from dna_zoo.search.latency.predict_many import predict_many

    spec = _spec(device, runtime, precision, batch, input_size, threads)
    results, warning = predict_many(models, spec, table=table_path, force=force)
    if warning:
        _warn(warning)
    if json_out:
        print_json(results)
        return
    for r in results:
        tag = " (ESTIMATED)" if r["estimated"] else ""
        stages = r.get("stages_ms") or {}
        print_table(
            f"{r['model']}: predicted latency{tag}",
            ["part", "ms"],
            [(k, f"{v:.3f}") for k, v in stages.items()] + [("total" + tag, f"{r['latency_ms']:.3f}")],
        )
        console.print(f"[dim]{escape(r['source'])}[/dim]")
