"""Folder moves that never leave a half-written output behind."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def staging_dir(dest: str | os.PathLike[str]) -> Path:
    """A fresh temporary folder beside ``dest`` (same filesystem, so the final move is a rename)."""
    d = Path(dest)
    d.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{d.name}.", dir=d.parent))


def replace_dir(new: Path, dest: Path) -> None:
    """Move ``new`` to ``dest``; an existing ``dest`` is only removed once ``new`` is in place."""
    if dest.exists():
        backup = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old.", dir=dest.parent))
        backup.rmdir()
        os.replace(dest, backup)
        try:
            os.replace(new, dest)
        except OSError:
            os.replace(backup, dest)
            raise
        if backup.is_dir():
            shutil.rmtree(backup, ignore_errors=True)
        else:
            backup.unlink(missing_ok=True)
    else:
        os.replace(new, dest)
