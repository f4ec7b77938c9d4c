"""`dna models`, `dna info`: what is in the zoo."""

from __future__ import annotations

import typer

from dna_zoo.arch import iter_layers
from dna_zoo.cli.common import JsonOpt, console, print_json, print_table
from dna_zoo.complexity import encoding_cost, head_cost, layer_cost, stem_cost
from dna_zoo.models import PUBLISHED, default_cfgs
from dna_zoo.zoo import published_figures, resolve_arch


def weights_status(name: str) -> str:
    """Where pretrained weights for a zoo model come from, and whether they are cached."""
    cfg = default_cfgs.get(name)
    hub_id = cfg.default.hf_hub_id if cfg is not None else None
    if not hub_id:
        return "none"
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(hub_id, "model.safetensors")
    return f"hub:{hub_id}" + (" (cached)" if isinstance(cached, str) else "")


def models(json_out: bool = JsonOpt) -> None:
    """List the zoo: params, MACs at 224x224, published accuracy, weights."""
    rows = []
    for name in PUBLISHED:
        cost = encoding_cost(resolve_arch(name))
        pub = published_figures(name)
        rows.append(
            {
                "name": name,
                "params": cost.params,
                "macs_conv_linear": cost.macs_as("conv_linear"),
                "macs_all": cost.macs_as("all"),
                "published_params_m": pub["params_m"],
                "published_macs_m": pub["macs_m"],
                "published_top1": pub["top1"],
                "weights": weights_status(name),
            }
        )
    if json_out:
        print_json({"input_size": 224, "mac_conventions": _CONVENTIONS, "models": rows})
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
    console.print(f"[dim]MACs: {_CONVENTIONS['conv_linear']}; {_CONVENTIONS['all']}[/dim]")


_CONVENTIONS = {
    "conv_linear": "conv+linear = multiply-adds of convolutions and linear layers",
    "all": "all = conv+linear plus one per BatchNorm/activation output element (the paper's count)",
}


def info(
    model: str = typer.Argument(..., help="Zoo name (dna_b) or a searched-net .json file."),
    input_size: int = typer.Option(224, help="Input resolution."),
    num_classes: int = typer.Option(1000, help="Classifier size."),
    json_out: bool = JsonOpt,
) -> None:
    """Per-stage table of a DNA-family network: layers, ops, channels, stride, params, MACs."""
    enc = resolve_arch(model)
    stages: list[dict] = [
        {
            "stage": "stem",
            "layers": 1,
            "ops": "conv3x3",
            "out_chs": enc.stem_size,
            "stride": 2,
            "out_res": (input_size + 1) // 2,
            **_cost_dict(stem_cost(3, enc.stem_size, input_size)),
        }
    ]
    by_stage: dict[int, list] = {}
    for inst in iter_layers(enc, input_size):
        by_stage.setdefault(inst.stage, []).append(inst)
    last = None
    for si, insts in by_stage.items():
        cost = sum((layer_cost(i) for i in insts), start=stem_cost(0, 0, 0))
        stride = 1
        for i in insts:
            stride *= i.layer.stride
        stages.append(
            {
                "stage": si,
                "layers": len(insts),
                "ops": " ".join(i.layer.op.name.replace("_se0.25", "") for i in insts),
                "out_chs": insts[-1].layer.out_chs,
                "stride": stride,
                "out_res": insts[-1].out_res,
                **_cost_dict(cost),
            }
        )
        last = insts[-1]
    assert last is not None
    stages.append(
        {
            "stage": "head",
            "layers": 1,
            "ops": f"conv1x1+pool+fc{num_classes}",
            "out_chs": enc.num_features,
            "stride": 1,
            "out_res": 1,
            **_cost_dict(head_cost(last.layer.out_chs, enc.num_features, last.out_res, num_classes)),
        }
    )
    total = encoding_cost(enc, input_size=input_size, num_classes=num_classes)
    result = {
        "model": enc.name or model,
        "input_size": input_size,
        "arch_def": enc.to_arch_def(),
        "stages": stages,
        "total": _cost_dict(total),
        "mac_conventions": _CONVENTIONS,
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


def _cost_dict(c) -> dict[str, int]:
    return {
        "params": c.params,
        "macs_conv_linear": c.macs_as("conv_linear"),
        "macs_all": c.macs_as("all"),
    }
