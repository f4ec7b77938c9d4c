"""``export_artifact``: the one entry point (the CLI and the hub code call this).

It resolves what the user named (zoo name, timm name, searched-net file; ``--weights``),
checks the format and its options, refuses to overwrite without ``force`` before doing
any work, runs the format's exporter in a staging folder, completes the manifest
(source, weights hash, versions, sha256 of every file) and renames everything into place.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import platform
import re
import time
from pathlib import Path
from typing import Any

from dna_zoo.errors import ConfigError, DataError, WeightsError, require
from dna_zoo.export.artifact import (
    MANIFEST_KIND,
    MANIFEST_VERSION,
    Artifact,
    check_writable,
    file_entries,
    library_versions,
    manifest_path_for,
    publish,
    refuse_existing,
    staging,
)
from dna_zoo.export.inputs import data_config, random_sample
from dna_zoo.export.options import ExportOptions
from dna_zoo.export.registry import ExportFormat, get_format
from dna_zoo.io import atomic_write_json, sha256_file
from dna_zoo.progress import Reporter, reporter_or_null
from dna_zoo.zoo import ModelSource, build_model, recorded_inputs, resolve_source

log = logging.getLogger(__name__)

RESCALE_IMAGES = 64  # real images for a random-init model's BatchNorm statistics (all parity images)


def artifact_name(fmt: ExportFormat, stem: str, opts: ExportOptions) -> str:
    """File name of the artifact: ``dna_b.onnx``, ``dna_b.int8.xml``, ``dna_b.fp16.engine``..."""
    if fmt.name == "openvino":
        return f"{stem}.int8.xml" if opts.int8 else f"{stem}.bf16.xml" if opts.half else f"{stem}.xml"
    if fmt.name == "engine":
        return f"{stem}.{opts.precision}" + (".trt.onnx" if opts.onnx_only else ".engine")
    return stem + fmt.suffix


def artifact_files(fmt: ExportFormat, name: str) -> list[str]:
    """Every file an artifact named ``name`` consists of (manifest last)."""
    extra = [str(Path(name).with_suffix(".bin"))] if fmt.name == "openvino" else []
    return [*extra, name, name + ".manifest.json"]


def safe_stem(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "model"


def _check_dependencies(fmt: ExportFormat, opts: ExportOptions) -> None:
    """Missing optional runtimes are reported before a model is even built."""
    if fmt.name == "openvino":
        require("openvino", extra="openvino", purpose="OpenVINO export")
        if opts.int8:
            require("nncf", extra="openvino", purpose="OpenVINO INT8 quantization")
    if fmt.name == "engine" and not opts.onnx_only:
        from dna_zoo.export.trt import require_tensorrt

        require_tensorrt()


def prepare_model(src: ModelSource | str, weights: Path | None, opts: ExportOptions | None = None):
    """The torch model every check compares against: the user's weights, or a seeded random
    init with re-estimated BatchNorm statistics (see :func:`rescale_random_init`)."""
    import torch

    torch.manual_seed(0)  # a random-init model is the same one every time
    model = build_model(src, weights=weights)
    if weights is None:
        rescale_random_init(model, opts or ExportOptions())
    return model


def rescale_random_init(model, opts: ExportOptions) -> None:
    """Re-estimate BatchNorm statistics of a random-init model on the parity images.

    In eval mode a random-init EfficientNet's activations vanish with depth (dna_b's
    logits are ~1e-5), which would make any parity tolerance meaningless. One pass in
    train mode with a cumulative average gives realistic statistics; weights are unchanged.
    """
    import torch

    from dna_zoo.export.checks import parity_images

    x = torch.tensor(parity_images(model, opts).x[:RESCALE_IMAGES])
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        model(x)
    model.eval()


def _check_folders(opts: ExportOptions) -> None:
    """A calibration or parity folder without images is reported before any work is done."""
    from dna_zoo.sample_images import image_folder, open_image

    for folder, what in ((opts.calib, "calibration"), (opts.data, "parity")):
        if folder is not None and folder != "builtin":
            if not Path(folder).is_dir():
                raise DataError(f"{what} folder {folder} does not exist or is not a folder")
            images = image_folder(folder)
            if what == "calibration":  # decode them now: an unreadable file is an error before any work
                for im in images[: opts.calib_size]:
                    open_image(im.path)


def portable_spec(spec: str) -> str:
    """What the user named, without a local path: a searched-net file is recorded by its name
    (its encoding is recorded in full beside it)."""
    return Path(spec).name if Path(spec).is_file() else spec


def portable_options(options: dict[str, Any]) -> dict[str, Any]:
    """The options as given, with folders and files (``data``, ``calib``, ``timing_cache``) by name."""
    return {
        k: (Path(str(v)).name if k in ("data", "calib", "timing_cache") and v not in (None, "builtin") else v)
        for k, v in options.items()
    }


def source_record(src: ModelSource, weights: Path | None) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "model": portable_spec(src.spec),
        "timm_name": src.timm_name,
        "name": src.display_name,
    }
    if src.arch is not None:
        rec["arch"] = src.arch.to_dict()
    rec["weights"] = None
    if weights is not None:
        rec["weights"] = {"file": Path(weights).name, "sha256": sha256_file(weights)}
    else:
        rec["weights_note"] = (
            "no weights given: timm's random initialisation (seeded), for format checks only"
        )
    return rec


def export_artifact(
    model_spec: str,
    fmt: str,
    out_dir: Path,
    *,
    weights: Path | None = None,
    force: bool = False,
    progress: Reporter | None = None,
    **options: Any,
) -> Artifact:
    """Export ``model_spec`` to ``fmt`` in ``out_dir``, checked against torch on real images.

    ``options`` are :class:`ExportOptions` fields; one the format does not accept is a
    :class:`ConfigError`. Returns the published :class:`Artifact` (its manifest included).
    """
    import torch

    spec_fmt = get_format(fmt)
    options = {k: v for k, v in options.items() if v is not None}
    spec_fmt.check_options(options)
    opts = ExportOptions.create(options)
    src = resolve_source(model_spec)
    recorded = recorded_inputs(src.spec, weights) if src.arch is not None else None
    if opts.data is None and recorded is not None and recorded.images is not None:
        # a net from our pipeline is checked on images of the data it was trained on
        opts = dataclasses.replace(opts, data=str(recorded.images))
    if weights is not None and not Path(weights).is_file():
        raise WeightsError(f"weights file {weights} does not exist")
    out_dir = Path(out_dir)
    name = artifact_name(spec_fmt, safe_stem(src.display_name), opts)
    files = artifact_files(spec_fmt, name)
    refuse_existing([out_dir / f for f in files], force)
    _check_dependencies(spec_fmt, opts)
    _check_folders(opts)
    if spec_fmt.needs_gpu and not opts.onnx_only:
        log.info("building a TensorRT engine for %s", torch.cuda.get_device_name())

    check_writable(out_dir)
    model = prepare_model(src, weights, opts)  # before any progress bar: bad weights are one line
    cfg = data_config(model, opts.input_size)
    sample = random_sample(cfg, opts.batch)
    steps = [f"export {spec_fmt.name} and check it", "publish"]
    tracker = iter(reporter_or_null(progress).track(steps, f"{src.display_name} -> {spec_fmt.name}"))
    with contextlib.closing(tracker):  # a failure must also close the progress bar
        with staging(out_dir) as stage:
            next(tracker)
            t0 = time.perf_counter()
            art = spec_fmt.exporter()(model, sample, stage / name, opts)
            next(tracker)
            manifest: dict[str, Any] = {"kind": MANIFEST_KIND, "manifest_version": MANIFEST_VERSION}
            manifest.update(art.manifest)
            manifest.setdefault("label", f"{spec_fmt.name} {manifest.get('precision', '')}".strip())
            manifest["sha256"] = sha256_file(art.path)
            manifest["files"] = file_entries(art.files)
            manifest["source"] = source_record(src, weights)
            manifest["preprocess"] = cfg
            manifest["options"] = portable_options(options)
            for key in ("parity", "onnx_parity"):  # a --data folder is recorded by name
                images = (manifest.get(key) or {}).get("images")
                if isinstance(images, str) and not images.startswith("builtin"):
                    manifest[key]["images"] = Path(images).name
            if recorded is not None and recorded.source is not None:
                manifest["preprocess_source"] = Path(recorded.source).name
            manifest["versions"] = library_versions()
            manifest["machine"] = {"platform": platform.platform(), "processor": platform.processor() or None}
            manifest["export_seconds"] = round(time.perf_counter() - t0, 2)
            manifest["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            atomic_write_json(stage / (name + ".manifest.json"), manifest)
            published = publish(stage, files, out_dir, force=force)
            for _ in tracker:
                pass
    path = out_dir / name
    return Artifact(path, manifest_path_for(path), manifest, [p for p in published[:-2]])


def latest_search_result(root: Path | None = None) -> Path | None:
    """The newest ``runs/*/best.json`` under ``root`` (the current directory): a search's result."""
    root = Path.cwd() if root is None else Path(root)
    found = [p for p in (root / "runs").glob("*/best.json") if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def recorded_target(result: Path) -> dict[str, Any]:
    """Device, runtime and precision a search result was searched for (empty if it says none)."""
    import json

    try:
        data = json.loads(Path(result).read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    lat = data.get("predicted_latency") if isinstance(data, dict) else None
    if not isinstance(lat, dict):
        return {}
    return {k: lat[k] for k in ("device", "runtime", "precision") if isinstance(lat.get(k), str)}


def no_model_error() -> ConfigError:
    return ConfigError(
        "no model named and no search result here (runs/*/best.json)",
        hint="name one: `dna export dna_b --format trt`, a timm model name, or a searched-net .json file",
    )
