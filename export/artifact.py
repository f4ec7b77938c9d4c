"""Artifacts, their manifests, and atomic writing.

Every artifact file ``X`` gets ``X.manifest.json`` beside it: format, precision, file,
sha256 (of every file the artifact consists of), shapes, opset, source model and weights
hash, parity figures, library versions, latency if measured. Exports are built in a
hidden staging folder inside the output folder and renamed into place at the end, so a
failure leaves nothing behind and an existing artifact is never lost.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from dna_zoo.errors import ConfigError, DataError, OutputExistsError
from dna_zoo.io import sha256_file

log = logging.getLogger(__name__)

MANIFEST_SUFFIX = ".manifest.json"
MANIFEST_KIND = "dna-zoo-artifact"
#: 2: ``latency["artifact"]`` names the artifact's own runner among the baselines, and the
#: source and options hold file names instead of local paths. Version 1 is read as well
#: (the artifact's runner was the first one timed).
MANIFEST_VERSION = 2
READABLE_MANIFEST_VERSIONS = (1,)
_REDO = "export the artifact again with `dna export`"
_VERSIONED = ("torch", "timm", "onnx", "onnxruntime", "openvino", "nncf", "tensorrt", "numpy", "dna-zoo")


@dataclass
class Artifact:
    """An exported file, where its manifest is, and what the manifest says."""

    path: Path
    manifest_path: Path
    manifest: dict[str, Any] = field(default_factory=dict)
    extra_files: list[Path] = field(default_factory=list)  # e.g. OpenVINO's .bin beside the .xml

    @property
    def files(self) -> list[Path]:
        return [*self.extra_files, self.path]


@dataclass(frozen=True)
class Timing:
    """One runner's latency as timed at export (interleaved with the baselines)."""

    runner: str
    median_ms: float
    p90_ms: float | None = None
    batch: int = 1
    threads: int | None = None


@dataclass(frozen=True)
class ArtifactManifest:
    """The typed view of ``X.manifest.json``: the one reader of export manifests.

    ``raw`` is the whole file (what is uploaded beside the artifact); the fields are what
    other layers (the hub, the benchmark) read from it.
    """

    format: str
    precision: str
    file: str
    sha256: str
    label: str
    files: dict[str, dict[str, Any]]
    source: dict[str, Any]
    parity: dict[str, Any]
    versions: dict[str, str]
    machine: dict[str, Any]
    trt: dict[str, Any] | None
    timings: tuple[Timing, ...]
    artifact_runner: str | None
    version: int
    raw: dict[str, Any] = field(repr=False)

    @property
    def parity_passed(self) -> bool:
        return bool(self.parity.get("passed"))

    @property
    def extra_files(self) -> tuple[str, ...]:
        """Files of the artifact besides the main one (OpenVINO's ``.bin``, ONNX external data)."""
        names = [n for n in self.files if n != self.file]
        names += [str(n) for n in self.raw.get("extra_files") or [] if str(n) not in names]
        return tuple(names)

    @property
    def own_timing(self) -> Timing | None:
        """The artifact's own measured latency (not its baselines'), if it was timed."""
        return next((t for t in self.timings if t.runner == self.artifact_runner), None)

    @property
    def device(self) -> str:
        """What the latency was measured on: the GPU of an engine, else the export machine."""
        if self.trt and self.trt.get("gpu"):
            return str(self.trt["gpu"])
        return str(self.machine.get("processor") or self.machine.get("platform") or "the export machine")

    def to_dict(self) -> dict[str, Any]:
        return dict(self.raw)

    @classmethod
    def from_dict(cls, d: Any, *, origin: str = "manifest") -> ArtifactManifest:
        from dna_zoo.errors import FileFormatError
        from dna_zoo.io import check_format

        try:
            version = check_format(
                d, origin=origin, what="dna-zoo artifact manifest", format=MANIFEST_KIND,
                version=MANIFEST_VERSION, readable=READABLE_MANIFEST_VERSIONS, redo=_REDO,
                key="kind", version_key="manifest_version",
            )  # fmt: skip
        except FileFormatError as e:
            raise DataError(e.message, hint=e.hint) from e
        missing = [
            k for k in ("format", "precision", "file", "sha256", "source", "parity", "versions") if k not in d
        ]
        if missing:
            raise DataError(f"{origin} lacks {', '.join(missing)}", hint=_REDO)
        latency = d.get("latency") or {}
        timings = tuple(
            Timing(
                str(name),
                float(t["median_ms"]),
                None if t.get("p90_ms") is None else float(t["p90_ms"]),
                int(t.get("batch", 1)),
                None if t.get("threads") is None else int(t["threads"]),
            )
            for name, t in latency.items()
            if isinstance(t, dict) and "median_ms" in t
        )
        runner = latency.get("artifact")
        if runner is None and timings:  # version 1: the artifact's runner was timed first
            runner = timings[0].runner
        try:
            return cls(
                format=str(d["format"]),
                precision=str(d["precision"]),
                file=str(d["file"]),
                sha256=str(d["sha256"]),
                label=str(d.get("label") or f"{d['format']} {d['precision']}"),
                files=dict(d.get("files") or {}),
                source=d["source"] if isinstance(d["source"], dict) else {"name": str(d["source"])},
                parity=dict(d["parity"] or {}),
                versions={str(k): str(v) for k, v in (d["versions"] or {}).items()},
                machine=dict(d.get("machine") or {}),
                trt=dict(d["trt"]) if isinstance(d.get("trt"), dict) else None,
                timings=timings,
                artifact_runner=None if runner is None else str(runner),
                version=version,
                raw=dict(d),
            )
        except (TypeError, ValueError, AttributeError) as e:
            raise DataError(f"{origin} is a corrupt artifact manifest: {e}", hint=_REDO) from e

    @classmethod
    def load(cls, manifest_path: str | Path) -> ArtifactManifest:
        p = Path(manifest_path)
        try:
            data = json.loads(p.read_text())
        except FileNotFoundError as e:
            raise DataError(f"manifest {p} does not exist", hint=_REDO) from e
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(f"manifest {p} is unreadable: {e}", hint=_REDO) from e
        return cls.from_dict(data, origin=str(p))


def manifest_path_for(path: Path) -> Path:
    return path.with_name(path.name + MANIFEST_SUFFIX)


def library_versions() -> dict[str, str]:
    """Versions of the libraries that made or can run an artifact (installed ones only)."""
    out = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def file_entries(files: list[Path]) -> dict[str, dict[str, Any]]:
    """``{file name: {sha256, bytes}}`` for every file of an artifact."""
    return {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size} for p in files}


def read_manifest(artifact_path: str | Path) -> dict[str, Any]:
    """The manifest of an artifact (as a dict); a missing, foreign or unreadable one is a
    :class:`DataError`. Read through :class:`ArtifactManifest`, the one reader."""
    return load_manifest(artifact_path).raw


def load_manifest(artifact_path: str | Path) -> ArtifactManifest:
    """The typed manifest of an artifact file."""
    p = manifest_path_for(Path(artifact_path))
    if not p.is_file():
        raise DataError(f"{artifact_path} has no manifest ({p.name})", hint="export it with `dna export`")
    return ArtifactManifest.load(p)


def verify_files(artifact_path: Path, manifest: dict[str, Any]) -> None:
    """Check every file of an artifact against the sha256 in its manifest."""
    for name, entry in manifest.get("files", {}).items():
        p = artifact_path.parent / name
        if not p.is_file():
            raise DataError(f"{p} is missing (listed in {manifest_path_for(artifact_path).name})")
        if sha256_file(p) != entry.get("sha256"):
            raise DataError(
                f"{p} does not match the sha256 in its manifest: the file is corrupt or was changed",
                hint="export it again (with --force)",
            )


def check_writable(out_dir: Path) -> Path:
    """Create ``out_dir`` if needed; an impossible output folder is one clear error."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out_dir, prefix=".dna-write-probe-", delete=True)
        probe.close()
    except OSError as e:
        raise ConfigError(
            f"cannot write to output folder {out_dir}: {e.strerror or e}", hint="choose a writable --out"
        ) from e
    return out_dir


def refuse_existing(targets: list[Path], force: bool) -> None:
    if force:
        return
    for t in targets:
        if t.exists():
            raise OutputExistsError(t)


@contextlib.contextmanager
def staging(out_dir: Path) -> Iterator[Path]:
    """A hidden folder inside ``out_dir`` (same file system, so renames are atomic), always removed."""
    check_writable(out_dir)
    stage = Path(tempfile.mkdtemp(prefix=".dna-export-", dir=out_dir))
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def publish(stage: Path, names: list[str], out_dir: Path, *, force: bool) -> list[Path]:
    """Move staged files into ``out_dir``; the manifest (last in ``names``) goes last.

    The existence check is repeated here because an export can take a while.
    """
    targets = [out_dir / n for n in names]
    refuse_existing(targets, force)
    for n, t in zip(names, targets, strict=True):
        os.replace(stage / n, t)
    return targets
