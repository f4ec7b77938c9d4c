"""The teacher: any timm model with weights, frozen, giving its stage outputs.

:func:`load_teacher` builds a timm model (any timm name, a dna_zoo zoo name, or a
searched-net JSON) with weights from a local file (read safely via ``dna_zoo.weights``)
or timm's pretrained weights (its hub cache), puts it in eval mode with gradients off,
and wraps it in a :class:`Teacher`.

Stage outputs come from ``forward_intermediates(x, indices=..., intermediates_only=True,
extra_blocks=True)`` (``extra_blocks`` gives every stage of timm's EfficientNets, not only
the 5 feature levels; models without it give their feature levels). The stages' channels
and reductions are derived from the model's ``feature_info`` (a stage that
``feature_info`` does not list takes the reduction of the next listed one) and checked
against the real output shapes at the run's input size.

Mapping (:class:`StageMap`): a space's stem + fixed first layer end at reduction 2, and
block ``b`` ends at reduction ``2 x prod(strides[:b+1])``. Block ``b`` imitates teacher
stage ``targets[b]`` and takes stage ``targets[b-1]`` (block 0: ``input``) as its input.
The default map matches the reductions in order, preferring the deepest stage of each
reduction (for EfficientNet-B0..B7 that is the paper's stage i+1 -> block i). Any map
(derived or given with ``stage_map=``) is validated: increasing stages, equal reductions,
equal feature-map resolutions at the input size. An incompatible teacher is one
:class:`~dna_zoo.errors.ConfigError` naming the block and the mismatch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from dna_zoo.arch import conv_out_size
from dna_zoo.errors import ConfigError, WeightsError
from dna_zoo.search.space import SearchSpace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stage:
    """One teacher stage output: its index, channels, nominal reduction, and resolution."""

    index: int
    channels: int
    reduction: int
    resolution: int


@dataclass(frozen=True)
class StageMap:
    """Teacher stage feeding block 0 (``input``) and the stage each block imitates."""

    input: int
    targets: tuple[int, ...]

    @property
    def stages(self) -> tuple[int, ...]:
        """``input`` then ``targets``: stage ``stages[b]`` feeds block ``b``."""
        return (self.input, *self.targets)

    @classmethod
    def parse(cls, text: str | Sequence[int]) -> StageMap:
        """``"0,1,2,3,4,5,6"`` (input stage, then one target stage per block)."""
        try:
            items = [int(s) for s in (text.split(",") if isinstance(text, str) else text)]
        except ValueError as e:
            raise ConfigError(
                f"cannot parse stage map '{text}'", hint="give comma-separated stage indices"
            ) from e
        if len(items) < 2:
            raise ConfigError(f"stage map '{text}' needs the input stage and one stage per block")
        return cls(items[0], tuple(items[1:]))


def space_reductions(space: SearchSpace) -> list[int]:
    """Nominal reductions: after the stem + first layer, then after each block."""
    r = 2 * space.first_layer.stride
    out = [r]
    for spec in space.blocks:
        r *= spec.stride
        out.append(r)
    return out


def space_resolutions(space: SearchSpace, input_size: int) -> list[int]:
    """Feature-map sizes at ``input_size``: after the stem + first layer, then each block."""
    res = conv_out_size(conv_out_size(input_size, 2), space.first_layer.stride)
    out = [res]
    for spec in space.blocks:
        res = conv_out_size(res, spec.stride)
        out.append(res)
    return out


def _feature_levels(model: nn.Module) -> list[dict[str, Any]]:
    info = getattr(model, "feature_info", None)
    if info is None:
        return []
    if hasattr(info, "get_dicts"):
        return list(info.get_dicts())
    return [dict(d) for d in info]


def _stage_of(level: dict[str, Any]) -> int | None:
    if "stage" in level:
        return int(level["stage"])
    return None


class Teacher(nn.Module):
    """A frozen timm model and the map from its stages to a space's blocks.

    ``features(x)`` returns ``len(space.blocks) + 1`` tensors: the input of block 0, then
    the target of each block (each target is also the next block's input).
    """

    def __init__(
        self,
        model: nn.Module,
        space: SearchSpace,
        *,
        input_size: int,
        name: str | None = None,
        stage_map: StageMap | str | Sequence[int] | None = None,
        in_chans: int = 3,
        info: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.name = name or type(model).__name__
        if not hasattr(model, "forward_intermediates"):
            raise ConfigError(
                f"teacher {self.name} has no forward_intermediates",
                hint="use a timm model that supports the feature API (timm >= 1.0)",
            )
        self.model = model.eval().requires_grad_(False)
        self.space = space
        self.input_size = int(input_size)
        self.in_chans = in_chans
        self.info = dict(info or {})
        self._extra_blocks = True
        self.stages = self._probe_stages()
        if stage_map is None:
            self.stage_map = self.derive_map()
        else:
            self.stage_map = stage_map if isinstance(stage_map, StageMap) else StageMap.parse(stage_map)
        self.validate_map(self.stage_map)

    # --- stages ---------------------------------------------------------------------------
    def _intermediates(self, x: torch.Tensor, indices: int | list[int], stop_early: bool = False) -> list:
        kwargs: dict[str, Any] = {"indices": indices, "intermediates_only": True, "stop_early": stop_early}
        if self._extra_blocks:
            try:
                return self.model.forward_intermediates(x, extra_blocks=True, **kwargs)
            except TypeError:
                self._extra_blocks = False
        return self.model.forward_intermediates(x, **kwargs)

    def _probe_stages(self) -> list[Stage]:
        x = torch.zeros(1, self.in_chans, self.input_size, self.input_size)
        with torch.no_grad():
            try:
                outs = self._all_intermediates(x)
            except (RuntimeError, ValueError, IndexError) as e:
                raise ConfigError(
                    f"teacher {self.name} cannot run at {self.input_size}px: {str(e).splitlines()[0][:160]}"
                ) from e
        levels = _feature_levels(self.model)
        # reduction per stage: from feature_info where listed, else the next listed level's
        listed: dict[int, dict[str, Any]] = {}
        for i, level in enumerate(levels):
            st = _stage_of(level)
            listed[st if st is not None and len(outs) != len(levels) else i] = level
        stages = []
        for i, t in enumerate(outs):
            if t.ndim != 4:
                raise ConfigError(
                    f"teacher {self.name} stage {i} is not a feature map (shape {tuple(t.shape)})"
                )
            nxt = [listed[j] for j in sorted(listed) if j >= i]
            if nxt:
                reduction = int(nxt[0]["reduction"])
                if i in listed and int(listed[i]["num_chs"]) != t.shape[1]:
                    raise ConfigError(
                        f"teacher {self.name}: feature_info says stage {i} has {listed[i]['num_chs']} "
                        f"channels, its output has {t.shape[1]}"
                    )
            else:
                reduction = max(1, round(self.input_size / t.shape[-1]))
            stages.append(Stage(i, int(t.shape[1]), reduction, int(t.shape[-1])))
        return stages

    def _all_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        # indices=None is "all levels" for every timm forward_intermediates
        return list(self._intermediates(x, None))  # type: ignore[arg-type]

    def describe_stages(self) -> str:
        return ", ".join(f"{s.index}:{s.channels}ch/r{s.reduction}/{s.resolution}px" for s in self.stages)

    # --- mapping --------------------------------------------------------------------------
    def derive_map(self) -> StageMap:
        """Match the space's reductions to stages in order, deepest stage of each reduction."""
        need = space_reductions(self.space)
        chosen: list[int] = []
        limit = len(self.stages)
        for k in range(len(need) - 1, -1, -1):  # match from the end: take the deepest fitting stage
            found = next((s.index for s in reversed(self.stages[:limit]) if s.reduction == need[k]), None)
            if found is None:
                what = "the input of block 0 (stem + first layer)" if k == 0 else f"block {k - 1}"
                raise ConfigError(
                    f"teacher {self.name} does not fit space '{self.space.name}': no stage at reduction "
                    f"{need[k]} left for {what} (teacher stages: {self.describe_stages()})",
                    hint="pick a teacher with matching stage strides, a space with matching block strides, "
                    "or give --stage-map",
                )
            chosen.append(found)
            limit = found
        chosen.reverse()
        return StageMap(chosen[0], tuple(chosen[1:]))

    def validate_map(self, m: StageMap) -> None:
        nb = len(self.space.blocks)
        if len(m.targets) != nb:
            raise ConfigError(
                f"stage map {m.stages} gives {len(m.targets)} target stages, space '{self.space.name}' "
                f"has {nb} blocks"
            )
        if any(not 0 <= s < len(self.stages) for s in m.stages):
            raise ConfigError(
                f"stage map {m.stages} names stages the teacher {self.name} does not have "
                f"(stages 0..{len(self.stages) - 1})"
            )
        if any(b <= a for a, b in zip(m.stages, m.stages[1:], strict=False)):
            raise ConfigError(f"stage map {m.stages} must name increasing teacher stages")
        need = space_reductions(self.space)
        res = space_resolutions(self.space, self.input_size)
        for k, s in enumerate(m.stages):
            st = self.stages[s]
            what = "the input of block 0" if k == 0 else f"block {k - 1}"
            if st.reduction != need[k] or st.resolution != res[k]:
                raise ConfigError(
                    f"teacher {self.name} does not fit space '{self.space.name}': {what} needs reduction "
                    f"{need[k]} ({res[k]}px at {self.input_size}px input), teacher stage {s} has reduction "
                    f"{st.reduction} ({st.resolution}px)",
                    hint="change the space's block strides, the teacher, or --stage-map",
                )

    @property
    def stage_channels(self) -> list[int]:
        """Channels of stage ``stage_map.stages[b]`` for each b (block inputs, then targets)."""
        return [self.stages[s].channels for s in self.stage_map.stages]

    # --- forward --------------------------------------------------------------------------
    @torch.no_grad()
    def features(self, x: torch.Tensor, *, upto: int | None = None) -> list[torch.Tensor]:
        """The input of block 0 and each block's target, from ONE forward pass.

        ``upto=b`` stops after the stage that block ``b`` imitates (the stage-by-stage scheme
        needs only that much of the teacher) and returns only ``[input of b, target of b]``.
        """
        stages = self.stage_map.stages
        if upto is None:
            outs = self._intermediates(x, list(stages))
            return [o.detach() for o in outs]
        want = [stages[upto], stages[upto + 1]]
        outs = self._intermediates(x, want, stop_early=True)
        return [o.detach() for o in outs]

    def block_input(
        self, x: torch.Tensor, block: int, *, memory_format: torch.memory_format = torch.contiguous_format
    ) -> torch.Tensor:
        """What block ``block`` of a student gets when the teacher runs in front of it (the
        teacher's output of the stage before it), with ``x`` in ``memory_format`` first."""
        return self.features(x.contiguous(memory_format=memory_format), upto=block)[0]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.features(x)

    def identity(self) -> dict[str, Any]:
        """What the run files record about the teacher."""
        return {
            "name": self.name,
            **self.info,
            "input_size": self.input_size,
            "stage_map": list(self.stage_map.stages),
            "stage_channels": self.stage_channels,
            "stages": [[s.index, s.channels, s.reduction, s.resolution] for s in self.stages],
        }


def load_teacher(
    name: str,
    space: SearchSpace,
    *,
    weights: str | Path | None = None,
    pretrained: bool | None = None,
    input_size: int = 32,
    in_chans: int = 3,
    stage_map: StageMap | str | Sequence[int] | None = None,
) -> Teacher:
    """Build the teacher ``name`` with weights and map it onto ``space``.

    ``weights``: a local weights file (safetensors or a legacy checkpoint; the classifier
    size is taken from the file). Without it, timm's pretrained weights are used
    (``pretrained=None`` means "yes"), from its hub cache; a model without weights, or
    weights that cannot be had offline, is a :class:`~dna_zoo.errors.WeightsError`.
    """
    import timm

    from dna_zoo.io import sha256_file
    from dna_zoo.zoo import build_model, resolve_source

    src = resolve_source(name)  # an UnknownNameError with did-you-mean for a name timm lacks
    info: dict[str, Any] = {}
    if weights is not None:
        wp = Path(weights)
        if not wp.is_file():
            raise WeightsError(f"teacher weights file {wp} does not exist")
        model = build_model(src, weights=wp, in_chans=in_chans)
        info = {"weights": str(wp.resolve()), "weights_sha256": sha256_file(wp)[:16]}
    else:
        if pretrained is False:
            raise WeightsError(
                f"teacher {name} needs weights", hint="pass --teacher-weights FILE or use pretrained weights"
            )
        cfg = getattr(timm.models, "get_pretrained_cfg", lambda n: None)(src.timm_name)
        if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
            raise WeightsError(
                f"teacher {name} has no pretrained weights in timm",
                hint="pass --teacher-weights FILE (e.g. from `dna supernet teacher`)",
            )
        try:
            model = timm.create_model(src.timm_name, pretrained=True, in_chans=in_chans)
        except (OSError, RuntimeError, ValueError) as e:
            raise WeightsError(
                f"cannot load pretrained weights for teacher {name}: {str(e).splitlines()[0][:160]}",
                hint="weights come from timm's hub cache; offline, pass --teacher-weights FILE",
            ) from e
        info = {"weights": f"timm-pretrained:{src.timm_name}"}
    return Teacher(
        model, space, input_size=input_size, name=name, stage_map=stage_map, in_chans=in_chans, info=info
    )
