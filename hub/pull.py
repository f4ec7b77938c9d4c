"""Fetch a model or one of its export artifacts from the Hub into the real HF cache.

Downloads go through huggingface_hub's ``snapshot_download`` (its cache, ``HF_ENDPOINT``,
``HF_HUB_OFFLINE``: from a warm cache this works offline). Every pulled artifact is checked
against its manifest's sha256; a TensorRT engine is only accepted when it was built for
this machine's TensorRT version and GPU (or the ``target`` given explicitly), because an
engine built elsewhere does not run here.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dna_zoo.errors import DataError, OutputExistsError
from dna_zoo.hub import client
from dna_zoo.hub.artifacts import (
    MANIFEST_SUFFIX,
    ArtifactManifest,
    EngineMismatchError,
    TrtTarget,
    check_engine,
    format_slug,
    is_trt_format,
    local_trt_target,
    read_manifest,
)
from dna_zoo.io import replace_dir, sha256_file, staging_dir

logger = logging.getLogger(__name__)

MODEL_FILES = ("config.json", "model.safetensors", "README.md")


@dataclass(frozen=True)
class PulledArtifact:
    path: Path
    manifest_path: Path
    manifest: ArtifactManifest

    def extra_files(self) -> tuple[Path, ...]:
        """Sibling files the artifact needs (e.g. OpenVINO's .bin), as its manifest lists them."""
        names = self.manifest.extra_files
        return tuple(self.path.with_name(n) for n in names if self.path.with_name(n).is_file())

    def to_dict(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "path": str(self.path),
            "manifest": str(self.manifest_path),
            "format": m.format,
            "precision": m.precision,
            "sha256": m.sha256,
            "parity": m.parity,
            **({"trt": m.trt} if m.trt else {}),
        }


@dataclass(frozen=True)
class PullResult:
    repo_id: str
    artifact: str | None
    snapshot: Path
    files: tuple[Path, ...]
    artifacts: tuple[PulledArtifact, ...] = field(default=())
    out: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "repo_id": self.repo_id,
            "artifact": self.artifact,
            "snapshot": str(self.snapshot),
            "out": str(self.out) if self.out else None,
            "files": [str(p) for p in self.files],
            "artifacts": [a.to_dict() for a in self.artifacts],
        }


def resolve_target(trt_version: str | None, gpu: str | None) -> TrtTarget:
    """The TensorRT version and GPU an engine must match: given, or this machine's."""
    if trt_version and gpu:
        return TrtTarget(trt_version, gpu)
    if trt_version or gpu:
        local = local_trt_target()
        return TrtTarget(
            trt_version or local.version, gpu or local.gpu, None if gpu else local.compute_capability
        )
    return local_trt_target()


def pull(
    repo_id: str,
    *,
    artifact: str | None = None,
    revision: str | None = None,
    out: str | os.PathLike[str] | None = None,
    force: bool = False,
    trt_version: str | None = None,
    gpu: str | None = None,
) -> PullResult:
    """Download the model files (``artifact=None``) or one artifact format of ``repo_id``."""
    from huggingface_hub import snapshot_download

    client.validate_repo_id(repo_id)
    out_dir = Path(out) if out is not None else None
    if out_dir is not None and out_dir.exists() and not force:
        raise OutputExistsError(out_dir)
    target: TrtTarget | None = None
    if artifact is None:
        patterns = list(MODEL_FILES)
        folder = ""
    elif is_trt_format(artifact):
        target = resolve_target(trt_version, gpu)
        folder = target.folder
        patterns = [f"{folder}/*"]
    else:
        folder = format_slug(artifact)
        patterns = [f"{folder}/*"]
    with client.hub_errors(repo_id, "pull"):
        snapshot = Path(
            snapshot_download(repo_id, revision=revision, allow_patterns=patterns, repo_type="model")
        )
    if artifact is None:
        files = tuple(snapshot / f for f in MODEL_FILES if (snapshot / f).is_file())
        if not files:
            raise DataError(f"{repo_id} holds none of {', '.join(MODEL_FILES)}")
        pulled: tuple[PulledArtifact, ...] = ()
    else:
        pulled = tuple(_artifacts_in(snapshot / folder))
        if not pulled:
            _raise_missing(repo_id, artifact, folder, target, revision)
        for art in pulled:
            digest = sha256_file(art.path)
            if digest != art.manifest.sha256:
                raise DataError(
                    f"{art.path.name} from {repo_id} does not match its manifest's sha256",
                    hint="the repo is inconsistent; re-push the artifact",
                )
            if target is not None:
                check_engine(art.manifest, target)
        files = tuple(p for a in pulled for p in (a.path, a.manifest_path, *a.extra_files()))
    if out_dir is not None:
        files = _copy_out(snapshot, files, out_dir)
        pulled = tuple(
            PulledArtifact(
                out_dir / a.path.relative_to(snapshot),
                out_dir / a.manifest_path.relative_to(snapshot),
                a.manifest,
            )
            for a in pulled
        )
    logger.info("pulled %s (%s): %d files", repo_id, artifact or "model", len(files))
    return PullResult(repo_id, artifact, snapshot, files, pulled, out_dir)


def _artifacts_in(folder: Path) -> list[PulledArtifact]:
    if not folder.is_dir():
        return []
    found = []
    for manifest_path in sorted(folder.glob(f"*{MANIFEST_SUFFIX}")):
        path = manifest_path.with_name(manifest_path.name[: -len(MANIFEST_SUFFIX)])
        if path.is_file():
            found.append(PulledArtifact(path, manifest_path, read_manifest(manifest_path)))
    return found


def _raise_missing(repo_id: str, artifact: str, folder: str, target: TrtTarget | None, revision: str | None):
    available = _remote_folders(repo_id, revision)
    if target is not None:
        engines = sorted(f for f in available if f.startswith("trt/"))
        have = (
            "; it has engines for " + ", ".join(_describe_engine_folder(f) for f in engines)
            if engines
            else ""
        )
        raise EngineMismatchError(
            f"refusing: {repo_id} has no TensorRT engine built for {target.describe()}{have}",
            hint="build an engine here with `dna export --format trt` and push it, "
            "or pass --trt-version/--gpu to fetch one for another machine",
        )
    formats = sorted({f.split("/")[0] for f in available})
    raise DataError(
        f"{repo_id} has no '{artifact}' artifact (looked in {folder}/)",
        hint=("it has: " + ", ".join(formats))
        if formats
        else "push one with `dna hub push ... --artifacts DIR`",
    )


def _describe_engine_folder(folder: str) -> str:
    parts = folder.split("/")
    return f"TensorRT {parts[1]} on {parts[2]}" if len(parts) >= 3 else folder


def _remote_folders(repo_id: str, revision: str | None) -> set[str]:
    """Artifact folders of the repo (from the Hub, or the cached tree listing when offline)."""
    paths: list[str] = []
    try:
        if client.offline():
            from huggingface_hub import get_cached_repo_tree

            paths = [f.path for f in get_cached_repo_tree(repo_id, revision=revision)]
        else:
            paths = client.api().list_repo_files(repo_id, revision=revision)
    except Exception as e:  # listing only improves the message; the error raised after is the point
        logger.debug("could not list %s: %s", repo_id, type(e).__name__)
    return {p.rsplit("/", 1)[0] for p in paths if p.endswith(MANIFEST_SUFFIX) and "/" in p}


def _copy_out(snapshot: Path, files: tuple[Path, ...], out_dir: Path) -> tuple[Path, ...]:
    stage = staging_dir(out_dir)
    try:
        copied = []
        for f in files:
            rel = f.relative_to(snapshot)
            dest = stage / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dest)
            copied.append(out_dir / rel)
        replace_dir(stage, out_dir)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return tuple(copied)
