"""Retrain a searched network from scratch, optionally distilling from a teacher's logits.

Built from timm's training parts: ``create_optimizer_v2``, ``create_scheduler_v2``,
``ModelEmaV3``, ``Mixup``/CutMix, label smoothing (``timm.loss``). Data-parallel under
``torchrun`` (gloo on CPU, NCCL on GPU), resumable from an atomic checkpoint written every
``checkpoint_every`` steps and after every epoch (the data order is a function of seed and
epoch, so a resumed run sees exactly the batches it had left). Ends with an evaluation of
the model and its EMA; the better one is written as ``model.safetensors`` next to a
``config.json`` that the zoo loads (``dna_zoo.zoo.build_model(config.json, weights=...)``).

From-scratch EfficientNets barely move in their first epoch with timm's default init on
this data, so the last BatchNorm of every residual block and the classifier start at zero
(the measured gain is in bench/results/README.md), and training runs ``channels_last``
(faster steps on a CPU too).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from dna_zoo.accuracy import TopKAccuracy
from dna_zoo.arch import ArchEncoding, load_encoding
from dna_zoo.errors import ConfigError, DataError, WeightsError
from dna_zoo.io import atomic_write, atomic_write_json
from dna_zoo.progress import Reporter, reporter_or_null
from dna_zoo.search.depthwise_grad import speed_up_depthwise
from dna_zoo.search.supernet import distributed
from dna_zoo.search.supernet.data import ShardSampler

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
RETRAIN_FORMAT = "dna-zoo-retrain-output"
RETRAIN_VERSION = 1
_REDO = "retrain the network again with `dna retrain` (or `dna search --run`)"


@dataclass(frozen=True)
class DataInfo:
    """What a retrained network was trained on, and the normalisation its inputs need.

    Built from the data source itself (:meth:`from_source`), so ``dna retrain`` and the
    pipeline record the same mean/std for the same data.
    """

    name: str
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...] = ()
    identity: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_source(cls, spec: str | Path, source: Any, *, input_size: int) -> DataInfo:
        """``source`` is the :class:`dna_zoo.search.supernet.data.DataSource` opened from
        ``spec`` (the training split): its normalisation and classes, its portable identity."""
        from dna_zoo.search.ratings import portable_data
        from dna_zoo.search.supernet.data import is_builtin

        return cls(
            name="fashion-mnist" if is_builtin(spec) else Path(spec).name,
            input_size=int(input_size),
            mean=tuple(float(v) for v in source.mean),
            std=tuple(float(v) for v in source.std),
            classes=tuple(source.classes),
            identity=portable_data(dict(source.identity)),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "input_size": self.input_size, "mean": list(self.mean), "std": list(self.std),
            "identity": self.identity,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any], classes: Any = None) -> DataInfo:
        from dna_zoo.search.ratings import portable_data

        name = str(d.get("name", ""))
        return cls(
            name=Path(name).name if "/" in name else name,
            input_size=int(d.get("input_size", 224)),
            mean=tuple(float(v) for v in d["mean"]),
            std=tuple(float(v) for v in d["std"]),
            classes=tuple(str(c) for c in (classes or d.get("classes") or ())),
            identity=portable_data(dict(d.get("identity") or {})),
        )


def unknown_data(in_chans: int) -> DataInfo:
    """What is recorded when the caller says nothing about the data (library use only)."""
    return DataInfo("unspecified", 224, (0.5,) * in_chans, (0.5,) * in_chans, identity={"note": "not given"})


@dataclass(frozen=True)
class RetrainOutput:
    """The retrain output contract: ``config.json`` (timm-style, loadable by the zoo) beside
    ``model.safetensors``. The dna-zoo part of the config carries format and version, the data
    (with mean/std), the training settings and the measured top-1 (%, on the evaluation split).
    """

    arch: ArchEncoding
    num_classes: int
    in_chans: int
    data: DataInfo
    top1: float | None
    metrics: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    #: folder (beside config.json) of a few eval images of the training data: export's parity images
    samples: str | None = None
    version: int = RETRAIN_VERSION

    def to_dict(self) -> dict[str, Any]:
        """timm-style ``config.json``; the encoding is both at ``arch`` (zoo) and in ``model_args``."""
        enc, size = self.arch, self.data.input_size
        return {
            "architecture": "dna_net",
            "num_classes": self.num_classes,
            "num_features": enc.num_features,
            "arch": enc.to_dict(),
            "model_args": {"arch": enc.to_dict(), "in_chans": self.in_chans, "num_classes": self.num_classes},
            "pretrained_cfg": {
                "input_size": [self.in_chans, size, size],
                "mean": list(self.data.mean),
                "std": list(self.data.std),
                "num_classes": self.num_classes,
                "crop_pct": 1.0,
                "interpolation": "bilinear",
                "first_conv": "conv_stem",
                "classifier": "classifier",
                "label_names": list(self.data.classes) or None,
            },
            "dna_zoo": {
                "format": RETRAIN_FORMAT,
                "version": RETRAIN_VERSION,
                "data": self.data.to_dict(),
                **({"samples": self.samples} if self.samples else {}),
                "train": self.train,
                "metrics": {"top1": self.top1, **self.metrics},
            },
        }

    def save(self, path: str | Path) -> Path:
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, d: Any, *, origin: str = "config.json") -> RetrainOutput:
        from dna_zoo.errors import FileFormatError
        from dna_zoo.io import check_format

        section = d.get("dna_zoo") if isinstance(d, dict) else None
        if not isinstance(section, dict):
            raise FileFormatError(f"{origin} is not a dna-zoo retrain output", hint=_REDO)
        if "format" not in section and {"data", "train", "metrics"} <= set(section):
            version = 0  # written before the contract was versioned: same content, readable
        else:
            version = check_format(
                section, origin=origin, what="dna-zoo retrain output", format=RETRAIN_FORMAT,
                version=RETRAIN_VERSION, redo=_REDO,
            )  # fmt: skip
        try:
            pcfg = d["pretrained_cfg"]
            data = dict(section["data"])
            data.setdefault("mean", pcfg["mean"])
            data.setdefault("std", pcfg["std"])
            data.setdefault("input_size", pcfg["input_size"][-1])
            if version == 0:  # v0 spread the data source's identity over the data record
                known = ("name", "input_size", "mean", "std", "num_classes", "in_chans")
                data["identity"] = data.get("identity") or {k: v for k, v in data.items() if k not in known}
            metrics = dict(section["metrics"])
            top1 = metrics.pop("top1", None)
            return cls(
                arch=ArchEncoding.from_dict(d["arch"]),
                num_classes=int(d["num_classes"]),
                in_chans=int(d["model_args"]["in_chans"]),
                data=DataInfo.from_dict(data, classes=pcfg.get("label_names")),
                top1=None if top1 is None else float(top1),
                metrics=metrics,
                train=dict(section["train"]),
                samples=section.get("samples"),
                version=version,
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"{origin} is a corrupt retrain output: {e}", hint=_REDO) from e

    @classmethod
    def load(cls, path: str | Path) -> RetrainOutput:
        """From the output folder or its ``config.json``."""
        from dna_zoo.io import read_json

        p = Path(path)
        p = p / CONFIG if p.is_dir() else p
        return cls.from_dict(read_json(p, what="retrain output", hint=_REDO), origin=str(p))


SAMPLES = "samples"  # a few eval images of the training data, next to the weights


@dataclass(frozen=True)
class RetrainConfig:
    """How to train. Defaults suit a short from-scratch run on small images."""

    epochs: int = 3
    batch_size: int = 128
    opt: str = "adamw"
    lr: float = 2e-3
    weight_decay: float = 0.05
    sched: str = "cosine"
    warmup_epochs: int = 0
    min_lr: float = 1e-5
    label_smoothing: float = 0.1
    mixup: float = 0.0
    cutmix: float = 0.0
    ema_decay: float | None = 0.998
    kd_alpha: float = 0.5
    kd_temperature: float = 2.0
    clip_grad: float | None = 5.0
    channels_last: bool = True
    zero_init: bool = True
    seed: int = 0
    checkpoint_every: int = 100
    max_steps_per_epoch: int | None = None
    eval_max_batches: int | None = None
    num_workers: int = 0
    #: mixed precision (``torch.autocast`` + gradient scaler) when training on a GPU
    amp: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError(f"epochs ({self.epochs}) and batch size ({self.batch_size}) must be positive")
        if not self.lr > 0:
            raise ConfigError(f"learning rate must be positive, got {self.lr}")
        if not 0.0 <= self.kd_alpha <= 1.0:
            raise ConfigError(f"kd_alpha must be in [0, 1], got {self.kd_alpha}")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise ConfigError("max_steps_per_epoch must be positive")


@dataclass
class RetrainResult:
    out_dir: Path
    weights: Path
    config: Path
    top1: float
    top1_model: float
    top1_ema: float | None
    kept: str
    epochs: int
    steps: int
    seconds: float
    resumed_from_step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


# --- model set-up ------------------------------------------------------------------------------
def build_student(
    arch: ArchEncoding, *, num_classes: int, in_chans: int, zero_init: bool = True
) -> nn.Module:
    """The searched network as a timm model, with residual branches and classifier zeroed."""
    import timm

    import dna_zoo.models  # noqa: F401  (registers dna_net)

    model = timm.create_model("dna_net", arch=arch, num_classes=num_classes, in_chans=in_chans)
    if zero_init:
        zero_init_residuals(model)
    return model


def zero_init_residuals(model: nn.Module) -> int:
    """Zero the last BN gamma of every block with a skip, and the classifier. Returns the count."""
    n = 0
    for m in model.modules():
        if getattr(m, "has_skip", False):
            bns = [x for x in m.modules() if isinstance(x, nn.BatchNorm2d)]
            if bns:
                nn.init.zeros_(bns[-1].weight)
                n += 1
    head = getattr(model, "classifier", None)
    if isinstance(head, nn.Linear):
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
    return n


# --- checkpoints ------------------------------------------------------------------------------------
def _load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: say so, never overwrite it silently
        raise WeightsError(
            f"checkpoint {path} cannot be read ({type(e).__name__}: {e})",
            hint="move it away to start over, or point --out elsewhere",
        ) from e


def _batches(dataset, index_batches: Iterable[list[int]], *, num_workers: int = 0) -> Iterator:
    """(images, labels) per list of indices, in order; whole-batch loading where the
    dataset offers it (``dataset.batch(indices)``), else a DataLoader collating items."""
    if hasattr(dataset, "batch") and num_workers == 0:
        for idx in index_batches:
            yield dataset.batch(idx)
        return
    yield from torch.utils.data.DataLoader(
        dataset, batch_sampler=list(index_batches), num_workers=num_workers
    )


# --- the loop -------------------------------------------------------------------------------------
def _kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, t: float) -> torch.Tensor:
    return F.kl_div(
        F.log_softmax(student_logits / t, dim=1), F.log_softmax(teacher_logits / t, dim=1),
        reduction="batchmean", log_target=True,
    ) * (t * t)  # fmt: skip


@torch.no_grad()
def evaluate(
    model: nn.Module, dataset, *, batch_size: int = 256, max_batches: int | None = None,
    channels_last: bool = True, device: torch.device | None = None,
) -> float:  # fmt: skip
    """Top-1 accuracy (%) of ``model`` on ``dataset`` (``(image, label)`` items)."""
    device = device or torch.device("cpu")
    n = len(dataset) if max_batches is None else min(len(dataset), max_batches * batch_size)
    model.eval()
    acc = TopKAccuracy()
    for x, y in _batches(dataset, [list(range(i, min(n, i + batch_size))) for i in range(0, n, batch_size)]):
        x = x.to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        acc.update(model(x).cpu(), y)
    if acc.total == 0:
        raise ConfigError("the evaluation set is empty")
    return acc.percent()[0]


def retrain(
    arch: ArchEncoding | str | Path | dict,
    *,
    train_set,
    eval_set,
    num_classes: int,
    in_chans: int,
    out_dir: str | Path,
    config: RetrainConfig = RetrainConfig(),
    teacher: nn.Module | None = None,
    data_info: DataInfo | dict[str, Any] | None = None,
    resume: bool = True,
    progress: Reporter | None = None,
) -> RetrainResult:
    """Train ``arch`` from scratch on ``train_set``, evaluate on ``eval_set``, write weights + config.

    ``out_dir`` holds the checkpoint; with ``resume`` a run that was stopped continues from it
    (same arch, same config); without it an existing checkpoint is an error.
    """
    from timm.data import Mixup
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2
    from timm.utils import ModelEmaV3

    from dna_zoo.weights import save_safetensors

    enc = load_encoding(arch)
    if isinstance(data_info, dict):
        data_info = DataInfo.from_dict(data_info)
    out = Path(out_dir)
    world = distributed.setup()
    cfg = config
    torch.manual_seed(cfg.seed)
    model = build_student(enc, num_classes=num_classes, in_chans=in_chans, zero_init=cfg.zero_init)
    model.to(world.device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    speed_up_depthwise(model)
    optimizer = create_optimizer_v2(model, opt=cfg.opt, lr=cfg.lr, weight_decay=cfg.weight_decay)
    n_train = len(train_set)
    steps_per_epoch = n_train // (cfg.batch_size * world.size)
    if cfg.max_steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)
    if steps_per_epoch < 1:
        raise ConfigError(
            f"the training set ({n_train} images) is smaller than one global batch "
            f"({cfg.batch_size} x {world.size})"
        )
    scheduler, _ = create_scheduler_v2(
        optimizer, sched=cfg.sched, num_epochs=cfg.epochs, warmup_epochs=cfg.warmup_epochs,
        min_lr=cfg.min_lr, step_on_epochs=False, updates_per_epoch=steps_per_epoch,
    )  # fmt: skip
    ema = ModelEmaV3(model, decay=cfg.ema_decay, use_warmup=True) if cfg.ema_decay else None
    mixup = None
    if cfg.mixup > 0 or cfg.cutmix > 0:
        mixup = Mixup(
            mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, label_smoothing=cfg.label_smoothing,
            num_classes=num_classes,
        )  # fmt: skip
        criterion: nn.Module = SoftTargetCrossEntropy()
    elif cfg.label_smoothing > 0:
        criterion = LabelSmoothingCrossEntropy(smoothing=cfg.label_smoothing)
    else:
        criterion = nn.CrossEntropyLoss()
    if teacher is not None:
        fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
        teacher = teacher.to(world.device, memory_format=fmt).eval()  # channels_last: ~3x faster forward
        for p in teacher.parameters():
            p.requires_grad_(False)
    train_model: nn.Module = model
    if world.size > 1:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[world.device.index] if world.device.type == "cuda" else None
        )

    use_amp = cfg.amp and world.device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if use_amp else None
    run_config = asdict(cfg)
    if not use_amp:
        run_config.pop("amp")  # no effect off the GPU: CPU checkpoints of older runs still resume
    identity = {"arch": enc.to_dict(), "config": run_config, "num_classes": num_classes, "world": world.size}
    ckpt_path = out / CHECKPOINT
    start_step, history = 0, []
    if ckpt_path.exists():
        if not resume:
            raise ConfigError(
                f"{ckpt_path} exists", hint="pass --resume to continue it, or use another --out"
            )
        ck = _load_checkpoint(ckpt_path)
        if json.loads(ck["identity"]) != json.loads(json.dumps(identity)):
            raise ConfigError(
                f"{ckpt_path} belongs to another run (architecture or settings differ)",
                hint="use another --out, or the same settings to resume",
            )
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        if ema is not None:
            ema.load_state_dict(ck["ema"])
        if scaler is not None and ck.get("scaler"):
            scaler.load_state_dict(ck["scaler"])
        start_step, history = int(ck["step"]), json.loads(ck["history"])
        log.info("resuming %s at step %d", out, start_step)
    out.mkdir(parents=True, exist_ok=True)

    def save_checkpoint(step: int) -> None:
        if not world.is_main:
            return
        state = {
            "identity": json.dumps(identity),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "ema": ema.state_dict() if ema is not None else {},
            "scaler": scaler.state_dict() if scaler is not None else {},
            "step": step,
            "history": json.dumps(history),
        }
        atomic_write(ckpt_path, lambda f: torch.save(state, f), binary=True)

    total_steps = cfg.epochs * steps_per_epoch
    t0 = time.perf_counter()
    step = start_step
    rep = reporter_or_null(progress if world.is_main else None)
    for epoch in range(start_step // steps_per_epoch, cfg.epochs):
        first = step - epoch * steps_per_epoch
        sampler = ShardSampler(
            n_train, cfg.batch_size * world.size, shard=world.rank, shards=world.size,
            seed=cfg.seed, epoch=epoch, start=first,
        )  # fmt: skip
        train_model.train()
        losses = []
        batches = _batches(
            train_set, itertools.islice(sampler, steps_per_epoch - first), num_workers=cfg.num_workers
        )
        for _ in rep.track(range(first, steps_per_epoch), f"retrain epoch {epoch + 1}/{cfg.epochs}"):
            x, y = next(batches)
            x, y = x.to(world.device), y.to(world.device)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            target = y
            if mixup is not None:
                x, target = mixup(x, y)
            with torch.autocast(world.device.type, enabled=use_amp):
                logits = train_model(x)
                loss = criterion(logits, target)
                if teacher is not None and cfg.kd_alpha > 0:
                    with torch.no_grad():
                        t_logits = teacher(x)
                    loss = (1 - cfg.kd_alpha) * loss + cfg.kd_alpha * _kd_loss(
                        logits.float(), t_logits.float(), cfg.kd_temperature
                    )
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                if cfg.clip_grad:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                if cfg.clip_grad:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
                optimizer.step()
            step += 1
            scheduler.step_update(num_updates=step)
            if ema is not None:
                ema.update(model, step=step)
            if not math.isfinite(loss.item()):
                raise ConfigError(f"training diverged at step {step} (loss {loss.item()})", hint="lower --lr")
            losses.append(loss.item())
            if step % cfg.checkpoint_every == 0 and step % steps_per_epoch:
                save_checkpoint(step)
        history.append({"epoch": epoch + 1, "step": step, "train_loss": sum(losses) / max(1, len(losses))})
        save_checkpoint(step)
        log.info("epoch %d: train loss %.4f", epoch + 1, history[-1]["train_loss"])
    seconds = time.perf_counter() - t0

    ev = dict(
        max_batches=cfg.eval_max_batches, channels_last=cfg.channels_last, device=world.device,
        batch_size=max(cfg.batch_size, 256),
    )  # fmt: skip
    top1_model = evaluate(model, eval_set, **ev)
    top1_ema = evaluate(ema.module, eval_set, **ev) if ema is not None else None
    kept_module, kept = (
        (ema.module, "ema") if top1_ema is not None and top1_ema > top1_model else (model, "model")
    )
    top1 = max(top1_model, top1_ema or -1.0)
    weights, cfg_path = out / WEIGHTS, out / CONFIG
    if world.is_main:
        sd = {
            k: v.contiguous(memory_format=torch.contiguous_format)
            for k, v in kept_module.state_dict().items()
        }
        save_safetensors(
            sd, weights, metadata={"format": "pt", "arch": enc.name or "dna_net", "top1": f"{top1:.2f}"}
        )
        if hasattr(eval_set, "save_images"):  # real images of this data, for the export's parity check
            eval_set.save_images(out / SAMPLES)
        write_config(
            cfg_path, enc, num_classes=num_classes, in_chans=in_chans,
            data_info=data_info or unknown_data(in_chans),
            train={
                **asdict(cfg), "steps": step, "seconds": round(seconds, 1), "world_size": world.size,
                "teacher": getattr(teacher, "pretrained_cfg", {}).get("architecture") if teacher else None,
            },
            metrics={"top1": top1, "top1_model": top1_model, "top1_ema": top1_ema, "kept": kept},
        )  # fmt: skip
    return RetrainResult(
        out, weights, cfg_path, top1, top1_model, top1_ema, kept, cfg.epochs, total_steps, seconds,
        resumed_from_step=start_step, history=history,
    )  # fmt: skip


def write_config(
    path: Path, enc: ArchEncoding, *, num_classes: int, in_chans: int, data_info: DataInfo,
    train: dict[str, Any], metrics: dict[str, Any],
) -> Path:  # fmt: skip
    """Write the retrain output's ``config.json`` (see :class:`RetrainOutput`)."""
    metrics = dict(metrics)
    top1 = metrics.pop("top1", None)
    samples = SAMPLES if (Path(path).parent / SAMPLES).is_dir() else None
    out = RetrainOutput(
        enc, num_classes, in_chans, data_info, top1, metrics=metrics, train=train, samples=samples
    )
    return out.save(path)


def load_retrained(out_dir: str | Path) -> nn.Module:
    """The retrained network from its directory (config.json + model.safetensors), in eval mode."""
    from dna_zoo.zoo import build_model

    d = Path(out_dir)
    cfg_path = d / CONFIG
    if not cfg_path.is_file():
        raise ConfigError(f"{cfg_path} does not exist", hint="run `dna retrain` first")
    out = RetrainOutput.load(cfg_path)
    return build_model(str(cfg_path), weights=d / WEIGHTS, in_chans=out.in_chans)


def load_kd_teacher(spec: str, weights: str | Path | None, *, in_chans: int) -> nn.Module:
    """A trained teacher for KD (timm or zoo name); its weights must be a local file
    (nothing is downloaded)."""
    from dna_zoo.zoo import build_model

    if weights is None:
        raise ConfigError(
            f"the teacher '{spec}' needs trained weights",
            hint="pass --teacher-weights FILE (safetensors or .pth)",
        )
    return build_model(spec, weights=weights, in_chans=in_chans)


class TrainingData(NamedTuple):
    """The train and held-out datasets of a retraining run, and what the trained model's
    config records about them (``info``: :class:`DataInfo`'s fields plus num_classes and in_chans)."""

    train: Any
    val: Any
    info: dict[str, Any]


def training_data(data: str | Path, *, input_size: int, in_chans: int = 3) -> TrainingData:
    """Train/val datasets of ``data`` (``builtin`` or a folder timm reads) with their classes and
    the data source's own normalisation (:meth:`DataInfo.from_source`): ``dna retrain`` and the
    pipeline both call this, so they record the same mean/std for the same data."""
    from dna_zoo.search.supernet.data import open_dataset

    train = open_dataset(data, split="train", input_size=input_size, in_chans=in_chans)
    val = open_dataset(data, split="val", input_size=input_size, in_chans=in_chans)
    if not train.classes:
        raise DataError(f"cannot tell the classes of {data}", hint="use a folder with class sub-folders")
    info = DataInfo.from_source(data, train, input_size=input_size)
    classes = list(info.classes)
    return TrainingData(
        train.dataset,
        val.dataset,
        {**info.to_dict(), "num_classes": len(classes), "in_chans": in_chans, "classes": classes},
    )
