"""Predicting several networks on one device in one call (``dna latency predict a b c``).

Each network is a zoo name, a searched-net / encoding file, or a layer-row network file (the
estimator's own format, see :mod:`dna_zoo.search.latency.estimator.network`). Encodings use the
device's measured table when there is one, else one estimated table made for all of them;
layer-row networks go straight to the estimator. Every estimated result carries an
``estimate`` sub-object: the estimator, its held-out error for the device class, and the
command that measures the device for real.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dna_zoo.arch import ArchEncoding
from dna_zoo.search.latency.estimator.network import Network
from dna_zoo.search.latency.table import TableSpec


def load_network(spec: str) -> ArchEncoding | Network:
    """A zoo name / encoding file as an encoding, a layer-row file (``layers``) as a Network."""
    from dna_zoo.io import read_json
    from dna_zoo.zoo import resolve_arch

    p = Path(spec)
    if p.suffix == ".json" and p.is_file():
        d = read_json(p, what="network file")
        if isinstance(d, dict) and "layers" in d:
            return Network.from_dict(d, name=p.stem)
    return resolve_arch(spec)


def predict_many(
    models: Sequence[str], spec: TableSpec, *, table: str | Path | None = None, force: bool = False
) -> tuple[list[dict[str, Any]], str | None]:
    """One result dict per network (each with ``latency_ms``), and the estimate warning (if any).

    Every network is loaded (and checked) before anything is predicted, so one bad network
    fails the call with its error and nothing else.
    """
    from dna_zoo.search.latency.cost import find_table
    from dna_zoo.search.latency.estimate import (
        estimate_info,
        estimate_network_ms,
        estimate_table,
        estimate_warning,
    )
    from dna_zoo.search.latency.predict import predict

    nets = [(m, load_network(m)) for m in models]
    encs = [n for _, n in nets if isinstance(n, ArchEncoding)]
    found = find_table(spec, force=force, path=table) if encs else None
    if found is None and encs:
        found = estimate_table(None, spec, include_published=False, networks=encs)
    info = estimate_info(spec)
    warning = estimate_warning(spec)
    out: list[dict[str, Any]] = []
    any_estimated = False
    for m, n in nets:
        if isinstance(n, Network):
            ms = estimate_network_ms(n, spec)
            row = {
                "model": n.name or m,
                "latency_ms": round(ms, 4),
                "estimated": True,
                "source": f"estimated from {spec.device}'s specs (layer-row network)",
            }
        else:
            assert found is not None
            row = {"model": n.name or m, **predict(found, n).to_dict()}
        row["warning"] = None
        if row["estimated"]:
            row["estimate"] = info
            row["warning"] = warning
            any_estimated = True
        out.append(
            {
                **row,
                "device": spec.device,
                "runtime": spec.runtime,
                "precision": spec.precision,
                "batch": spec.batch,
                "input_size": spec.input_size,
            }
        )
    return out, (warning if any_estimated else None)
