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
MANIFEST_VERSION = 1
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
    """The manifest of an artifact; a missing or unreadable one is a :class:`DataError`."""
    p = manifest_path_for(Path(artifact_path))
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError as e:
        raise DataError(
            f"{artifact_path} has no manifest ({p.name})", hint="export it with `dna export`"
        ) from e
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"manifest {p} is unreadable: {e}", hint="export the artifact again") from e
    if not isinstance(data, dict) or data.get("kind") != MANIFEST_KIND:
        raise DataError(f"{p} is not a dna-zoo artifact manifest", hint="export the artifact again")
    return data


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
