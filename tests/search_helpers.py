"""Ratings files for the search tests.

The losses are made up (a smooth function of the ops plus seeded noise): they are input data
for the solver, not a result being faked. Real ratings come from `dna supernet rate`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dna_zoo.search.ratings import Ratings
from dna_zoo.search.space import SearchSpace, get_space


def synthetic_ratings(space: SearchSpace | str = "small", *, seed: int = 0, input_size: int = 32) -> Ratings:
    sp = get_space(space) if isinstance(space, str) else space
    rng = np.random.default_rng(seed)
    losses = {}
    for b in range(len(sp.blocks)):
        for c in sp.block_candidates(b):
            bigger = sum(1.0 / (op.expansion * op.kernel) for op in c.ops) / len(c.ops)
            losses[c.key] = float(bigger + 0.3 / len(c.ops) + rng.normal(0, 0.02))
    return Ratings(sp, losses, input_size=input_size, data={"name": "synthetic-for-tests"})


def write_ratings(path: Path, space: str = "small", **kw) -> Path:
    return synthetic_ratings(space, **kw).save(path)
