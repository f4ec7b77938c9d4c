"""`dna retrain`: train a searched network from scratch (KD from a teacher optional)."""

from __future__ import annotations

from pathlib import Path

import typer

from dna_zoo.cli.common import JsonOpt, QuietOpt, console, print_json, print_table, reporter


def retrain(
    arch: str = typer.Argument(..., help="Searched network: best.json (or any encoding / zoo name)."),
    data: str = typer.Option(
        "builtin", "--data", help="'builtin' (Fashion-MNIST) or a folder with train/ val/."
    ),
    teacher: str | None = typer.Option(None, "--teacher", help="Teacher for KD: timm or zoo name."),
    teacher_weights: Path | None = typer.Option(
        None, "--teacher-weights", help="The teacher's trained weights."
    ),
    epochs: int = typer.Option(3, "--epochs", help="Training epochs."),
    batch_size: int = typer.Option(128, "--batch-size", help="Batch size per process."),
    lr: float = typer.Option(2e-3, "--lr", help="Peak learning rate."),
    opt: str = typer.Option("adamw", "--opt", help="timm optimizer name."),
    sched: str = typer.Option("cosine", "--sched", help="timm scheduler name."),
    input_size: int = typer.Option(32, "--input-size", help="Training resolution."),
    in_chans: int = typer.Option(3, "--in-chans", help="Input channels (1 or 3; the teacher's)."),
    mixup: float = typer.Option(0.0, "--mixup", help="Mixup alpha (0: off)."),
    cutmix: float = typer.Option(0.0, "--cutmix", help="CutMix alpha (0: off)."),
    smoothing: float = typer.Option(0.1, "--smoothing", help="Label smoothing."),
    ema: float = typer.Option(0.998, "--ema", help="EMA decay (0: off)."),
    kd_alpha: float = typer.Option(0.5, "--kd-alpha", help="Weight of the KD loss when a teacher is given."),
    max_steps: int | None = typer.Option(
        None, "--max-steps-per-epoch", help="Cap steps per epoch (quick runs)."
    ),
    eval_batches: int | None = typer.Option(
        None, "--eval-batches", help="Cap evaluation batches (quick runs)."
    ),
    seed: int = typer.Option(0, "--seed"),
    out: Path | None = typer.Option(None, "--out", help="Output directory (default: <arch dir>/retrain)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its checkpoint."),
    quiet: bool = QuietOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Train the found network from scratch; writes model.safetensors + config.json."""
    import torch

    from dna_zoo.search.retrain import RetrainConfig, load_kd_teacher, training_data
    from dna_zoo.search.retrain import retrain as run
    from dna_zoo.zoo import resolve_arch

    enc = resolve_arch(arch)
    cfg = RetrainConfig(
        epochs=epochs, batch_size=batch_size, lr=lr, opt=opt, sched=sched, mixup=mixup, cutmix=cutmix,
        label_smoothing=smoothing, ema_decay=ema or None, kd_alpha=kd_alpha, max_steps_per_epoch=max_steps,
        seed=seed, eval_max_batches=eval_batches,
    )  # fmt: skip
    train_set, eval_set, info = training_data(data, input_size=input_size, in_chans=in_chans)
    teacher_model = None
    if teacher is not None:
        teacher_model = load_kd_teacher(teacher, teacher_weights, in_chans=info["in_chans"])
    out_dir = (
        out
        if out is not None
        else (Path(arch).parent / "retrain" if Path(arch).is_file() else Path("retrain"))
    )
    torch.set_num_threads(max(1, torch.get_num_threads()))
    res = run(
        enc, train_set=train_set, eval_set=eval_set, num_classes=info["num_classes"],
        in_chans=info["in_chans"], out_dir=out_dir, config=cfg, teacher=teacher_model, data_info=info,
        resume=resume, progress=reporter(quiet or json_out),
    )  # fmt: skip
    summary = {
        "out": str(res.out_dir),
        "weights": str(res.weights),
        "config": str(res.config),
        "top1": res.top1,
        "top1_model": res.top1_model,
        "top1_ema": res.top1_ema,
        "kept": res.kept,
        "epochs": res.epochs,
        "steps": res.steps,
        "resumed_from_step": res.resumed_from_step,
        "train_seconds": round(res.seconds, 1),
        "data": {k: v for k, v in info.items() if k != "classes"},
        "teacher": teacher,
    }
    if json_out:
        print_json(summary)
        return
    print_table(
        "dna retrain",
        ["", "value"],
        [
            ("top-1 (kept weights)", f"{res.top1:.2f}% ({res.kept})"),
            (
                "top-1 model / EMA",
                f"{res.top1_model:.2f}% / {'-' if res.top1_ema is None else f'{res.top1_ema:.2f}%'}",
            ),
            ("epochs / steps", f"{res.epochs} / {res.steps}"),
            ("training time", f"{res.seconds:.1f} s"),
            ("data", f"{info['name']} at {info['input_size']}px"),
            ("teacher (KD)", teacher or "none"),
        ],
    )
    console.print(f"wrote {res.weights} and {res.config}")
