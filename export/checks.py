"""What every format does after writing its file: parity with torch on real images, and timing.

The INT8 verdict lives here too: an INT8 artifact that is slower than the fp32 one of
the same runtime on this machine, or that changes more than 1% of top-1 predictions, is
reported as such (in the manifest, and by the command), never hidden.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from dna_zoo.errors import DnaZooError
from dna_zoo.export.inputs import ImageSet, data_config, image_set
from dna_zoo.export.options import ExportOptions
from dna_zoo.export.parity import MIN_AGREEMENT, parity, time_interleaved
from dna_zoo.export.runners import Runner, torch_runner

log = logging.getLogger(__name__)


class ParityError(DnaZooError, ValueError):
    """An artifact that does not reproduce the torch model within tolerance."""


def parity_images(model: torch.nn.Module, opts: ExportOptions) -> ImageSet:
    """The real images the artifact is checked on (``--data`` folder, or the built-in ones)."""
    return image_set(opts.data, data_config(model, opts.input_size), limit=64)


def torch_reference(model: torch.nn.Module, images: ImageSet, threads: int) -> np.ndarray:
    return torch_runner(model, threads=threads)(images.x)


def check_parity(
    model: torch.nn.Module, runner: Runner, opts: ExportOptions, *, precision: str
) -> dict[str, Any]:
    """Parity figures; an fp32/fp16 artifact outside tolerance is a :class:`ParityError`."""
    images = parity_images(model, opts)
    ref = torch_reference(model, images, opts.threads)
    result = parity(ref, runner, images, precision=precision, tolerance=opts.tolerance)
    log.info("parity %s: %s", runner.name, result)
    if precision != "int8" and not result["passed"]:
        raise ParityError(
            f"{runner.name} disagrees with torch: max abs diff {result['max_abs_diff']:.2e} "
            f"(rule {result['rule']}) on {result['n_images']} real images "
            f"(top-1 agreement {result['top1_agreement']:.1%})",
            hint="nothing was written; pass a larger --tolerance only if you accept this difference",
        )
    return result


def measure(runners: dict[str, Runner], batch: int, cfg_input: tuple[int, ...] | list[int]) -> dict[str, Any]:
    """Interleaved latency of the artifact (the first runner) and its baselines on one batch
    (random data); ``"artifact"`` names the artifact's own runner."""
    x = np.random.default_rng(0).standard_normal((batch, *cfg_input)).astype(np.float32)
    timings = time_interleaved(runners, x, rounds=4, runs=8, warmup=3)
    return {
        "note": "measured at export, interleaved with the baselines, warm-up excluded",
        "artifact": next(iter(runners)),
        **timings,
    }


def reduced_precision_verdict(
    latency: dict[str, Any],
    reduced_name: str,
    fp32_name: str,
    parity_result: dict[str, Any],
    *,
    kind: str = "INT8",
) -> dict[str, Any]:
    """Is this reduced-precision (INT8, bf16) artifact worth having on this machine? Speed
    and agreement, measured."""
    out: dict[str, Any] = {"baseline": fp32_name, "min_top1_agreement": MIN_AGREEMENT}
    agreement = parity_result["top1_agreement"]
    out["top1_agreement"] = agreement
    out["accuracy_ok"] = agreement >= MIN_AGREEMENT
    problems = []
    if reduced_name in latency and fp32_name in latency:
        t8, t32 = latency[reduced_name]["median_ms"], latency[fp32_name]["median_ms"]
        out.update(latency_ms=t8, baseline_latency_ms=t32, speedup=t32 / t8, faster_than_fp32=t8 < t32)
        if t8 >= t32:
            problems.append(f"SLOWER than {fp32_name} on this machine ({t8:.2f} vs {t32:.2f} ms)")
    else:
        out.update(speedup=None, faster_than_fp32=None)
    if not out["accuracy_ok"]:
        problems.append(f"top-1 agreement {agreement:.1%} < {MIN_AGREEMENT:.0%}")
    out["ok"] = not problems and out["faster_than_fp32"] is not False
    out["verdict"] = "; ".join(problems) if problems else "faster than fp32 with top-1 agreement kept"
    if problems:
        out["recommendation"] = (
            f"keep the fp32 artifact for this runtime, or compare the {kind} paths on this machine: "
            "`dna benchmark MODEL --formats onnx,onnx-int8,openvino,openvino-bf16,openvino-int8`"
        )
        log.warning("%s artifact: %s", kind, out["verdict"])
    return out
