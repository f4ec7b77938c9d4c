"""Model cards (README.md of a Hub repo), written with huggingface_hub's ModelCard.

A card holds YAML metadata (library_name timm, tags, license, datasets, metrics) and says:
what the network is, its params and MACs (with the MAC convention), latency per
device/runtime/precision with where each figure comes from (measured or estimated), the
export artifacts in the repo with their parity figures, and how to use it. Cards contain
no dates or machine details, so pushing the same model twice gives the same card.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dna_zoo.arch import ArchEncoding
from dna_zoo.complexity import Cost

MAC_CONVENTION_NOTE = (
    "MACs count multiply-adds of convolutions and linear layers (*conv+linear*, what "
    "`torch.utils.flop_counter` counts, halved); *all* adds one per BatchNorm and activation "
    "output element, as the DNA paper counted."
)


@dataclass(frozen=True)
class Latency:
    """One latency figure: where it was taken and whether it was measured or estimated."""

    device: str
    runtime: str
    precision: str
    ms: float
    source: str  # "measured" or "estimated" (e.g. from a latency table)
    batch: int = 1
    note: str = ""
    input_size: int | None = None  # the resolution the figure is for (it may differ from training's)

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "runtime": self.runtime,
            "precision": self.precision,
            "ms": self.ms,
            "source": self.source,
            "batch": self.batch,
            **({"input_size": self.input_size} if self.input_size else {}),
            **({"note": self.note} if self.note else {}),
        }


def estimate_note(est: Any) -> str:
    """What an estimate's ``estimate`` sub-object says: held-out error and how to measure."""
    if not isinstance(est, dict):
        return ""
    h = est.get("held_out_error") or {}
    parts = [str(est.get("estimator", "estimated"))]
    if h.get("mean_abs_pct_error") is not None:
        parts.append(
            f"held-out error on unseen {est.get('device_class')} devices: mean {h['mean_abs_pct_error']}%"
        )
    if est.get("measure_command"):
        parts.append(f"measure: `{est['measure_command']}`")
    return "; ".join(parts)


@dataclass(frozen=True)
class CardInfo:
    """Everything a card says; built by :mod:`dna_zoo.hub.push`."""

    repo_id: str
    title: str
    arch: ArchEncoding
    architecture: str  # timm entry point: dna_b or dna_net
    searched: bool
    num_classes: int
    input_size: int
    params: int
    cost: Cost
    license: str
    datasets: tuple[str, ...] = ()
    accuracy: dict[str, Any] | None = None  # {"top1": 77.5, "dataset": ..., "source": ...}
    latency: tuple[Latency, ...] = ()
    artifacts: tuple[
        dict[str, Any], ...
    ] = ()  # {"path": repo path, "manifest": ArtifactManifest, "size": bytes}
    registered_name: str | None = None  # zoo name whose default hf_hub_id is this repo
    #: a searched net: the objective that chose it and its predicted top-1 at search time
    chosen_by: str | None = None
    predicted: str | None = None


def card_data(info: CardInfo):
    """The card's YAML metadata as huggingface_hub's ``ModelCardData``."""
    from huggingface_hub import ModelCardData

    tags = ["image-classification", "timm", "dna-zoo", "dna", "efficientnet"]
    if info.searched:
        tags.append("neural-architecture-search")
    formats = sorted({a["manifest"].format.lower() for a in info.artifacts})
    tags += [f for f in formats if f not in tags]
    return ModelCardData(
        library_name="timm",
        pipeline_tag="image-classification",
        license=info.license,
        tags=tags,
        datasets=list(info.datasets) or None,
        metrics=["accuracy"] if info.accuracy else None,
    )


def build_card(info: CardInfo):
    """A huggingface_hub ``ModelCard`` for a DNA-family model."""
    from huggingface_hub import ModelCard

    data = card_data(info)
    body = "\n".join(_sections(info))
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}\n")


def _sections(info: CardInfo) -> list[str]:
    out = [f"# {info.title}", ""]
    if info.searched:
        out += [
            "A network found by DNA (*Block-wisely Supervised Neural Architecture Search with Knowledge "
            "Distillation*, Li et al., CVPR 2020, arXiv:1911.13053), published with dna-zoo. It is timm's "
            "own `EfficientNet` built from the architecture strings below; `config.json` holds the "
            "architecture encoding in `model_args`, so timm rebuilds it through the `dna_net` entry point.",
        ]
    else:
        out += [
            f"`{info.architecture}` from *Block-wisely Supervised Neural Architecture Search with Knowledge "
            "Distillation* (DNA, Li et al., CVPR 2020, arXiv:1911.13053), as a timm model (timm's own "
            "`EfficientNet` built from architecture strings).",
        ]
    out += ["", "## Model details", ""]
    out += [
        "| | |",
        "|---|---|",
        f"| timm architecture | `{info.architecture}` |",
        f"| classes | {info.num_classes} |",
        f"| input size | 3x{info.input_size}x{info.input_size} |",
        f"| params | {info.params:,} ({info.params / 1e6:.2f}M) |",
        *(
            f"| MACs, {label} | {info.cost.macs_as(conv):,} ({info.cost.macs_as(conv) / 1e6:.0f}M) |"
            for label, conv in (("conv+linear", "conv_linear"), ("all", "all"))
        ),
    ]
    if info.chosen_by:
        out.append(f"| chosen by | DNA search, objective {info.chosen_by} |")
    if info.predicted:
        out.append(f"| predicted top-1 at search | {info.predicted} |")
    if info.accuracy:
        acc = info.accuracy
        out.append(
            f"| top-1 accuracy | {acc['top1']}% on {acc.get('dataset', 'the evaluation set')} "
            f"({acc.get('source', 'as reported')}) |"
        )
    out += [
        "",
        f"MACs are counted at {info.input_size}x{info.input_size}, batch 1. {MAC_CONVENTION_NOTE}",
        "",
    ]
    out += ["Architecture (timm `arch_def`, one line per stage):", "", "```"]
    out += [" ".join(stage) for stage in info.arch.to_arch_def()]
    out += ["```", ""]
    out += _latency_section(info.latency)
    out += _artifact_section(info)
    out += _usage_section(info)
    return out


def _latency_section(latency: tuple[Latency, ...]) -> list[str]:
    if not latency:
        return []
    out = ["## Latency", ""]
    out += [
        "| device | runtime | precision | batch | input | latency (ms) | source |",
        "|---|---|---|---|---|---|---|",
    ]
    for lat in latency:
        note = f" ({lat.note})" if lat.note else ""
        size = f"{lat.input_size}x{lat.input_size}" if lat.input_size else "?"
        out.append(
            f"| {lat.device} | {lat.runtime} | {lat.precision} | {lat.batch} | {size} | {lat.ms:.2f} "
            f"| {lat.source}{note} |"
        )
    out += [
        "",
        "*measured*: timed on the device; *estimated*: predicted, e.g. summed from a per-layer "
        "latency table.",
        "",
    ]
    return out


def _fmt_parity(parity: dict[str, Any]) -> str:
    if not parity:
        return "not checked"
    parts = []
    if "max_abs_diff" in parity:
        parts.append(f"max abs diff {float(parity['max_abs_diff']):.2g}")
    if "top1_agreement" in parity:
        parts.append(f"top-1 agreement {100 * float(parity['top1_agreement']):.1f}%")
    if "n_images" in parity:
        parts.append(f"on {parity['n_images']} real images")
    if "passed" in parity:
        parts.append("passed" if parity["passed"] else "FAILED")
    return ", ".join(parts) or "see manifest"


def _artifact_section(info: CardInfo) -> list[str]:
    if not info.artifacts:
        return []
    out = ["## Export artifacts", ""]
    out += [
        "Each artifact has a `.manifest.json` beside it (sha256, versions, shapes, parity against torch). "
        "TensorRT engines are keyed by TensorRT version and GPU: an engine only runs where it was built.",
        "",
        "| file | format | precision | size | parity vs torch | latency at export | built for |",
        "|---|---|---|---|---|---|---|",
    ]
    for art in info.artifacts:
        m = art["manifest"]
        trt = m.trt or {}
        built = f"TensorRT {trt.get('version')}, {trt.get('gpu')}" if trt else "any"
        t = m.own_timing
        lat = (
            f"{t.median_ms:.2f} ms ({t.runner}, batch {t.batch}, measured)"
            if t is not None
            else "not measured"
        )
        out.append(
            f"| `{art['path']}` | {m.format} | {m.precision} | {art['size'] / 1e6:.1f} MB | "
            f"{_fmt_parity(m.parity)} | {lat} | {built} |"
        )
    out.append("")
    return out


def _usage_section(info: CardInfo) -> list[str]:
    out = [
        "## Usage",
        "",
        "```python",
        "import timm",
        "import dna_zoo  # registers the DNA family with timm",
        "",
    ]
    if info.registered_name:
        out.append(f'model = timm.create_model("{info.registered_name}", pretrained=True).eval()')
        out.append(f'# or: timm.create_model("hf-hub:{info.repo_id}", pretrained=True)')
    else:
        out.append(f'model = timm.create_model("hf-hub:{info.repo_id}", pretrained=True).eval()')
    out += [
        "cfg = timm.data.resolve_data_config({}, model=model)",
        "transform = timm.data.create_transform(**cfg)",
        "```",
        "",
    ]
    if info.artifacts:
        formats = sorted(
            {"trt" if a["path"].startswith("trt/") else a["path"].split("/")[0] for a in info.artifacts}
        )
        out += ["Artifacts:", "", "```bash"]
        out += [f"dna hub pull {info.repo_id} --artifact {f}" for f in formats]
        out += ["```", ""]
    return out
