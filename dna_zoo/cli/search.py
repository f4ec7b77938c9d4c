"""`dna search`: the lowest-rated network within latency / MACs / params budgets."""

from __future__ import annotations

import math
import re
from pathlib import Path

import typer
from rich.markup import escape

from dna_zoo.cli.common import JsonOpt, QuietOpt, console, err_console, print_json, print_table, reporter
from dna_zoo.errors import ConfigError, OutputExistsError

_SUFFIX = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "B": 1e9}


def parse_budget(text: str, *, what: str, unit: str = "") -> float:
    """A positive budget such as ``400M``, ``5M``, ``1.5G``, ``20`` or ``20ms``."""
    s = str(text).strip()
    if unit and s.endswith(unit):
        s = s[: -len(unit)].strip()
    m = re.fullmatch(r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([kKMGB]?)", s)
    if not m:
        raise ConfigError(
            f"cannot read the {what} budget '{text}'",
            hint="use a number with an optional k/M/G suffix, e.g. 400M",
        )
    value = float(m.group(1)) * _SUFFIX[m.group(2)]
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"the {what} budget must be positive, got '{text}'")
    return value


def _fmt(name: str, value: float) -> str:
    if name == "latency":
        return f"{value:.3f} ms"
    if name == "params":
        return f"{value / 1e6:.3f}M"
    if name == "macs":
        return f"{value / 1e6:.1f}M"
    return f"{value:g}"


def search(
    ratings: Path | None = typer.Option(None, "--ratings", help="Ratings file from `dna supernet rate`."),
    calibration: Path | None = typer.Option(
        None,
        "--calibration",
        help="Accuracy predictor from `dna supernet calibrate` [calibration.json beside --ratings, if any].",
    ),
    latency_ms: float | None = typer.Option(None, "--latency-ms", help="Latency budget in milliseconds."),
    device: str | None = typer.Option(
        None, "--device", help="Device of the latency table (cpu, jetson, ...) or a device file board.json."
    ),
    runtime: str | None = typer.Option(
        None,
        "--runtime",
        help="Runtime of the latency table [the device's first: TensorRT on a Jetson, onnxruntime on cpu].",
    ),
    precision: str | None = typer.Option(
        None, "--precision", help="Precision of the latency table [fp16 with TensorRT (a Jetson), else fp32]."
    ),
    objective: str | None = typer.Option(
        None,
        "--objective",
        help="What to maximise: rating (the --ratings file), predictor (the ratings' calibrated accuracy "
        "predictor, predicted top-1), prior (ImageNet prior shipped with dna-zoo, predicted top-1) or macs "
        "[the best-measured one for the inputs given: with --ratings, macs (it out-ranked the rating on "
        "bench/ranking_decisions.py), or predictor where its calibration beat MACs; without, prior].",
    ),
    batch: int = typer.Option(1, "--batch", help="Batch size of the latency table."),
    threads: int | None = typer.Option(None, "--threads", help="Threads of the latency table."),
    force_table: bool = typer.Option(
        False, "--force-table", help="Use a latency table even if it was made for another setting."
    ),
    macs: str | None = typer.Option(None, "--macs", help="MACs budget, e.g. 400M."),
    mac_convention: str = typer.Option(
        "conv_linear", "--mac-convention", help="conv_linear (conv+linear multiply-adds) or all."
    ),
    params: str | None = typer.Option(None, "--params", help="Parameter budget, e.g. 5M."),
    input_size: int | None = typer.Option(
        None, "--input-size", help="Input resolution of the costs [224; with --data: 32]."
    ),
    num_classes: int | None = typer.Option(
        None, "--num-classes", help="Classifier size of the costs [1000; with --data: the data's]."
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Output directory [next to the ratings; with --data: runs/search]."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing best.json / pareto.png."),
    data: str | None = typer.Option(
        None,
        "--data",
        help="Run the whole pipeline on this data ('builtin' or a folder) instead of --ratings.",
    ),
    space: str | None = typer.Option(
        None, "--space", help="Search space: small, default or a .json [pipeline: small; else default]."
    ),
    teacher: str = typer.Option("efficientnet_b0", "--teacher", help="[pipeline] teacher (timm name)."),
    teacher_weights: str | None = typer.Option(
        None, "--teacher-weights", help="[pipeline] teacher weights (default: trained on the built-in data)."
    ),
    epochs: int = typer.Option(1, "--epochs", help="[pipeline] supernet epochs."),
    retrain_epochs: int = typer.Option(2, "--retrain-epochs", help="[pipeline] retrain epochs (0: skip)."),
    baseline: bool = typer.Option(
        True, "--baseline/--no-baseline", help="[pipeline] retrain a baseline too."
    ),
    quiet: bool = QuietOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Find the lowest-rated network within the budgets; write best.json and pareto.png.

    With --ratings: search a ratings file. With --data: run the whole pipeline (teacher,
    supernet, rating, latency table, search, retrain) in a resumable run directory. With
    neither: the paper's default space at 224 px / 1000 classes, maximising the ImageNet prior
    that ships with dna-zoo (predicted top-1 with its leave-one-out error), in a new runs/search-N.

    On a Jetson the latency is TensorRT fp16 by default (the device's first runtime; fp16
    wherever that is TensorRT); elsewhere the device's first runtime at fp32.
    """
    from dna_zoo.io import new_run_dir
    from dna_zoo.search.latency.devices import default_setting
    from dna_zoo.search.ratings import Ratings
    from dna_zoo.search.space import get_space
    from dna_zoo.search.strategy.budgets import Budgets
    from dna_zoo.search.strategy.objective import search_objective
    from dna_zoo.search.strategy.plot import pareto_plot

    if data is not None and ratings is not None:
        raise ConfigError("give --ratings or --data, not both")
    if data is None:
        input_size = input_size or 224
        num_classes = 1000 if num_classes is None else num_classes
        if input_size < 8 or num_classes < 0:
            raise ConfigError(f"invalid input size {input_size} / number of classes {num_classes}")
    if latency_ms is not None and device:
        runtime, precision = default_setting(device, runtime, precision)
    budgets = Budgets(
        latency_ms=latency_ms, device=device, runtime=runtime, precision=precision or "fp32", threads=threads,
        macs=None if macs is None else parse_budget(macs, what="MACs"),
        params=None if params is None else parse_budget(params, what="params"),
    )  # fmt: skip
    if data is not None:
        from dna_zoo.search.pipeline import PipelineConfig

        cfg = PipelineConfig(
            data=data, space=space or "small", teacher=teacher, teacher_weights=teacher_weights,
            input_size=input_size or 32, supernet_epochs=epochs, retrain_epochs=retrain_epochs,
            baseline=baseline, num_classes=num_classes or 10, budgets=budgets,
        )  # fmt: skip
        run_and_report(out or Path("runs/search"), cfg, quiet=quiet, json_out=json_out)
        return
    if out is not None:
        out_dir = out
    elif ratings is not None:
        out_dir = Path(ratings).parent
    else:
        out_dir = new_run_dir(Path("runs"), "search")
    best_path, plot_path = out_dir / "best.json", out_dir / "pareto.png"
    if not force:
        for p in (best_path, plot_path):
            if p.exists():
                raise OutputExistsError(p)
    r = Ratings.load(ratings) if ratings is not None else None
    if objective is None and calibration is not None:
        objective = "predictor"  # a calibration named on the command line is asked for
    predictor = _calibration(
        calibration, ratings, objective, run=None if r is None else r.meta.get("run_dir")
    )
    found = search_objective(
        budgets, ratings=r, ratings_path=None if ratings is None else str(ratings), calibration=predictor,
        objective=objective,
        space=r.space if r is not None else get_space(space or "default"), input_size=input_size,
        num_classes=num_classes, batch=batch, mac_convention=mac_convention, force_table=force_table,
    )  # fmt: skip
    lat = found.constraints.latency
    if lat is not None and lat.estimated:
        err_console.print(f"[yellow]warning:[/yellow] {escape(lat.table.method['warning'])}")
    if objective is None and r is not None and found.objective == "macs" and not json_out:
        from dna_zoo.search.strategy.objective import RATINGS_NOT_DEFAULT

        err_console.print(f"note: {escape(RATINGS_NOT_DEFAULT)}")
    result = found.result
    result.save(best_path)
    pareto_plot(result, plot_path)
    summary = summarize(result, best_path, plot_path)
    if json_out:
        print_json(summary)
        return
    show_summary(summary)


def _calibration(calibration: Path | None, ratings: Path | None, objective: str | None, *, run: str | None):
    """The accuracy predictor: --calibration, else calibration.json beside the ratings (if there
    and if the objective can use it); None when there is none."""
    from dna_zoo.search.calibrate import CALIBRATION
    from dna_zoo.search.strategy.predictor import AccuracyPredictor

    if calibration is not None and ratings is None:
        raise ConfigError("--calibration needs the --ratings it was fitted with")
    if calibration is None and ratings is not None and objective in (None, "predictor"):
        beside = Path(ratings).parent / CALIBRATION
        calibration = beside if beside.is_file() else None
    if calibration is None:
        if objective == "predictor" and ratings is not None:
            where = Path(ratings).parent if ratings is not None else Path(".")
            raise ConfigError(
                f"--objective predictor needs a calibration: no {CALIBRATION} in {where}",
                hint=f"run `dna supernet calibrate {run or 'RUN'} --nets 10`, or pass --calibration FILE",
            )
        return None
    return AccuracyPredictor.load(calibration)


def summarize(result, best_path: Path, plot_path: Path) -> dict:
    from dna_zoo.search.result import zoo_fits

    return {
        "best": str(best_path),
        "plot": str(plot_path),
        "name": result.arch.name,
        "arch_def": result.arch.to_arch_def(),
        "candidates": list(result.candidates),
        "rating": result.rating,
        "costs": [c.to_dict() for c in result.costs],
        "params": result.params,
        "macs": result.macs,
        "input_size": result.input_size,
        "front_points": len(result.front),
        "references": [ref.to_dict() for ref in result.references],
        "zoo_fits": zoo_fits(result),
        "objective": result.meta.get("objective", "rating"),
        "imagenet_prior": result.meta.get("imagenet_prior"),
        "predictor": result.meta.get("predictor"),
        "seconds": result.meta.get("seconds", {}),
    }


def show_summary(s: dict) -> None:
    rows = []
    from dna_zoo.search.strategy.objective import objective_text

    rows.append(("objective", objective_text(s["objective"])))
    if s["objective"] == "rating":
        rows.append(("rating", f"{s['rating']:.5f}"))
    if s.get("predictor"):
        rows.append(("predicted top-1", escape(s["predictor"]["text"])))
    if s.get("imagenet_prior"):
        rows.append(("predicted ImageNet top-1", escape(s["imagenet_prior"]["text"])))
    for c in s["costs"]:
        budget = "" if c["budget"] is None else f" (budget {_fmt(c['name'], c['budget'])})"
        est = " ESTIMATED" if c["estimated"] else ""
        held = (c.get("details") or {}).get("estimate", {}).get("held_out_error")
        if held:
            est += f", held-out error ±{held['mean_abs_pct_error']:.0f}% mean"
        rows.append((c["name"], escape(f"{_fmt(c['name'], c['value'])}{budget} ({c['source']}{est})")))
    rows += [
        ("params (analytic)", f"{s['params']:,}"),
        ("MACs conv+linear", f"{s['macs']['conv_linear'] / 1e6:.1f}M at {s['input_size']}px"),
        ("MACs all", f"{s['macs']['all'] / 1e6:.1f}M (conv+linear plus BN/activation elements)"),
        ("Pareto front", f"{s['front_points']} networks along {s['costs'][0]['name']}"),
        ("zoo models within budget", ", ".join(s["zoo_fits"]) or "none of DNA-a..d"),
        ("solver time", f"{sum(s['seconds'].values()):.3f} s"),
    ]
    print_table("dna search: chosen network", ["", "value"], rows)
    console.print("arch_def:")
    for stage in s["arch_def"]:
        console.print("  " + ", ".join(stage))
    console.print(f"wrote {s['best']} and {s['plot']}")


def run_and_report(run_dir: Path, cfg, *, quiet: bool, json_out: bool) -> dict:
    """Run (or resume) the pipeline and print its report (shared by `dna search --data` and `dna demo`)."""
    import time

    from dna_zoo.search.pipeline import run_pipeline

    t0 = time.perf_counter()

    def stage(msg: str) -> None:
        if not (quiet or json_out):
            err_console.print(f"[bold]== {msg}[/bold] [dim]({time.perf_counter() - t0:.0f} s)[/dim]")

    report = run_pipeline(run_dir, cfg, progress=reporter(quiet or json_out), on_stage=stage)
    if json_out:
        print_json(report)
    else:
        show_report(report)
    return report


def show_report(r: dict) -> None:
    s = r["search"]
    rows = [("rating", f"{s['rating']:.4f} (sum of normalised block losses)")]
    for c in s["costs"]:
        budget = "" if c["budget"] is None else f" (budget {_fmt(c['name'], c['budget'])})"
        rows.append((f"predicted {c['name']}", f"{_fmt(c['name'], c['value'])}{budget}"))
    rows.append(("params / MACs", f"{s['params']:,} / {s['macs']['conv_linear'] / 1e6:.1f}M (conv+linear)"))
    if "budget" in r:
        b = r["budget"]
        rows.append((
            "budget binds",
            f"the space spans {_fmt(b['cost'], b['space_min'])} - {_fmt(b['cost'], b['space_max'])} "
            f"(x{b['span']:.2f}) at {b['input_size']} px; "
            f"the budget excludes {100 * b['excluded_share']:.1f}% of {b['draws']:,} random networks of it",
        ))  # fmt: skip
    lat = r.get("latency", {})
    acc = r.get("retrain", {})
    for name in ("searched", "most_macs", "baseline"):
        if name in lat:
            lv = lat[name]
            text = (f"predicted {lv['predicted_ms']:.3f} ms, "
                    f"measured {lv['measured_ms']:.3f} ms ({lv['error_pct']:+.1f}%)")  # fmt: skip
            if "error_now_pct" in lv:
                text += (
                    f"; machine now x{lv['machine_speed_vs_table']:.2f} the table's speed: "
                    f"predicted {lv['predicted_now_ms']:.3f} ms ({lv['error_now_pct']:+.1f}%)"
                )
            rows.append((f"{name}: latency", text))
        if name in acc:
            rows.append((f"{name}: top-1 after retrain", f"{acc[name]['top1']:.2f}%"))
    cmp = r.get("comparison") or {}
    if cmp:
        n = cmp["noise"]
        rows.append((
            "seed noise",
            f"searched net over {len(n['top1_by_seed'])} seeds: "
            + ", ".join(f"{t:.2f}%" for t in n["top1_by_seed"])
            + f"; sd of one run {n['sd_one_run']:.2f} pp (from {n['from']})",
        ))  # fmt: skip
        for name, v in cmp["vs"].items():
            rows.append(
                (f"searched vs {name}", f"{v['diff']:+.2f} pp (bar {v['noise_bar']:.2f}): {v['verdict']}")
            )
    if "teacher" in r and r["teacher"].get("top1") is not None:
        rows.append(("teacher top-1", f"{r['teacher']['top1']:.2f}% ({r['teacher']['model']})"))
    for n, e in r.get("export", {}).items():
        rows.append((f"{n}: ONNX", f"{e['path']} (ORT vs torch max |diff| {e['max_abs_diff']:.1e})"))
    rows.append(("time", ", ".join(f"{k} {v:.0f}s" for k, v in r["seconds"].items())))
    print_table(f"DNA pipeline: {r['run_dir']}", ["", "value"], rows)
    console.print("chosen architecture (arch_def):")
    for stage in s["arch_def"]:
        console.print("  " + ", ".join(stage))
    if "baseline" in r:
        console.print(f"baseline: {r['baseline']['how']}")
    if "most_macs" in r:
        same = " (it is the searched net itself)" if r["most_macs"].get("same_as_searched") else ""
        console.print(f"most_macs: {r['most_macs']['how']}{same}")
    if cmp:
        console.print(f"comparison rule: {cmp['rule']}")
    console.print(f"wrote {s['best']}, {s['plot']} and {r['run_dir']}/report.json")
