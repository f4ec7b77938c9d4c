"""A supernet run directory: its description, its checkpoints, its logs.

Layout::

    RUN_DIR/run.json                   space, teacher, data identity, options (written once)
    RUN_DIR/checkpoints/latest.json    manifest: file, sha256, step, epoch, done
    RUN_DIR/checkpoints/step_0000120.pt
    RUN_DIR/logs/train.jsonl           one JSON row per logged step (rank 0)
    RUN_DIR/ratings.json               written by ``dna supernet rate`` (default --out)

Every file is written atomically (temporary file in the same folder, fsync, rename), so
a ``kill -9`` at any moment leaves either the old or the new version. A checkpoint is
trusted only if its sha256 matches the manifest: a corrupt checkpoint is reported as a
:class:`CheckpointError` and left on disk untouched for inspection.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from dna_zoo.errors import ConfigError, DnaZooError, OutputExistsError
from dna_zoo.io import atomic_write, atomic_write_json, check_format, sha256_file
from dna_zoo.search.space import SearchSpace

RUN_FORMAT = "dna-zoo-supernet-run"
RUN_VERSION = 1
CKPT_FORMAT = "dna-zoo-supernet-checkpoint"


class CheckpointError(DnaZooError, ValueError):
    """A checkpoint that is corrupt, missing or from another run."""


class RunDir:
    """Access to one run directory (does not create anything until asked)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def run_json(self) -> Path:
        return self.path / "run.json"

    @property
    def ckpt_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def manifest(self) -> Path:
        return self.ckpt_dir / "latest.json"

    @property
    def log_file(self) -> Path:
        return self.path / "logs" / "train.jsonl"

    def exists(self) -> bool:
        return self.run_json.is_file()

    # --- run.json -------------------------------------------------------------------------
    def check_new(self) -> None:
        """A new run may go into a missing or empty folder only."""
        if self.exists():
            raise OutputExistsError(self.path)
        if self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir())):
            raise ConfigError(
                f"{self.path} exists and is not an empty folder", hint="choose a new --out for a new run"
            )

    def create(self, description: dict[str, Any]) -> None:
        self.check_new()
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.run_json, {"format": RUN_FORMAT, "version": RUN_VERSION, **description})

    def read(self) -> dict[str, Any]:
        if not self.path.is_dir():
            raise ConfigError(f"run directory {self.path} does not exist")
        if not self.run_json.is_file():
            raise ConfigError(
                f"{self.path} is not a supernet run directory (no run.json)",
                hint="give the --out folder of a `dna supernet train` run",
            )
        try:
            d = json.loads(self.run_json.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"{self.run_json} is not readable: {e}") from e
        check_format(
            d, origin=str(self.run_json), what="dna-zoo supernet run description", format=RUN_FORMAT,
            version=RUN_VERSION, redo="train the supernet again with `dna supernet train --out NEW_DIR`",
        )  # fmt: skip
        return d

    def space(self) -> SearchSpace:
        d = self.read()
        space = SearchSpace.from_dict(d["space"])
        if d.get("space_identity") != space.identity:
            raise ConfigError(f"{self.run_json} is inconsistent: its space does not match its identity")
        return space

    # --- checkpoints ----------------------------------------------------------------------
    def latest(self) -> dict[str, Any] | None:
        """The manifest of the last complete checkpoint, or None if there is none yet."""
        if not self.manifest.is_file():
            return None
        try:
            m = json.loads(self.manifest.read_text())
            if not isinstance(m, dict) or m.get("format") != CKPT_FORMAT:
                raise ValueError("not a checkpoint manifest")
            return m
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise CheckpointError(
                f"checkpoint manifest {self.manifest} is corrupt ({e})",
                hint="restore it from a backup; the run files were left as they are",
            ) from e

    def save_checkpoint(self, state: dict[str, Any], *, keep: int = 2) -> Path:
        """Write a checkpoint atomically, then point the manifest at it, then prune old ones."""
        step = int(state["step"])
        path = self.ckpt_dir / f"step_{step:07d}.pt"
        atomic_write(path, lambda f: torch.save(state, f), binary=True)
        manifest = {
            "format": CKPT_FORMAT,
            "file": path.name,
            "sha256": sha256_file(path),
            "step": step,
            "epoch": int(state["epoch"]),
            "batch": int(state["batch"]),
            "done": bool(state.get("done", False)),
            "space_identity": state.get("space_identity"),
        }
        atomic_write_json(self.manifest, manifest)
        ckpts = sorted(self.ckpt_dir.glob("step_*.pt"))
        for old in ckpts[: max(0, len(ckpts) - keep)]:
            if old != path:
                old.unlink(missing_ok=True)
        return path

    def load_checkpoint(self, space: SearchSpace) -> dict[str, Any] | None:
        """The latest checkpoint's state, verified (sha256, format, space), or None."""
        m = self.latest()
        if m is None:
            return None
        path = self.ckpt_dir / str(m.get("file"))
        if not path.is_file():
            raise CheckpointError(
                f"checkpoint {path} named by {self.manifest} is missing",
                hint="restore it; the run files were left as they are",
            )
        digest = sha256_file(path)
        if digest != m.get("sha256"):
            raise CheckpointError(
                f"checkpoint {path} is corrupt (sha256 {digest[:12]}... does not match the manifest's "
                f"{str(m.get('sha256'))[:12]}...)",
                hint="restore it from a backup or start a new run; it was not overwritten",
            )
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises many types for a bad zip/pickle
            raise CheckpointError(f"checkpoint {path} cannot be read: {str(e).splitlines()[0][:160]}") from e
        if not isinstance(state, dict) or state.get("format") != CKPT_FORMAT:
            raise CheckpointError(f"{path} is not a dna-zoo supernet checkpoint")
        if state.get("space_identity") != space.identity:
            raise CheckpointError(f"checkpoint {path} was trained on another search space")
        return state

    # --- logs -----------------------------------------------------------------------------
    def append_log(self, row: dict[str, Any]) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "a") as f:
            f.write(json.dumps(row) + "\n")

    def log_rows(self) -> list[dict[str, Any]]:
        if not self.log_file.is_file():
            return []
        rows = []
        for line in self.log_file.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a kill -9
        return rows

    def truncate_log(self, step: int) -> None:
        """Drop log rows after ``step`` (work lost by a crash is redone, and logged once)."""
        if not self.log_file.is_file():
            return
        keep = [r for r in self.log_rows() if int(r.get("step", 0)) <= step]
        atomic_write(self.log_file, lambda f: f.write("".join(json.dumps(r) + "\n" for r in keep)))
