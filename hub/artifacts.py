"""Export artifacts on the Hub: where each one goes in a repo, and whether an engine fits here.

Every artifact file ``X`` has ``X.manifest.json`` beside it, written by ``dna_zoo.export``
and read here only through its typed reader, :class:`dna_zoo.export.artifact.ArtifactManifest`
(format, precision, sha256 of every file, parity, latency per runner, versions); TensorRT
engines add a ``trt`` dict with ``version``, ``gpu`` and ``compute_capability``. The other
files the manifest lists (OpenVINO's ``.bin``, ONNX external data) travel with the artifact.

In a repo, an artifact lives in a folder per format (``onnx/model.onnx``); TensorRT engines
are keyed by TensorRT version and GPU (``trt/<trt_version>/<gpu_slug>/model.engine``),
because an engine only runs on the TensorRT version and GPU it was built with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from dna_zoo.errors import ConfigError, DataError, DnaZooError, MissingDependencyError
from dna_zoo.export.artifact import MANIFEST_SUFFIX, ArtifactManifest
from dna_zoo.io import sha256_file

__all__ = ["MANIFEST_SUFFIX", "ArtifactManifest", "LocalArtifact", "find_artifacts", "read_manifest"]

TRT_FORMATS = ("trt", "tensorrt", "engine")


class EngineMismatchError(DnaZooError):
    """A TensorRT engine built for another TensorRT version or GPU than this machine's."""


@dataclass(frozen=True)
class LocalArtifact:
    """An artifact file on disk with its manifest."""

    path: Path
    manifest_path: Path
    manifest: ArtifactManifest
    extra: tuple[Path, ...] = field(default=())

    @property
    def format(self) -> str:
        return self.manifest.format

    def repo_folder(self) -> str:
        """The folder of this artifact in a Hub repo."""
        return repo_folder(self.manifest)


def is_trt_format(fmt: str) -> bool:
    return fmt.lower() in TRT_FORMATS


def format_slug(fmt: str) -> str:
    """Folder name of a format: ``onnx``, ``onnx-int8``, ``openvino``, ``trt``."""
    if is_trt_format(fmt):
        return "trt"
    return re.sub(r"[^a-z0-9.+-]+", "-", fmt.lower()).strip("-") or "artifact"


def gpu_slug(gpu: str) -> str:
    """``NVIDIA GeForce RTX 4090`` -> ``nvidia-geforce-rtx-4090`` (stable folder name)."""
    slug = re.sub(r"[^a-z0-9]+", "-", str(gpu).lower()).strip("-")
    if not slug:
        raise ConfigError(f"GPU name '{gpu}' gives an empty folder name")
    return slug


def version_slug(version: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9.+_-]+", "-", str(version)).strip("-")
    if not slug:
        raise ConfigError(f"TensorRT version '{version}' gives an empty folder name")
    return slug


def repo_folder(manifest: ArtifactManifest) -> str:
    fmt = manifest.format
    if not is_trt_format(fmt):
        return format_slug(fmt)
    trt = manifest.trt or {}
    return f"trt/{version_slug(trt['version'])}/{gpu_slug(trt['gpu'])}"


def validate_manifest(manifest: Any, source: str) -> ArtifactManifest:
    """The typed manifest, or a :class:`DataError` saying what is wrong and how to redo it."""
    m = ArtifactManifest.from_dict(manifest, origin=source)
    if is_trt_format(m.format):
        if not m.trt or not m.trt.get("version") or not m.trt.get("gpu"):
            raise DataError(
                f"{source} is a TensorRT engine manifest without trt.version and trt.gpu",
                hint="engines must say which TensorRT version and GPU built them",
            )
    return m


def read_manifest(path: Path) -> ArtifactManifest:
    return validate_manifest(ArtifactManifest.load(path).raw, str(path))


def find_artifacts(folder: str | Path) -> list[LocalArtifact]:
    """Every artifact under ``folder`` (recursively): files with a manifest beside them.

    Each file's sha256 is checked against its manifest, so a stale or corrupted artifact is
    never published.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"artifacts folder {root} does not exist")
    found = []
    for manifest_path in sorted(root.rglob(f"*{MANIFEST_SUFFIX}")):
        manifest = read_manifest(manifest_path)
        name = manifest_path.name[: -len(MANIFEST_SUFFIX)]
        path = manifest_path.with_name(name)
        if not path.is_file():
            raise DataError(f"{manifest_path} describes {name}, which is not beside it")
        if Path(manifest.file).name != name:
            raise DataError(f"{manifest_path} describes file '{manifest.file}', not {name}")
        digest = sha256_file(path)
        if digest != manifest.sha256:
            raise DataError(
                f"{path} does not match its manifest (sha256 {digest[:12]}… != {manifest.sha256[:12]}…)",
                hint="the artifact changed after export; export it again",
            )
        extra = []
        for rel in manifest.extra_files:
            p = path.parent / str(rel)
            if not p.is_file() or PurePosixPath(str(rel)).name != str(rel):
                raise DataError(f"{manifest_path} lists extra file '{rel}', which is not beside it")
            entry = manifest.files.get(rel)
            if entry is not None and sha256_file(p) != entry.get("sha256"):
                raise DataError(f"{p} does not match its manifest", hint="export the artifact again")
            extra.append(p)
        found.append(LocalArtifact(path, manifest_path, manifest, tuple(extra)))
    if not found:
        raise DataError(
            f"no artifacts in {root}: expected files with an X{MANIFEST_SUFFIX} manifest beside them",
            hint="export with `dna export ... --out DIR` first",
        )
    return found


def layout(artifacts: list[LocalArtifact]) -> dict[str, Path]:
    """Path in the repo -> local file, for all artifacts; two artifacts on one path is an error."""
    out: dict[str, Path] = {}
    for art in artifacts:
        folder = art.repo_folder()
        for p in (art.path, art.manifest_path, *art.extra):
            dest = f"{folder}/{p.name}"
            if dest in out and out[dest] != p:
                raise DataError(
                    f"two artifacts would both be uploaded as {dest} ({out[dest]} and {p})",
                    hint="give them distinct file names",
                )
            out[dest] = p
    return out


# --- TensorRT: what this machine runs ---------------------------------------------------
@dataclass(frozen=True)
class TrtTarget:
    """A TensorRT version and a GPU: what an engine must have been built for."""

    version: str
    gpu: str
    compute_capability: str | None = None

    @property
    def folder(self) -> str:
        return f"trt/{version_slug(self.version)}/{gpu_slug(self.gpu)}"

    def describe(self) -> str:
        cc = f", compute capability {self.compute_capability}" if self.compute_capability else ""
        return f"TensorRT {self.version} on {self.gpu}{cc}"


def local_trt_target() -> TrtTarget:
    """The TensorRT version and GPU of this machine (TensorRT and CUDA are imported lazily)."""
    try:
        import tensorrt
    except ImportError as e:
        raise MissingDependencyError("tensorrt", extra="trt", purpose="checking a TensorRT engine") from e
    import torch

    if not torch.cuda.is_available():
        raise EngineMismatchError(
            "no CUDA GPU is visible here, so no TensorRT engine can run on this machine",
            hint="pass --trt-version and --gpu to fetch an engine for another machine",
        )
    major, minor = torch.cuda.get_device_capability(0)
    return TrtTarget(str(tensorrt.__version__), torch.cuda.get_device_name(0), f"{major}.{minor}")


def check_engine(manifest: ArtifactManifest, target: TrtTarget) -> None:
    """Refuse an engine built for another TensorRT version or GPU than ``target``."""
    trt = manifest.trt or {}
    built = TrtTarget(str(trt.get("version")), str(trt.get("gpu")), _cc(trt.get("compute_capability")))
    problems = []
    if built.version != target.version:
        problems.append(f"TensorRT {built.version} != {target.version}")
    if gpu_slug(built.gpu) != gpu_slug(target.gpu):
        problems.append(f"GPU {built.gpu} != {target.gpu}")
    elif built.compute_capability and target.compute_capability:
        if built.compute_capability != target.compute_capability:
            problems.append(f"compute capability {built.compute_capability} != {target.compute_capability}")
    if problems:
        raise EngineMismatchError(
            f"refusing the TensorRT engine: it was built for {built.describe()}, this machine has "
            f"{target.describe()} ({'; '.join(problems)})",
            hint="build an engine here with `dna export --format trt`, or pull one built for this GPU",
        )


def _cc(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return f"{value[0]}.{value[1]}"
    return str(value)
