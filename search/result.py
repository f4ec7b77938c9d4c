"""The search result file (``best.json``): the chosen network and everything said about it.

The encoding sits under the key ``"arch"``, so the file itself is accepted wherever an
architecture is: :func:`dna_zoo.arch.load_encoding`, ``timm.create_model("dna_net",
arch="best.json")``, ``dna info``, ``dna export``, ``dna hub push``. Next to it: the timm
``arch_def``, the chosen candidate per block, the rating, each cost with its unit and
source (measured or estimated), params and MACs with their convention, the budgets,
the space identity, the Pareto front, and DNA-a..d costed by the same models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dna_zoo.arch import ArchEncoding
from dna_zoo.errors import ConfigError, FileFormatError

RESULT_FORMAT = "dna-zoo-search-result"
RESULT_VERSION = 1


@dataclass(frozen=True)
class CostFigure:
    """One cost of the chosen network, with where it comes from and its budget."""

    name: str
    value: float
    unit: str
    source: str
    estimated: bool = False
    budget: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = {
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "source": self.source,
            "estimated": self.estimated,
            "budget": self.budget,
        }
        if self.details:
            d["details"] = self.details
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CostFigure:
        return cls(
            name=str(d["name"]),
            value=float(d["value"]),
            unit=str(d.get("unit", "")),
            source=str(d.get("source", "")),
            estimated=bool(d.get("estimated", False)),
            budget=None if d.get("budget") is None else float(d["budget"]),
            details=dict(d.get("details", {})),
        )


@dataclass(frozen=True)
class FrontPoint:
    """A Pareto-optimal network: its costs (by cost name), rating and candidate keys."""

    costs: dict[str, float]
    rating: float
    candidates: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"costs": self.costs, "rating": self.rating, "candidates": list(self.candidates)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FrontPoint:
        return cls(
            {str(k): float(v) for k, v in d["costs"].items()},
            float(d["rating"]),
            tuple(d["candidates"]),
        )


@dataclass(frozen=True)
class Reference:
    """A published network (DNA-a..d) costed by the same models; rated only if in the space."""

    name: str
    costs: dict[str, float | None]
    rating: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "costs": self.costs, "rating": self.rating}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Reference:
        return cls(
            str(d["name"]),
            {str(k): (None if v is None else float(v)) for k, v in d["costs"].items()},
            None if d.get("rating") is None else float(d["rating"]),
        )


@dataclass(frozen=True)
class SearchResult:
    arch: ArchEncoding
    candidates: tuple[str, ...]
    rating: float
    costs: tuple[CostFigure, ...]
    params: int
    macs: dict[str, int]
    input_size: int
    num_classes: int
    space: dict[str, Any]
    ratings: dict[str, Any]
    front_axis: str
    front: tuple[FrontPoint, ...] = ()
    references: tuple[Reference, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    def cost(self, name: str) -> CostFigure:
        for c in self.costs:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def latency(self) -> CostFigure | None:
        return next((c for c in self.costs if c.name == "latency"), None)

    def to_dict(self) -> dict[str, Any]:
        lat = self.latency
        return {
            "format": RESULT_FORMAT,
            "version": RESULT_VERSION,
            "arch": self.arch.to_dict(),
            "arch_def": self.arch.to_arch_def(),
            "candidates": list(self.candidates),
            "rating": self.rating,
            "predicted_latency": None
            if lat is None
            else {
                "ms": lat.value,
                "source": lat.source,
                "estimated": lat.estimated,
                **lat.details,
            },
            "params": self.params,
            "macs": self.macs,
            "mac_convention": "conv_linear = multiply-adds of convolutions and linear layers; "
            "all = conv_linear plus one per BatchNorm/activation output element",
            "input_size": self.input_size,
            "num_classes": self.num_classes,
            "costs": [c.to_dict() for c in self.costs],
            "budgets": {c.name: c.budget for c in self.costs if c.budget is not None},
            "space": self.space,
            "ratings": self.ratings,
            "front_axis": self.front_axis,
            "front": [p.to_dict() for p in self.front],
            "references": [r.to_dict() for r in self.references],
            "meta": self.meta,
        }

    def save(self, path: str | Path) -> Path:
        """Atomic write (temp file + rename): an existing file is replaced whole or not at all."""
        from dna_zoo.io import atomic_write_json

        p = Path(path)
        atomic_write_json(p, self.to_dict())
        return p

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, origin: str = "the file") -> SearchResult:
        from dna_zoo.io import check_format

        check_format(
            d, origin=origin, what="dna-zoo search result", format=RESULT_FORMAT, version=RESULT_VERSION,
            redo="run the search again with `dna search` (ratings files are reused)",
        )  # fmt: skip
        try:
            return cls(
                arch=ArchEncoding.from_dict(d["arch"]),
                candidates=tuple(d["candidates"]),
                rating=float(d["rating"]),
                costs=tuple(CostFigure.from_dict(c) for c in d["costs"]),
                params=int(d["params"]),
                macs={str(k): int(v) for k, v in d["macs"].items()},
                input_size=int(d["input_size"]),
                num_classes=int(d["num_classes"]),
                space=dict(d["space"]),
                ratings=_portable_ratings(dict(d.get("ratings", {}))),
                front_axis=str(d["front_axis"]),
                front=tuple(FrontPoint.from_dict(p) for p in d.get("front", [])),
                references=tuple(Reference.from_dict(r) for r in d.get("references", [])),
                meta=dict(d.get("meta", {})),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"invalid search result: {e}") from e

    @classmethod
    def load(cls, path: str | Path) -> SearchResult:
        from dna_zoo.io import read_json

        p = Path(path)
        d = read_json(p, what="search result", hint="run `dna search` first")
        try:
            return cls.from_dict(d, origin=str(p))
        except FileFormatError:
            raise
        except ConfigError as e:
            raise ConfigError(f"{p}: {e.message}", hint=e.hint) from e


def _portable_ratings(ratings: dict[str, Any]) -> dict[str, Any]:
    """A result's ratings summary without local paths (version-1 files written before the
    summary was portable stored the ratings path and the teacher's weights path)."""
    from dna_zoo.search.ratings import portable_data, portable_teacher

    out = dict(ratings)
    path = out.pop("path", None)
    if "file" not in out:
        out["file"] = None if path is None else Path(str(path)).name
    out["teacher"] = portable_teacher(dict(out.get("teacher") or {}))
    out["data"] = portable_data(dict(out.get("data") or {}))
    return out


def zoo_fits(result: SearchResult) -> list[str]:
    """The published DNA models within every budget of the search, by the same cost models."""
    budgets = {c.name: c.budget for c in result.costs if c.budget is not None}
    fits = []
    for ref in result.references:
        values = [ref.costs.get(name) for name in budgets]
        if all(v is not None and v <= budgets[name] for v, name in zip(values, budgets, strict=True)):
            fits.append(ref.name)
    return fits
