"""Where latency tables live:
``$DNA_ZOO_CACHE/latency/<device>/<runtime>-<precision>-b<batch>-r<size>-t<threads>.json``.

``DNA_ZOO_CACHE`` (tests point it at a temporary folder) or else the user's cache folder
(``$XDG_CACHE_HOME/dna-zoo``, default ``~/.cache/dna-zoo``). A build in progress writes
``<name>.partial.json`` beside the table; only a finished build writes ``<name>.json``.
"""

from __future__ import annotations

import os
from pathlib import Path

from dna_zoo.search.latency.table import TableSpec

PARTIAL_SUFFIX = ".partial.json"


def cache_root() -> Path:
    env = os.environ.get("DNA_ZOO_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "dna-zoo"


def latency_dir(cache_dir: str | Path | None = None) -> Path:
    return (Path(cache_dir) if cache_dir else cache_root()) / "latency"


def complete_path(spec: TableSpec, cache_dir: str | Path | None = None) -> Path:
    return latency_dir(cache_dir) / spec.device / f"{spec.slug}.json"


def partial_path(final: Path) -> Path:
    """The resumable partial file of a table path (never read as a complete table)."""
    name = final.name[: -len(".json")] if final.name.endswith(".json") else final.name
    return final.with_name(name + PARTIAL_SUFFIX)


def cached_tables(cache_dir: str | Path | None = None) -> list[Path]:
    """Complete tables in the cache (partial files are not listed)."""
    root = latency_dir(cache_dir)
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("*/*.json") if not p.name.endswith(PARTIAL_SUFFIX))
