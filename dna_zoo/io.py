"""File I/O every layer shares: atomic writes, JSON reads with one clear error, sha256, folder swaps.

A reader never sees half a file: everything is written to a temporary file in the destination
folder (same filesystem) and renamed into place; a failure leaves the old file as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from dna_zoo.errors import ConfigError, FileFormatError

__all__ = [
    "atomic_save",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "check_format",
    "read_json",
    "replace_dir",
    "sha256_file",
    "staging_dir",
]


def atomic_save(path: str | os.PathLike[str], save: Callable[[str], Any], *, suffix: str = ".tmp") -> Path:
    """Call ``save(tmp_name)`` (anything that writes a file by name), then rename it to ``path``.

    ``suffix`` keeps the extension for writers that choose a format by name (``.png``, ``.onnx``).
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=suffix, dir=p.parent)
    os.close(fd)
    try:
        save(tmp)
        os.replace(tmp, p)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return p


def atomic_write(
    path: str | os.PathLike[str], write: Callable[[IO[Any]], Any], *, binary: bool = False
) -> Path:
    """Write ``path`` through ``write(file)`` into a temp file, fsync, then rename."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data), binary=True)


def atomic_write_json(path: str | os.PathLike[str], obj: Any, *, indent: int = 1) -> Path:
    def write(f: IO[str]) -> None:
        json.dump(obj, f, indent=indent, default=str)
        f.write("\n")

    return atomic_write(path, write)


def read_json(path: str | os.PathLike[str], *, what: str, hint: str | None = None) -> Any:
    """A JSON file, or one :class:`ConfigError`: missing (with ``hint``) or unreadable."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what} {p} does not exist", hint=hint)
    try:
        return json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{p} is not a valid {what}: {e}") from e


def check_format(
    data: Any,
    *,
    origin: str,
    what: str,
    format: str,
    version: int,
    redo: str,
    key: str = "format",
    version_key: str = "version",
    readable: tuple[int, ...] = (),
) -> int:
    """The version of a versioned dna-zoo file, or one :class:`FileFormatError` saying how to redo it.

    ``data`` must be a dict whose ``key`` is ``format`` and whose ``version_key`` is ``version``
    or one of the older ``readable`` versions (which the caller then upgrades on reading).
    """
    if not isinstance(data, dict) or data.get(key) != format:
        raise FileFormatError(f"{origin} is not a {what}", hint=redo)
    found = data.get(version_key)
    if found != version and found not in readable:
        newer = isinstance(found, int) and found > version
        raise FileFormatError(
            f"{origin} is a {what} of version {found}; this dna-zoo reads version "
            + (f"{version}" if not readable else f"{version} (and {', '.join(map(str, readable))})"),
            hint=("upgrade dna-zoo, or " if newer else "") + redo,
        )
    return int(found)


def new_run_dir(root: str | os.PathLike[str], prefix: str) -> Path:
    """``root/<prefix>-N`` for the first N not taken (not created here)."""
    n = 1
    while (Path(root) / f"{prefix}-{n}").exists():
        n += 1
    return Path(root) / f"{prefix}-{n}"


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def staging_dir(dest: str | os.PathLike[str]) -> Path:
    """A fresh temporary folder beside ``dest`` (same filesystem, so the final move is a rename)."""
    d = Path(dest)
    d.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{d.name}.", dir=d.parent))


def replace_dir(new: Path, dest: Path) -> None:
    """Move ``new`` to ``dest``; an existing ``dest`` is only removed once ``new`` is in place."""
    if not dest.exists():
        os.replace(new, dest)
        return
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
