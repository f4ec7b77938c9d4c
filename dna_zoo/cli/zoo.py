"""`dna models`, `dna info`: what is in the zoo."""

from __future__ import annotations

import typer

from dna_zoo.cli.common import JsonOpt, console, print_json, print_table
from dna_zoo.complexity import MAC_CONVENTION_TEXT, encoding_cost, stage_costs
from dna_zoo.zoo import resolve_arch, zoo_overview


def models(json_out: bool = JsonOpt) -> None:
    """List the zoo: params, MACs at 224x224, published accuracy, weights."""
    rows = zoo_overview()
    if json_out:
        print_json({"input_size": 224, "mac_conventions": MAC_CONVENTION_TEXT, "models": rows})
        return
    print_table(
        "DNA zoo (224x224)",
        ["model", "params", "MACs conv+linear", "MACs all", "paper MACs", "paper top-1", "weights"],
        [
            (
                r["name"],
                f"{r['params'] / 1e6:.2f}M",
                f"{r['macs_conv_linear'] / 1e6:.0f}M",
                f"{r['macs_all'] / 1e6:.0f}M",
                f"{r['published_macs_m']}M",
                f"{r['published_top1']}%",
                r["weights"],
            )
            for r in rows
        ],
    )
    console.print(f"[dim]MACs: {MAC_CONVENTION_TEXT['conv_linear']}; {MAC_CONVENTION_TEXT['all']}[/dim]")


def info(
    model: str = typer.Argument(..., help="Zoo name (dna_b) or a searched-net .json file."),
    input_size: int = typer.Option(224, help="Input resolution."),
    num_classes: int = typer.Option(1000, help="Classifier size."),
    json_out: bool = JsonOpt,
) -> None:
    """Per-stage table of a DNA-family network: layers, ops, channels, stride, params, MACs."""
    enc = resolve_arch(model)
    stages = [s.to_dict() for s in stage_costs(enc, input_size=input_size, num_classes=num_classes)]
    total = encoding_cost(enc, input_size=input_size, num_classes=num_classes)
    result = {
        "model": enc.name or model,
        "input_size": input_size,
        "arch_def": enc.to_arch_def(),
        "stages": stages,
        "total": total.to_dict(),
        "mac_conventions": MAC_CONVENTION_TEXT,
    }
    if json_out:
        print_json(result)
        return
    print_table(
        f"{result['model']} at {input_size}x{input_size}",
        ["stage", "layers", "ops", "out ch", "stride", "out res", "params", "MACs c+l", "MACs all"],
        [
            (
                s["stage"],
                s["layers"],
                s["ops"],
                s["out_chs"],
                s["stride"],
                s["out_res"],
                f"{s['params']:,}",
                f"{s['macs_conv_linear'] / 1e6:.1f}M",
                f"{s['macs_all'] / 1e6:.1f}M",
            )
            for s in stages
        ]
        + [
            (
                "total",
                enc.num_layers,
                "",
                "",
                "",
                "",
                f"{total.params:,}",
                f"{total.macs / 1e6:.1f}M",
                f"{total.macs_as('all') / 1e6:.1f}M",
            )
        ],
    )
