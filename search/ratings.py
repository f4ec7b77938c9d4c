"""The ratings file: every candidate of every block with its loss to the teacher.

Written by ``dna supernet rate``, read by ``dna search``. It records the space it rates
(and the space's identity hash), the teacher, the data, the input size and the loss
normalisation, so a search can refuse ratings that do not match its inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dna_zoo.errors import ConfigError
from dna_zoo.search.space import Candidate, SearchSpace

RATINGS_FORMAT = "dna-zoo-ratings"
RATINGS_VERSION = 1


@dataclass
class Ratings:
    space: SearchSpace
    #: candidate key -> loss (lower is better), after ``normalization``
    losses: dict[str, float]
    normalization: str = "teacher_var"
    input_size: int = 224
    teacher: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def loss(self, cand: Candidate) -> float:
        try:
            return self.losses[cand.key]
        except KeyError:
            raise ConfigError(
                f"candidate {cand.key} has no rating", hint="rate the whole space first"
            ) from None

    def block(self, block: int) -> list[tuple[Candidate, float]]:
        return [(c, self.loss(c)) for c in self.space.block_candidates(block)]

    def missing(self) -> list[str]:
        return [
            c.key
            for b in range(len(self.space.blocks))
            for c in self.space.block_candidates(b)
            if c.key not in self.losses
        ]

    def summary(self, path: str | Path | None = None) -> dict[str, Any]:
        """What a search result records about these ratings: portable, no local paths
        (the teacher by name and weights sha256, the data by kind and digest)."""
        return {
            "file": None if path is None else Path(path).name,
            "normalization": self.normalization,
            "input_size": self.input_size,
            "teacher": portable_teacher(self.teacher),
            "data": portable_data(self.data),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": RATINGS_FORMAT,
            "version": RATINGS_VERSION,
            "space": self.space.to_dict(),
            "space_identity": self.space.identity,
            "normalization": self.normalization,
            "input_size": self.input_size,
            "teacher": self.teacher,
            "data": self.data,
            "meta": self.meta,
            "losses": self.losses,
        }

    def save(self, path: str | Path) -> Path:
        """Atomic write: a reader never sees half a file."""
        from dna_zoo.io import atomic_write_json

        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> Ratings:
        from dna_zoo.io import check_format, read_json

        p = Path(path)
        d = read_json(p, what="ratings file", hint="run `dna supernet rate` first")
        check_format(
            d, origin=str(p), what="dna-zoo ratings file", format=RATINGS_FORMAT, version=RATINGS_VERSION,
            redo="rate the supernet again with `dna supernet rate`",
        )  # fmt: skip
        space = SearchSpace.from_dict(d["space"])
        if d.get("space_identity") != space.identity:
            raise ConfigError(f"{p} is inconsistent: its space does not match its recorded identity")
        return cls(
            space=space,
            losses={str(k): float(v) for k, v in d["losses"].items()},
            normalization=d.get("normalization", "none"),
            input_size=int(d.get("input_size", 224)),
            teacher=d.get("teacher", {}),
            data=d.get("data", {}),
            meta=d.get("meta", {}),
        )


def portable_teacher(teacher: dict[str, Any]) -> dict[str, Any]:
    """A teacher identity without local paths: its name, weights sha256, stage map."""
    out = {k: v for k, v in teacher.items() if k not in ("weights", "path")}
    weights = teacher.get("weights")
    if isinstance(weights, str) and weights.startswith("timm-pretrained:"):
        out["weights"] = weights  # a timm tag, not a path
    return out


def portable_data(data: dict[str, Any]) -> dict[str, Any]:
    """A data identity without local paths (an image folder is named by its folder name)."""
    out = dict(data)
    if isinstance(out.get("path"), str):
        out["path"] = Path(out["path"]).name
    return out
