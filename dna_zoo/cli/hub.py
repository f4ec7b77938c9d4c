"""`dna hub convert | push | pull`: publish and fetch DNA models with their artifacts."""

from __future__ import annotations

from pathlib import Path

import typer

from dna_zoo.cli.common import JsonOpt, QuietOpt, console, print_json

app = typer.Typer(
    help="Publish DNA models (weights, timm config, card, export artifacts) to the Hugging Face Hub "
    "and fetch them back.",
    no_args_is_help=True,
)


@app.callback()
def _hub_logging() -> None:
    """Send huggingface_hub's log records through dna's logging (one format; --debug shows them)."""
    import logging

    from huggingface_hub.utils import logging as hf_logging

    hf_root = hf_logging.get_logger()
    for handler in list(hf_root.handlers):
        if type(handler) is logging.StreamHandler:  # the library's default stderr handler
            hf_root.removeHandler(handler)
    hf_logging.enable_propagation()


def _quiet_hub(quiet: bool) -> None:
    if quiet:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()


@app.command("convert")
def convert(
    checkpoint: Path = typer.Argument(..., help="Original DNA checkpoint (.pth.tar) or any weights file."),
    model: str = typer.Option(..., "--model", "-m", help="Zoo name (dna_b) or a searched-net .json."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write model.safetensors + config.json to."),
    force: bool = typer.Option(False, "--force", help="Replace --out if it exists."),
    json_out: bool = JsonOpt,
) -> None:
    """Convert an original DNA checkpoint into a Hub-ready folder (safetensors + timm config)."""
    from dna_zoo.hub.convert import convert_checkpoint

    r = convert_checkpoint(checkpoint, model, out, force=force)
    data = {
        "out": str(r.out),
        "files": list(r.files),
        "model": r.model,
        "num_classes": r.num_classes,
        "params": r.params,
        "sha256": r.sha256,
    }
    if json_out:
        print_json(data)
        return
    console.print(
        f"wrote {r.out}/ ({', '.join(r.files)}): {r.model}, {r.params:,} params, {r.num_classes} classes"
    )


@app.command("push")
def push(
    model: str = typer.Argument(
        ..., help="Zoo name (dna_b) or a search result .json (encoding under 'arch')."
    ),
    weights: Path | None = typer.Option(
        None, "--weights", "-w", help="Trained weights (safetensors or .pth.tar)."
    ),
    repo: str = typer.Option(..., "--repo", "-r", help="Hub repo id, ORG/name."),
    artifacts: Path | None = typer.Option(
        None, "--artifacts", help="Folder of exported artifacts (each file X with X.manifest.json)."
    ),
    with_formats: str | None = typer.Option(
        None, "--with", help="Export these formats first and push them too, e.g. onnx,trt."
    ),
    private: bool = typer.Option(False, "--private", help="Create the repo private."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Write the exact upload folder to --out; upload nothing."
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Where --dry-run writes the folder."),
    force: bool = typer.Option(False, "--force", help="With --dry-run: replace --out if it exists."),
    license: str | None = typer.Option(
        None, "--license", help="License id for the card (default apache-2.0)."
    ),
    dataset: list[str] = typer.Option([], "--dataset", help="Dataset id for the card metadata (repeatable)."),
    message: str | None = typer.Option(None, "--message", help="Commit message."),
    json_out: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Publish a model: model.safetensors, config.json, model card, artifacts in subfolders."""
    from dna_zoo.hub.push import push as push_model

    _quiet_hub(quiet or json_out)
    formats = [f.strip() for f in (with_formats or "").split(",") if f.strip()]
    r = push_model(
        model,
        weights=weights,
        repo_id=repo,
        artifacts_dir=artifacts,
        with_formats=formats,
        private=private,
        dry_run=dry_run,
        out=out,
        force=force,
        license=license,
        datasets=dataset,
        commit_message=message,
    )
    if json_out:
        print_json(r.to_dict())
        return
    figures = (
        f"{r.params:,} params, {r.macs_conv_linear / 1e6:.0f}M MACs conv+linear ({r.macs_all / 1e6:.0f}M all)"
    )
    if r.dry_run:
        console.print(
            f"dry run: wrote the upload folder for {r.repo_id} to {r.out}/ ({len(r.files)} files; {figures})"
        )
    elif r.committed:
        console.print(f"pushed {r.repo_id} ({len(r.files)} files; {figures}): commit {r.commit}")
    else:
        console.print(f"{r.repo_id} is up to date: nothing changed, no new commit (at {r.commit})")
    if r.deleted:
        verb = "would remove" if r.dry_run else "removed"
        stale = ", ".join(r.deleted)
        console.print(f"{verb} {len(r.deleted)} artifact files made from earlier weights: {stale}")
    if not quiet:
        for f in r.files:
            console.print(f"  {f}", highlight=False)


@app.command("release")
def release_cmd(
    folder: Path = typer.Argument(..., help="Folder with the original DNA_a.pth.tar .. DNA_d.pth.tar."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Write the four upload folders; upload nothing."),
    formats: str = typer.Option(
        "onnx,openvino,trt-onnx", "--formats", help="Artifacts to export and push with each model."
    ),
    min_top1: float = typer.Option(
        0.25, "--min-top1", help="Refuse a checkpoint below this top-1 on the built-in ImageNet images."
    ),
    no_latency: bool = typer.Option(False, "--no-latency", help="Do not time the artifacts."),
    json_out: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Publish DNA-a..d from the authors' checkpoints: convert (strict), check on real ImageNet
    images, export ONNX / OpenVINO / TensorRT-ready ONNX with parity and CPU latency, push the
    four timm repos with full cards. Resumable: run it again after a failure."""
    from dna_zoo.hub.release import release

    _quiet_hub(quiet or json_out)
    say = (lambda msg: None) if (quiet or json_out) else (lambda msg: console.print(msg, highlight=False))
    fmts = [f.strip() for f in formats.split(",") if f.strip()]
    done = release(folder, dry_run=dry_run, formats=fmts, min_top1=min_top1, latency=not no_latency, say=say)
    if json_out:
        print_json([m.to_dict() for m in done])
        return
    for m in done:
        top1 = "not checked (unlabelled images)" if m.top1 is None else f"{m.top1:.0%} on {m.n_images} images"
        where = f"wrote {m.pushed['out']}" if dry_run else f"pushed {m.repo_id} (commit {m.pushed['commit']})"
        console.print(f"{m.name}: top-1 {top1}; {len(m.artifacts)} artifacts; {where}", highlight=False)


@app.command("pull")
def pull(
    repo: str = typer.Argument(..., help="Hub repo id, ORG/name."),
    artifact: str | None = typer.Option(
        None,
        "--artifact",
        "-a",
        help="onnx, trt (the engine for this GPU/TensorRT), or another format folder.",
    ),
    revision: str | None = typer.Option(None, "--revision", help="Branch, tag or commit."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Also copy the files into this folder."),
    force: bool = typer.Option(False, "--force", help="Replace --out if it exists."),
    trt_version: str | None = typer.Option(
        None, "--trt-version", help="Fetch the engine for this TensorRT version instead of the local one."
    ),
    gpu: str | None = typer.Option(
        None, "--gpu", help="Fetch the engine for this GPU instead of the local one."
    ),
    json_out: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Download a model or an artifact into the Hugging Face cache (works offline when cached)."""
    from dna_zoo.hub.pull import pull as pull_repo

    _quiet_hub(quiet or json_out)
    r = pull_repo(
        repo, artifact=artifact, revision=revision, out=out, force=force, trt_version=trt_version, gpu=gpu
    )
    if json_out:
        print_json(r.to_dict())
        return
    for a in r.artifacts:
        m = a.manifest
        trt = m.trt or {}
        built = f", TensorRT {trt['version']} on {trt['gpu']}" if trt else ""
        console.print(f"{a.path}  ({m.format} {m.precision}{built})", highlight=False)
    if not r.artifacts:
        for f in r.files:
            console.print(str(f), highlight=False)
