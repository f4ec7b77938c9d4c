"""`dna demo`: the README's main job on a built-in default."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from dna_zoo.cli.common import JsonOpt, QuietOpt, print_json, print_table, reporter
from dna_zoo.complexity import count_macs, count_params
from dna_zoo.models import PUBLISHED


def run_zoo_demo(*, quiet: bool = False, repeats: int = 5) -> list[dict]:
    """Build every zoo model, check its figures, and time a forward pass at 224x224."""
    import timm
    import torch

    rows = []
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    for name in reporter(quiet).track(PUBLISHED, "running the zoo"):
        model = timm.create_model(name).eval()
        with torch.inference_mode():
            model(x)  # warm-up
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                out = model(x)
                times.append(time.perf_counter() - t0)
        times.sort()
        rows.append(
            {
                "model": name,
                "params": count_params(model),
                "macs_conv_linear": count_macs(model),
                "latency_ms_torch_eager_bs1": round(1000 * times[len(times) // 2], 2),
                "output_finite": bool(torch.isfinite(out).all()),
            }
        )
    return rows


def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Run directory (an interrupted demo resumes)."),
    zoo: bool = typer.Option(False, "--zoo", help="Only build and time the zoo models (seconds)."),
    quiet: bool = QuietOpt,
    json_out: bool = JsonOpt,
) -> None:
    """The main job on the built-in default: teacher, supernet, rating, CPU latency table,
    exact search, retraining vs a baseline of the same latency, ONNX export (13 min measured on 2 cores)."""
    if not zoo:
        from dna_zoo.cli.search import run_and_report
        from dna_zoo.search.pipeline import PipelineConfig

        run_and_report(out, PipelineConfig(), quiet=quiet, json_out=json_out)
        return
    rows = run_zoo_demo(quiet=quiet or json_out)
    if json_out:
        print_json({"zoo": rows})
        return
    print_table(
        "dna demo: the zoo on this machine (torch eager, batch 1, 224x224, random input)",
        ["model", "params", "MACs c+l", "latency ms", "finite"],
        [
            (
                r["model"],
                f"{r['params']:,}",
                f"{r['macs_conv_linear'] / 1e6:.0f}M",
                r["latency_ms_torch_eager_bs1"],
                r["output_finite"],
            )
            for r in rows
        ],
    )
    if not all(r["output_finite"] for r in rows):
        raise typer.Exit(1)
