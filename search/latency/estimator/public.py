"""The public on-device measurements shipped in ``dna_zoo/data/public_latency.json``.

Whole-network latencies other people measured (OFA's specialised nets, HELP's FBNet-space
nets; sources and licenses in the file's ``sources``), as :class:`Network` objects and
:class:`Setting` rows (one device at one batch size in one dataset).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from dna_zoo.errors import ConfigError
from dna_zoo.search.latency.estimator.network import Network, fbnet_network

PUBLIC_FORMAT = "dna-zoo-public-latency"
PUBLIC_FILE = "data/public_latency.json"


@dataclass(frozen=True)
class Setting:
    """Latencies of several networks on one device at one batch size."""

    dataset: str
    device: str  # the source's device key (a profile alias)
    batch: int
    batch_stated: bool
    nets: tuple[str, ...]
    ms: tuple[float, ...]

    @property
    def label(self) -> str:
        return f"{self.dataset}:{self.device}@b{self.batch}"


@dataclass(frozen=True)
class PublicData:
    networks: dict[str, Network]
    settings: tuple[Setting, ...]
    sources: dict[str, Any]
    about: str


def _net_ids(spec: Any) -> tuple[str, ...]:
    if isinstance(spec, list):
        return tuple(spec)
    prefix, _, rng = str(spec).rpartition("-")
    lo, hi = (int(x) for x in rng.split(".."))
    return tuple(f"{prefix}-{i}" for i in range(lo, hi + 1))


@lru_cache(maxsize=1)
def public_data() -> PublicData:
    """The shipped public measurements, parsed (every network checked to be expressible)."""
    d = json.loads(resources.files("dna_zoo").joinpath(PUBLIC_FILE).read_text())
    if d.get("format") != PUBLIC_FORMAT:
        raise ConfigError(f"dna_zoo/{PUBLIC_FILE} is not a public-latency file")
    space = d["fbnet_space"]
    nets: dict[str, Network] = {}
    for name, n in d["networks"].items():
        if "fbnet_ops" in n:
            nets[name] = fbnet_network(name, n["fbnet_ops"], space)
        else:
            nets[name] = Network(name, n["input_size"], tuple(tuple(r) for r in n["layers"]))
    settings = tuple(
        Setting(
            m["dataset"],
            m["device"],
            int(m["batch"]),
            bool(m["batch_stated"]),
            _net_ids(m["nets"]),
            tuple(m["ms"]),
        )
        for m in d["measurements"]
    )
    return PublicData(nets, settings, d["sources"], d["about"])
