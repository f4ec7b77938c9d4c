"""Cost models: one interface for params, MACs and latency.

Costs are additive over layers, so a network's cost is the fixed part (stem, first layer,
head) plus one cost per block candidate; the constrained search relies on this. A model is
bound to a search space and an input size when it is made.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from dna_zoo.arch import ArchEncoding, LayerInstance, iter_parts
from dna_zoo.complexity import Cost, head_cost, layer_cost, stem_cost
from dna_zoo.search.space import Candidate, SearchSpace


class CostModel(ABC):
    """``cost(candidate)`` for one block candidate, ``fixed_cost()`` for the rest."""

    name: str = "cost"
    unit: str = ""
    #: True when figures are estimates (e.g. a latency table not measured on the device).
    estimated: bool = False
    #: Where the figures come from, shown next to them (e.g. "measured: onnxruntime 1.32 on ...").
    source: str = "analytic"

    def __init__(
        self, space: SearchSpace, *, input_size: int = 224, in_chans: int = 3, num_classes: int = 1000
    ):
        self.space = space
        self.input_size = input_size
        self.in_chans = in_chans
        self.num_classes = num_classes

    @abstractmethod
    def layer_cost(self, inst: LayerInstance) -> float: ...

    @abstractmethod
    def stem_cost(self) -> float: ...

    @abstractmethod
    def head_cost(self, in_chs: int, in_res: int) -> float: ...

    def cost(self, cand: Candidate) -> float:
        return sum(self.layer_cost(i) for i in self.space.layer_instances(cand, self.input_size))

    def fixed_cost(self) -> float:
        """Stem, the fixed first layer and the head: the part no choice changes."""
        first = LayerInstance(0, 0, self.space.first_layer, self.space.stem_size, (self.input_size + 1) // 2)
        chs, res = self.space.block_input(len(self.space.blocks), self.input_size)
        return self.stem_cost() + self.layer_cost(first) + self.head_cost(chs, res)

    def network_cost(self, enc: ArchEncoding) -> float:
        """Cost of any network (not only those of the space)."""
        total = 0.0
        for part in iter_parts(enc, self.input_size):
            if part.kind == "stem":
                total += self.stem_cost()
            elif part.kind == "head":
                total += self.head_cost(part.in_chs, part.in_res)
            else:
                assert part.inst is not None
                total += self.layer_cost(part.inst)
        return total


class _AnalyticCost(CostModel):
    convention = "conv_linear"

    def _pick(self, c: Cost) -> float:
        raise NotImplementedError

    def layer_cost(self, inst: LayerInstance) -> float:
        return self._pick(layer_cost(inst))

    def stem_cost(self) -> float:
        return self._pick(stem_cost(self.in_chans, self.space.stem_size, self.input_size))

    def head_cost(self, in_chs: int, in_res: int) -> float:
        return self._pick(head_cost(in_chs, self.space.num_features, in_res, self.num_classes))


class ParamsCost(_AnalyticCost):
    name = "params"
    unit = "params"

    def _pick(self, c: Cost) -> float:
        return float(c.params)


class MacsCost(_AnalyticCost):
    name = "macs"
    unit = "MACs"

    def __init__(self, space: SearchSpace, *, convention: str = "conv_linear", **kwargs: int):
        super().__init__(space, **kwargs)
        self.convention = convention
        self.source = f"analytic ({convention})"

    def _pick(self, c: Cost) -> float:
        return float(c.macs_as(self.convention))
