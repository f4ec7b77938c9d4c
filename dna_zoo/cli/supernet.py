"""`dna supernet`: train the DNA supernet from a teacher, rate every candidate, train a demo teacher.

    dna supernet teacher --data builtin                      # demo teacher (cached)
    dna supernet train --space small --teacher efficientnet_b0 --teacher-weights T.safetensors \
        --data builtin --out runs/s1
    torchrun --nproc_per_node 2 -m dna_zoo.cli supernet train ...   # data-parallel
    dna supernet train --resume runs/s1                      # after a crash or kill -9
    dna supernet rate runs/s1 --out runs/s1/ratings.json
    dna supernet calibrate runs/s1 --nets 10                # self-check + accuracy predictor

A thin layer over :mod:`dna_zoo.search.supernet.train`, :mod:`dna_zoo.search.supernet.rate` and
:mod:`dna_zoo.search.supernet.teacher_train`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

from dna_zoo.cli.common import JsonOpt, QuietOpt, console, print_json, print_table, reporter
from dna_zoo.errors import ConfigError

app = typer.Typer(
    help="Train the DNA supernet from a teacher and rate every candidate.", no_args_is_help=True
)


def _is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _floats(text: str | None, what: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError as e:
        raise ConfigError(f"cannot parse {what} '{text}'", hint="give comma-separated numbers") from e


@app.command("train")
def train(
    space: str | None = typer.Option(None, "--space", help="Search space: default, small, or a .json file."),
    teacher: str | None = typer.Option(None, "--teacher", help="Teacher: any timm model name."),
    teacher_weights: Path | None = typer.Option(
        None, "--teacher-weights", help="Local teacher weights (else timm's pretrained weights)."
    ),
    data: str | None = typer.Option(None, "--data", help="'builtin' (Fashion-MNIST) or an image folder."),
    out: Path | None = typer.Option(None, "--out", help="New run directory."),
    resume: Path | None = typer.Option(None, "--resume", help="Continue the run in this directory."),
    epochs: int | None = typer.Option(None, "--epochs", help="Epochs (default 1)."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Global batch size (default 64)."),
    input_size: int | None = typer.Option(None, "--input-size", help="Input resolution (default 32)."),
    in_chans: int | None = typer.Option(None, "--in-chans", help="Input channels, 1 or 3 (default 3)."),
    lr: float | None = typer.Option(None, "--lr", help="Base learning rate (default 0.005)."),
    block_lrs: str | None = typer.Option(
        None, "--block-lrs", help="Per-block learning rates, comma-separated."
    ),
    opt: str | None = typer.Option(None, "--opt", help="timm optimizer name (default adam)."),
    weight_decay: float | None = typer.Option(None, "--weight-decay", help="Weight decay (default 1e-4)."),
    sched: str | None = typer.Option(None, "--sched", help="timm scheduler name (default step)."),
    decay_rate: float | None = typer.Option(
        None, "--decay-rate", help="LR decay per decay period (default 0.9)."
    ),
    clip_grad: float | None = typer.Option(
        None, "--clip-grad", help="Max gradient norm per block, 0 for none (default 5)."
    ),
    sampling: str | None = typer.Option(
        None, "--sampling", help="Path sampling: uniform or fair (default fair)."
    ),
    normalize: bool | None = typer.Option(
        None,
        "--normalize/--no-normalize",
        help="Divide block losses by the teacher target variance (default on).",
    ),
    accum_steps: int | None = typer.Option(
        None, "--accum-steps", help="Gradient accumulation steps (default 1)."
    ),
    ckpt_every: int | None = typer.Option(
        None, "--ckpt-every", help="Checkpoint every N steps (default 200)."
    ),
    log_every: int | None = typer.Option(None, "--log-every", help="Log every N steps (default 10)."),
    limit: int | None = typer.Option(None, "--limit", help="Use only the first N training images."),
    max_steps: int | None = typer.Option(None, "--max-steps", help="Stop after N steps in total."),
    seed: int | None = typer.Option(None, "--seed", help="Seed (default 0)."),
    workers: int | None = typer.Option(
        None, "--workers", help="Data loader workers for folders (default 0)."
    ),
    stage_map: str | None = typer.Option(
        None, "--stage-map", help="Teacher stages: input of block 0, then one per block (e.g. 1,2,3,4,5,6,7)."
    ),
    device: str | None = typer.Option(None, "--device", help="cpu or cuda (default: cuda if available)."),
    quiet: bool = QuietOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Distil every block of the supernet from the teacher (one teacher pass per step)."""
    from dna_zoo.search.supernet.train import train_supernet

    if resume is not None and out is not None and Path(out).resolve() != Path(resume).resolve():
        raise ConfigError("--out and --resume name different folders", hint="give only --resume RUN_DIR")
    run_dir = resume if resume is not None else out
    if run_dir is None:
        raise ConfigError("missing --out RUN_DIR (or --resume RUN_DIR)")
    options: dict[str, Any] = {
        "epochs": epochs,
        "batch_size": batch_size,
        "input_size": input_size,
        "in_chans": in_chans,
        "lr": lr,
        "block_lrs": _floats(block_lrs, "--block-lrs"),
        "opt": opt,
        "weight_decay": weight_decay,
        "sched": sched,
        "decay_rate": decay_rate,
        "clip_grad": clip_grad,
        "sampling": sampling,
        "normalize_loss": normalize,
        "accum_steps": accum_steps,
        "ckpt_every": ckpt_every,
        "log_every": log_every,
        "limit": limit,
        "max_steps": max_steps,
        "seed": seed,
        "workers": workers,
    }
    options = {k: v for k, v in options.items() if v is not None}
    if clip_grad is not None and clip_grad <= 0:
        options["clip_grad"] = None
    res = train_supernet(
        run_dir,
        space=space,
        teacher=teacher,
        teacher_weights=teacher_weights,
        data=data,
        config=options,
        stage_map=stage_map,
        resume=resume is not None,
        device=device,
        progress=reporter(quiet or json_out),
    )
    if not _is_main():
        return
    figures = {
        "run_dir": str(res.run_dir),
        "steps": res.steps,
        "total_steps": res.total_steps,
        "resumed_from": res.resumed_from,
        "teacher_passes": res.teacher_passes,
        "seconds": round(res.seconds, 2),
        "block_losses": [round(v, 5) for v in res.block_losses],
    }
    if json_out:
        print_json(figures)
        return
    print_table(
        f"supernet trained: {res.run_dir}",
        ["figure", "value"],
        [(k, v) for k, v in figures.items() if k != "run_dir"],
    )


@app.command("rate")
def rate(
    run_dir: Path = typer.Argument(..., help="A `dna supernet train` run directory."),
    out: Path | None = typer.Option(None, "--out", help="Ratings file (default RUN_DIR/ratings.json)."),
    batch_size: int = typer.Option(64, "--batch-size", help="Images per batch."),
    bn_batches: int = typer.Option(4, "--bn-batches", help="Training batches to re-estimate BN statistics."),
    eval_batches: int = typer.Option(8, "--eval-batches", help="Held-out batches the loss is measured on."),
    normalization: str = typer.Option("teacher_var", "--normalization", help="teacher_var or none."),
    method: str = typer.Option("prefix", "--method", help="prefix (shared prefixes) or naive."),
    last_block: str = typer.Option(
        "mse",
        "--last-block",
        help="mse (like every block) or label (DNA's way: the last block trained with the label loss "
        "through the teacher's head, rated by held-out cross-entropy; costs one more training of it).",
    ),
    data: str | None = typer.Option(
        None, "--data", help="Other data than the run's ('builtin' or a folder)."
    ),
    device: str | None = typer.Option(None, "--device", help="cpu or cuda (default: cuda if available)."),
    quiet: bool = QuietOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Rate every candidate of every block: BN re-estimated, loss to the teacher on held-out data."""
    from dna_zoo.search.supernet.rate import RateConfig, rate_run

    cfg = RateConfig(
        batch_size=batch_size,
        bn_batches=bn_batches,
        eval_batches=eval_batches,
        normalization=normalization,
        method=method,
        last_block=last_block,
    )
    ratings = rate_run(
        run_dir, out=out, config=cfg, data=data, device=device, progress=reporter(quiet or json_out)
    )
    if not _is_main():
        return
    path = out if out is not None else run_dir / "ratings.json"
    rows = []
    for b in range(len(ratings.space.blocks)):
        best = min(ratings.block(b), key=lambda cl: cl[1])
        rows.append(
            {"block": b, "candidates": ratings.space.num_candidates(b), "best": best[0].key, "loss": best[1]}
        )
    meta = ratings.meta
    if json_out:
        print_json(
            {
                "ratings": str(path),
                "candidates": meta["candidates"],
                "seconds": meta["seconds"],
                "candidates_per_second": meta["candidates_per_second"],
                "normalization": ratings.normalization,
                "best_per_block": rows,
            }
        )
        return
    print_table(
        f"{meta['candidates']} candidates rated in {meta['seconds']:.1f} s "
        f"({meta['candidates_per_second']} /s, loss / {ratings.normalization}) -> {path}",
        ["block", "candidates", "best candidate", "loss"],
        [(r["block"], r["candidates"], r["best"], f"{r['loss']:.4f}") for r in rows],
    )


@app.command("teacher")
def teacher(
    model: str = typer.Option("efficientnet_b0", "--model", help="Any timm model name."),
    data: str = typer.Option("builtin", "--data", help="Only 'builtin' (Fashion-MNIST)."),
    out: Path | None = typer.Option(
        None, "--out", help="Weights file (default cached in $DNA_ZOO_CACHE/teachers)."
    ),
    epochs: int = typer.Option(5, "--epochs"),
    batch_size: int = typer.Option(128, "--batch-size"),
    input_size: int = typer.Option(32, "--input-size"),
    limit: int | None = typer.Option(None, "--limit", help="Use only the first N training images."),
    seed: int = typer.Option(0, "--seed"),
    force: bool = typer.Option(False, "--force", help="Retrain even if cached / overwrite --out."),
    quiet: bool = QuietOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Train a teacher on the built-in Fashion-MNIST for the demo (reused from the cache)."""
    from dna_zoo.search.supernet.teacher_train import train_teacher

    res = train_teacher(
        model,
        data=data,
        out=out,
        epochs=epochs,
        batch_size=batch_size,
        input_size=input_size,
        limit=limit,
        seed=seed,
        force=force,
        progress=reporter(quiet or json_out),
    )
    figures = {
        "weights": str(res.path),
        "model": res.model,
        "top1": round(res.top1, 2),
        "epochs": res.epochs,
        "seconds": round(res.seconds, 1),
        "cached": res.cached,
    }
    if json_out:
        print_json(figures)
        return
    print_table(f"teacher {res.model} on Fashion-MNIST", ["figure", "value"], list(figures.items()))


@app.command("calibrate")
def calibrate(
    run_dir: Path = typer.Argument(..., help="A `dna supernet train` run directory, rated."),
    nets: int = typer.Option(10, "--nets", help="Networks to train alone (K)."),
    epochs: int = typer.Option(1, "--epochs", help="Training epochs per network."),
    steps_per_epoch: int = typer.Option(
        200, "--steps-per-epoch", help="Training steps per epoch at most (0: the whole training split)."
    ),
    batch_size: int = typer.Option(128, "--batch-size", help="Training batch size."),
    eval_batches: int = typer.Option(
        0, "--eval-batches", help="Evaluation batches of 256 images at most (0: the whole held-out split)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the networks drawn and of their training."),
    ratings: Path | None = typer.Option(
        None,
        "--ratings",
        help="Ratings file (default RUN_DIR/ratings.json, or the pipeline's RUN_DIR/../ratings.json of this "
        "run); calibration.json goes beside it.",
    ),
    quiet: bool = QuietOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Train K networks of the run's space alone, fit the accuracy predictor on them, write
    calibration.json beside the ratings, and say whether the ratings rank them better than MACs."""
    from dna_zoo.cli.common import err_console
    from dna_zoo.search.calibrate import CalibrateConfig, calibrate_run, verdict

    cfg = CalibrateConfig(
        nets=nets, epochs=epochs, steps_per_epoch=steps_per_epoch or None, batch_size=batch_size,
        eval_batches=eval_batches or None, seed=seed,
    )  # fmt: skip

    def on_net(rec, k: int) -> None:
        if quiet or json_out:
            return
        how = "reused" if rec.reused else ("resumed" if rec.resumed else "trained")
        err_console.print(
            f"net {rec.index + 1}/{k}: {rec.macs / 1e6:.1f}M MACs, top-1 {rec.top1:.2f}% "
            f"({how}, {rec.seconds:.0f} s)"
        )

    res = calibrate_run(
        run_dir, config=cfg, ratings=ratings, progress=reporter(quiet or json_out), on_net=on_net
    )
    if res is None:  # not rank 0
        return
    p = res.predictor
    loo, base = p.loo, p.loo["baselines"]
    trained = res.trained_seconds
    figures = {
        "calibration": str(res.path),
        "nets": p.k,
        "predictor": {k: loo[k] for k in ("tau", "tau_ci", "spearman", "spearman_ci", "rmse", "mae")},
        "rating": base["rating"],
        "macs": base["macs"],
        "tau_minus_macs_ci": loo["tau_minus_macs_ci"],
        "rating_tau_minus_macs_ci": loo["rating_tau_minus_macs_ci"],
        "verdict": verdict(p),
        "seconds_per_trained_net": round(sum(trained) / len(trained), 1) if trained else None,
        "nets_trained_now": len(trained),
    }
    if json_out:
        print_json(figures)
        return

    def row(name: str, f: dict) -> tuple[str, str, str]:
        return (
            name,
            f"{f['tau']:+.3f} [{f['tau_ci'][0]:+.2f}, {f['tau_ci'][1]:+.2f}]",
            f"{f['spearman']:+.3f}",
        )

    print_table(
        f"calibration on {p.k} nets (Kendall tau vs stand-alone top-1, 95% bootstrap CI) -> {res.path}",
        ["ranking by", "Kendall tau", "Spearman"],
        [
            row("calibrated predictor (leave-one-out)", loo),
            row("plain rating (sum of block losses)", base["rating"]),
            row("MACs", base["macs"]),
        ],
    )
    cost = f"{figures['seconds_per_trained_net']:.0f} s per net trained now" if trained else "all nets reused"
    console.print(f"predictor leave-one-out error: RMSE {loo['rmse']:.2f} top-1 points; {cost}")
    console.print(f"verdict: {figures['verdict']}")
