"""`dna export`, `dna benchmark`, `dna validate`: thin commands over dna_zoo.export."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import typer

from dna_zoo.cli.common import JsonOpt, QuietOpt, console, print_json, print_table, reporter

log = logging.getLogger(__name__)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _given(**options: Any) -> dict[str, Any]:
    """Only the options the user actually gave (flags that are set, values that are not None)."""
    return {k: v for k, v in options.items() if v is not None and v is not False}


def export(
    model: str | None = typer.Argument(
        None, help="Zoo name, timm name or searched-net .json; default: the newest runs/*/best.json here."
    ),
    fmt: str = typer.Option(..., "--format", "-f", help="onnx, onnx-int8, openvino, engine (alias trt)."),
    out: Path = typer.Option(Path("exports"), "--out", "-o", help="Output folder."),
    weights: Path | None = typer.Option(None, "--weights", "-w", help="Weights file (safetensors or .pth)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing artifact."),
    batch: int | None = typer.Option(
        None, "--batch", help="Batch size (static, or the optimum when dynamic)."
    ),
    dynamic: bool = typer.Option(False, "--dynamic", help="Dynamic batch dimension."),
    dynamic_size: bool = typer.Option(False, "--dynamic-size", help="Dynamic height/width too (onnx)."),
    input_size: int | None = typer.Option(
        None, "--input-size", help="Square input size (default: the model's)."
    ),
    opset: int | None = typer.Option(None, "--opset", help="ONNX opset (default 17)."),
    data: str | None = typer.Option(
        None, "--data", help="Image folder for the parity check (default: built-in)."
    ),
    tolerance: float | None = typer.Option(
        None, "--tolerance", help="fp32 max abs diff allowed (default 1e-4)."
    ),
    no_latency: bool = typer.Option(False, "--no-latency", help="Do not time the artifact."),
    threads: int | None = typer.Option(
        None, "--threads", help="CPU threads for checks and timing (default 2)."
    ),
    calib: str | None = typer.Option(None, "--calib", help="Calibration image folder (INT8)."),
    calib_size: int | None = typer.Option(None, "--calib-size", help="At most this many calibration images."),
    int8: bool = typer.Option(False, "--int8", help="INT8 (openvino via NNCF; engine from Q/DQ ONNX)."),
    half: bool = typer.Option(
        False, "--half", help="FP16 (engine); bf16 execution (openvino, AVX512-BF16/AMX CPUs)."
    ),
    max_batch: int | None = typer.Option(None, "--max-batch", help="Largest batch of the TensorRT profile."),
    workspace: float | None = typer.Option(None, "--workspace", help="TensorRT workspace limit, GiB."),
    timing_cache: str | None = typer.Option(None, "--timing-cache", help="TensorRT timing cache file."),
    onnx_only: bool = typer.Option(
        False, "--onnx-only", help="engine: write the TensorRT-ready ONNX + trtexec line."
    ),
    quiet: bool = QuietOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Export a model to a checked artifact (parity with torch on real images, manifest beside it)."""
    from dna_zoo.export.api import export_artifact, latest_search_result, no_model_error, recorded_target
    from dna_zoo.export.registry import get_format

    if model is None:
        found = latest_search_result()
        if found is None:
            raise no_model_error()
        model = str(found)
        if not json_out:
            console.print(f"exporting the latest search result: {model}")
    target = recorded_target(Path(model)) if model.endswith(".json") else {}
    if get_format(fmt).name == "engine" and not (half or int8) and target.get("precision") == "fp16":
        half = True  # the precision the net was searched for (its latency was predicted at fp16)
        if not json_out:
            device = target.get("device", "its device")
            console.print(f"{model} was searched for {device} at fp16: exporting fp16")
    options = _given(
        batch=batch, dynamic=dynamic, dynamic_size=dynamic_size, input_size=input_size, opset=opset,
        data=data, tolerance=tolerance, threads=threads, calib=calib, calib_size=calib_size, int8=int8,
        half=half, max_batch=max_batch, workspace=workspace, timing_cache=timing_cache, onnx_only=onnx_only,
    )  # fmt: skip
    if no_latency:
        options["latency"] = False
    art = export_artifact(
        model, fmt, out, weights=weights, force=force, progress=reporter(quiet or json_out), **options
    )
    m = art.manifest
    if json_out:
        print_json({"path": str(art.path), "manifest_path": str(art.manifest_path), "manifest": m})
        return
    p = m["parity"]
    kind = "TensorRT-ready ONNX, no engine built" if m.get("onnx_only") else m["format"]
    console.print(f"wrote {art.path} ({kind}, {m['precision']}); manifest {art.manifest_path.name}")
    console.print(
        f"parity vs torch on {p['n_images']} real images: max abs diff {p['max_abs_diff']:.2e} "
        f"(max |logit| {p['max_abs_logit']:.2g}), top-1 agreement {_pct(p['top1_agreement'])}, "
        f"{'PASSED' if p['passed'] else 'FAILED'} ({p['rule']})"
    )
    for name, t in (m.get("latency") or {}).items():
        if isinstance(t, dict):
            console.print(f"latency {name}: median {t['median_ms']:.2f} ms, p90 {t['p90_ms']:.2f} ms "
                          f"(batch {t['batch']}, {t['threads']} threads)")  # fmt: skip
    for kind in ("int8", "bf16"):
        if kind not in m:
            continue
        v = m[kind]
        speed = f"{v['speedup']:.2f}x vs {v['baseline']}" if v.get("speedup") else "speed not measured"
        style = "green" if v["ok"] else "bold red"
        console.print(
            f"[{style}]{kind.upper()} verdict: {v['verdict']} ({speed}, "
            f"agreement {_pct(v['top1_agreement'])})[/]"
        )
    if m.get("trtexec"):
        console.print("build the engine on the target with:")
        typer.echo(m["trtexec"])


def benchmark(
    model: str = typer.Argument(..., help="Zoo name, timm name or searched-net .json."),
    formats: str = typer.Option("torch,onnx,onnx-int8,openvino", "--formats", help="Comma-separated."),
    batch: str = typer.Option("1,8", "--batch", help="Comma-separated batch sizes."),
    data: str = typer.Option("builtin", "--data", help="Real images: builtin or a folder."),
    weights: Path | None = typer.Option(None, "--weights", "-w", help="Weights file."),
    calib: str | None = typer.Option(None, "--calib", help="Calibration folder for INT8 formats."),
    rounds: int = typer.Option(5, "--rounds", min=1, help="Interleaved rounds."),
    runs: int = typer.Option(10, "--runs", min=1, help="Timed runs per format per round."),
    threads: int = typer.Option(2, "--threads", min=1, help="CPU threads of every runtime."),
    out: Path = typer.Option(Path("exports"), "--out", "-o", help="Folder for the JSON and the plot."),
    quiet: bool = QuietOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Latency (median, p90), throughput, size and accuracy/agreement of each format, side by side."""
    from dna_zoo.export.benchmark import BenchmarkSettings, parse_batches, parse_formats, run_benchmark

    settings = BenchmarkSettings(batches=parse_batches(batch), rounds=rounds, runs=runs, threads=threads)
    result = run_benchmark(
        model, parse_formats(formats), weights=weights, data=data, calib=calib, settings=settings,
        out_dir=out, progress=reporter(quiet or json_out),
    )  # fmt: skip
    if json_out:
        print_json(result)
        return
    print_table(
        f"dna benchmark {model} ({result['settings']['threads']} threads, interleaved; {result['images']})",
        ["format", "batch", "median ms", "p90 ms", "img/s", "size MB", "top-1 acc", "agree vs torch"],
        [
            (r["format"], r["batch"], f"{r['median_ms']:.2f}", f"{r['p90_ms']:.2f}",
             f"{r['throughput_ips']:.1f}", f"{r['size_bytes'] / 1e6:.1f}", _pct(r.get("top1_accuracy")),
             _pct(r.get("top1_agreement")))
            for r in result["rows"]
        ],
    )  # fmt: skip
    if result["weights_note"]:
        console.print(result["weights_note"])
    console.print(f"saved {result['json']} and {result['plot']}")


def validate(
    model: str = typer.Argument(..., help="Zoo/timm name, searched-net .json, or an exported artifact file."),
    data: str = typer.Option("builtin", "--data", help="ImageFolder-layout folder, or builtin."),
    weights: Path | None = typer.Option(None, "--weights", "-w", help="Weights file."),
    fmt: str | None = typer.Option(
        None, "--format", "-f", help="Export to this format first (default: torch)."
    ),
    batch_size: int = typer.Option(16, "--batch-size", min=1),
    threads: int = typer.Option(2, "--threads", min=1),
    quiet: bool = QuietOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Top-1 / top-5 on an image folder with the model's own preprocessing (timm data pipeline)."""
    from dna_zoo.export.validate import validate_accuracy

    acc = validate_accuracy(
        model, data=data, weights=weights, fmt=fmt, batch_size=batch_size, threads=threads,
        progress=reporter(quiet or json_out),
    )  # fmt: skip
    if json_out:
        print_json(acc.to_dict())
        return
    top5 = "-" if acc.top5 is None else f"{acc.top5:.1f}%"
    console.print(
        f"{acc.model} [{acc.runner}] on {acc.data}: top-1 {acc.top1:.1f}%, top-5 {top5} "
        f"({acc.n_images} images)"
    )
