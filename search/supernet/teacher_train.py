"""A teacher for the built-in demo: a timm model trained briefly on Fashion-MNIST.

DNA needs a trained teacher; offline there are no ImageNet weights for most timm models,
so the demo trains one: ``efficientnet_b0`` at 32 px reaches about 90% top-1 on the
Fashion-MNIST test split in 5 epochs (minutes on a CPU: bench/results/README.md). Trained from
scratch, timm EfficientNets barely move in the first epoch with the default init; the
last BatchNorm of every residual block and the classifier are zero-initialised, which
fixes that.

:func:`train_teacher` writes a safetensors file (metadata: model, top-1 in percent, epochs,
data identity) and returns a :class:`TeacherResult`; without ``out`` the file goes to the
cache (``$DNA_ZOO_CACHE/teachers``, default ``~/.cache/dna-zoo/teachers``) under a name
made of its settings, and an existing file there is reused, not retrained.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from dna_zoo.accuracy import TopKAccuracy
from dna_zoo.errors import ConfigError, OutputExistsError
from dna_zoo.progress import Reporter, reporter_or_null
from dna_zoo.search.depthwise_grad import speed_up_depthwise
from dna_zoo.search.supernet.data import ShardSampler, is_builtin, open_dataset

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """The user's dna-zoo cache folder (the same one latency tables go to)."""
    from dna_zoo.search.latency.cache import cache_root

    return cache_root()


@dataclass
class TeacherResult:
    path: Path
    model: str
    top1: float  # percent on the Fashion-MNIST test split
    epochs: int
    seconds: float
    cached: bool


def _zero_init_residuals(model: nn.Module) -> None:
    from timm.models._efficientnet_blocks import DepthwiseSeparableConv, InvertedResidual

    for m in model.modules():
        if isinstance(m, InvertedResidual) and m.has_skip:
            nn.init.zeros_(m.bn3.weight)
        elif isinstance(m, DepthwiseSeparableConv) and m.has_skip:
            nn.init.zeros_(m.bn2.weight)
    classifier = getattr(model, "get_classifier", lambda: None)()
    if isinstance(classifier, nn.Linear):
        nn.init.zeros_(classifier.weight)
        nn.init.zeros_(classifier.bias)


def default_teacher_path(model: str, *, input_size: int, epochs: int, seed: int, limit: int | None) -> Path:
    tag = f"{model}_fmnist{input_size}_e{epochs}_s{seed}" + (f"_n{limit}" if limit else "")
    return cache_dir() / "teachers" / f"{tag}.safetensors"


@torch.no_grad()
def evaluate(model: nn.Module, source, *, batch_size: int = 256, channels_last: bool = True) -> float:
    """Top-1 accuracy (%) of ``model`` on a :class:`~dna_zoo.search.supernet.data.DataSource`
    (on the device the model is on)."""
    model.eval()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    dev = next(model.parameters()).device
    acc = TopKAccuracy()
    for start in range(0, len(source), batch_size):
        x, y = source.batch(range(start, min(len(source), start + batch_size)))
        acc.update(model(x.to(dev).contiguous(memory_format=fmt)).float().cpu(), y)
    return acc.percent()[0]


def teacher_file_top1(path: str | Path) -> float:
    """Top-1 (%) recorded in a teacher file written by :func:`train_teacher` (NaN if none);
    files written before percent was the one unit carry ``accuracy`` as a fraction."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    if "top1" in meta:
        return float(meta["top1"])
    return 100 * float(meta["accuracy"]) if "accuracy" in meta else float("nan")


def train_teacher(
    model: str = "efficientnet_b0",
    *,
    data: str = "builtin",
    out: str | Path | None = None,
    epochs: int = 5,
    batch_size: int = 128,
    input_size: int = 32,
    in_chans: int = 3,
    lr: float = 2e-3,
    seed: int = 0,
    limit: int | None = None,
    eval_limit: int | None = None,
    force: bool = False,
    progress: Reporter | None = None,
    device: str | None = None,
    amp: bool = True,
) -> TeacherResult:
    """Train ``model`` (any timm name) on the built-in Fashion-MNIST and save its weights.

    ``device``: ``cuda`` where a GPU is usable, else ``cpu`` (default); on a GPU with
    ``amp`` the forward pass runs under ``torch.autocast`` with a gradient scaler."""
    import timm
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2

    from dna_zoo.weights import save_safetensors
    from dna_zoo.zoo import resolve_source

    if not is_builtin(data):
        raise ConfigError(
            f"train_teacher trains on the built-in data only, not {data}",
            hint="for your own data, train a teacher with timm's train.py and pass --teacher-weights",
        )
    if epochs < 1 or batch_size < 1:
        raise ConfigError("epochs and batch size must be >= 1")
    src = resolve_source(model)
    path = (
        Path(out)
        if out is not None
        else default_teacher_path(model, input_size=input_size, epochs=epochs, seed=seed, limit=limit)
    )
    if path.exists() and not force:
        if out is not None:
            raise OutputExistsError(path)
        log.info("reusing cached teacher %s", path)
        return TeacherResult(path, model, teacher_file_top1(path), epochs, 0.0, True)
    train = open_dataset("builtin", split="train", input_size=input_size, in_chans=in_chans, limit=limit)
    test = open_dataset("builtin", split="val", input_size=input_size, in_chans=in_chans, limit=eval_limit)
    torch.manual_seed(seed)
    net = timm.create_model(
        src.timm_name,
        num_classes=10,
        in_chans=in_chans,
        **({"arch": src.arch} if src.arch is not None and src.timm_name == "dna_net" else {}),
    )
    _zero_init_residuals(net)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda was asked for but no CUDA GPU is available", hint="use --device cpu")
    use_amp = amp and dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if use_amp else None
    net = net.to(dev, memory_format=torch.channels_last)
    speed_up_depthwise(net)
    per_epoch = ShardSampler.batches_per_epoch(len(train), batch_size)
    if per_epoch < 1:
        raise ConfigError(f"{len(train)} images are fewer than one batch of {batch_size}")
    opt = create_optimizer_v2(net, opt="adamw", lr=lr, weight_decay=0.05)
    sched, _ = create_scheduler_v2(
        opt,
        sched="cosine",
        num_epochs=epochs,
        warmup_epochs=1 if epochs > 2 else 0,
        warmup_lr=lr * 0.01,
        step_on_epochs=False,
        updates_per_epoch=per_epoch,
    )
    gen = torch.Generator().manual_seed(seed)
    reporter = reporter_or_null(progress)
    t0 = time.perf_counter()
    step = 0
    for epoch in range(epochs):
        net.train()
        sampler = ShardSampler(len(train), batch_size, seed=seed, epoch=epoch)
        for idx in reporter.track(sampler, f"teacher {model} epoch {epoch + 1}/{epochs}", total=len(sampler)):
            x, y = train.batch(idx)
            flip = torch.rand(len(x), generator=gen) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            x, y = x.to(dev).contiguous(memory_format=torch.channels_last), y.to(dev)
            with torch.autocast(dev.type, enabled=use_amp):
                loss = F.cross_entropy(net(x), y, label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            step += 1
            sched.step_update(step)
        log.info("teacher epoch %d: loss %.4f", epoch + 1, float(loss.detach()))
    acc = evaluate(net, test)
    seconds = time.perf_counter() - t0
    save_safetensors(
        net.to("cpu", memory_format=torch.contiguous_format).state_dict(),
        path,
        metadata={
            "model": model,
            "top1": f"{acc:.2f}",
            "epochs": epochs,
            "input_size": input_size,
            "in_chans": in_chans,
            "data": "fashion-mnist",
            "data_sha256": train.identity["sha256"],
            "num_train": len(train),
            "num_test": len(test),
            "seconds": f"{seconds:.1f}",
        },
    )
    log.info("teacher %s: %.2f%% top-1 on %d test images, %.0f s -> %s", model, acc, len(test), seconds, path)
    return TeacherResult(path, model, acc, epochs, seconds, False)
