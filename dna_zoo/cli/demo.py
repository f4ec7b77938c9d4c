"""`dna demo`: the README's main job on a built-in default."""

from __future__ import annotations

from pathlib import Path

import typer

from dna_zoo.cli.common import JsonOpt, QuietOpt, print_json, print_table, reporter
from dna_zoo.zoo import run_zoo


def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Run directory (an interrupted demo resumes)."),
    zoo: bool = typer.Option(False, "--zoo", help="Only build and time the zoo models (seconds)."),
    quiet: bool = QuietOpt,
    json_out: bool = JsonOpt,
) -> None:
    """The main job on the built-in default: teacher, supernet, rating, CPU latency table,
    exact search, retraining vs a baseline of the same latency, ONNX export (minutes on a CPU;
    the measured time is in bench/results/README.md)."""
    if not zoo:
        from dna_zoo.cli.search import run_and_report
        from dna_zoo.search.pipeline import PipelineConfig

        run_and_report(out, PipelineConfig(), quiet=quiet, json_out=json_out)
        return
    rows = run_zoo(progress=reporter(quiet or json_out))
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
