"""Within-band Kendall tau of every method, pooled over several ranking_decisions runs.

One run of ``ranking_decisions.py`` (42 nets, three latency bands) measures a method's mean
within-band tau with a 95% interval about +-0.2 wide, too wide to tell the best ratings from
MACs. Runs on different bench spaces are independent samples of the same question ("does the
method order nets of about the same latency better than MACs?"), so this bench pools their
bands: the mean within-band tau over every band of every run, and its paired difference to
MACs, with a bootstrap that resamples nets within each band of each run (2,000 resamples).
It reads the runs' committed results (``bench/results/ranking_decisions*.json``), nothing else.

It also sets each run's noise ratio (between-net sd of the ground truth over one training's
seed sd) beside the issue's reference design, ``ranking_tau.py``'s committed run (15 nets, two
seeds each: between 0.91, seed 0.17), whose ratio is itself an estimate from 15 nets: each
ratio's 95% interval and the run-to-reference quotient's, resampling both independently.

    .venv/bin/python bench/ranking_pooled.py        # the committed runs
    .venv/bin/python bench/ranking_pooled.py A.json B.json --out bench/results/ranking_pooled.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ranking_decisions_analysis import ci95, noise_ratio_draws, pooled_seed_sd, read_results, tau_b
from ranking_tau import RESULTS

#: the committed runs of the three bench spaces (the first space's with its third and fourth seeds:
#: same nets, better ground truth)
RUNS = tuple(
    RESULTS / f"ranking_decisions{name}.json" for name in ("-seeds4", "-narrow-fmnist32", "-wide-fmnist32")
)
BASE = "macs"
#: the issue's reference design for the noise ratio (ranking_tau.py's committed run)
REFERENCE = RESULTS / "ranking_tau.json"


def load_bands(runs: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, np.ndarray]]]:
    """The methods every run has, and per band of every run: the ground truth ('acc') and each
    method's score (higher is better, as the results store them)."""
    methods = sorted(set.intersection(*(set(r["figures"]) for r in runs)))
    bands = []
    for r in runs:
        for b in sorted({n["band"] for n in r["networks"]}):
            nets = [n for n in r["networks"] if n["band"] == b]
            band = {"acc": np.array([n["acc_mean"] for n in nets])}
            band.update({m: np.array([n[f"score_{m}"] for n in nets], dtype=float) for m in methods})
            bands.append(band)
    return methods, bands


def mean_within(bands: list[dict[str, np.ndarray]], method: str, picks: list[np.ndarray]) -> float:
    return float(np.mean([tau_b(b[method][i], b["acc"][i]) for b, i in zip(bands, picks, strict=True)]))


def pooled(
    methods: list[str], bands: list[dict[str, np.ndarray]], resamples: int, seed: int
) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    every = [np.arange(len(b["acc"])) for b in bands]
    draws = [[rng.choice(len(b["acc"]), size=len(b["acc"])) for b in bands] for _ in range(resamples)]
    boot = {m: np.array([mean_within(bands, m, d) for d in draws]) for m in methods}
    out, base = {}, mean_within(bands, BASE, every)
    for m in methods:
        point, diff = mean_within(bands, m, every), boot[m] - boot[BASE]
        out[m] = {
            "tau_within_bands": point,
            "ci95": ci95(boot[m]),
            f"vs_{BASE}": {
                "difference": point - base,
                "ci95": ci95(diff),
                "share_better": float(np.mean(diff > 0)),
            },
        }
    return out


def noise_ratio(acc: list[list[float]], resamples: int, seed: int) -> tuple[float, np.ndarray]:
    """Between-net sd of the seed means over the pooled seed sd, and its bootstrap draws (as
    the analysis' noise floor draws them)."""
    groups = [np.array(a, dtype=float) for a in acc if len(a) >= 2]
    y = np.array([np.mean(a) for a in acc])
    draws = noise_ratio_draws(groups, y, resamples, np.random.default_rng(seed))
    return float(np.std(y, ddof=1) / pooled_seed_sd(groups)), draws


def noise_vs_reference(
    ap: argparse.ArgumentParser, runs: dict[str, dict[str, Any]], resamples: int
) -> dict[str, Any]:
    """Each run's noise ratio against the reference design's, with 95% intervals."""
    try:
        ref = json.loads(REFERENCE.read_text())
        ref_acc = [n["acc"] for n in ref["networks"]]
    except (OSError, ValueError, KeyError, TypeError):
        ap.error(
            f"{REFERENCE.name} (ranking_tau.py's committed results, the noise reference) is missing or broken"
        )
    point, draws = noise_ratio(ref_acc, resamples, seed=1)
    out: dict[str, Any] = {
        "reference": {"file": REFERENCE.name, "networks": len(ref_acc), "ratio": point, "ci95": ci95(draws)},
        "runs": {},
    }
    for k, (name, r) in enumerate(runs.items()):
        mine, mdraws = noise_ratio([n["acc"] for n in r["networks"]], resamples, seed=2 + k)
        q = mdraws / draws
        out["runs"][name] = {
            "networks": len(r["networks"]),
            "ratio": mine,
            "ci95": ci95(mdraws),
            "ratio_to_reference": mine / point,
            "ratio_to_reference_ci95": ci95(q),
            "share_at_or_above_reference": float(np.mean(q >= 1)),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="*", type=Path, default=list(RUNS), help="ranking_decisions results")
    ap.add_argument("--out", type=Path, default=RESULTS / "ranking_pooled.json")
    ap.add_argument("--resamples", type=int, default=2000)
    args = ap.parse_args()
    runs = {p.name: read_results(ap, p) for p in args.runs}
    methods, bands = load_bands(list(runs.values()))
    figs = pooled(methods, bands, args.resamples, seed=0)
    noise = noise_vs_reference(ap, runs, args.resamples)
    result = {
        "bench": "ranking_pooled",
        "runs": [p.name for p in args.runs],
        "bands": len(bands),
        "networks": int(sum(len(b["acc"]) for b in bands)),
        "figures": figs,
        "noise_vs_reference": noise,
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{result['networks']} nets in {len(bands)} bands of {len(args.runs)} runs; mean within-band tau:")
    for m, f in sorted(figs.items(), key=lambda kv: -kv[1]["tau_within_bands"]):
        d = f[f"vs_{BASE}"]
        print(
            f"  {m:22s} {f['tau_within_bands']:.3f} [{f['ci95'][0]:.3f}, {f['ci95'][1]:.3f}]"
            f"  vs {BASE} {d['difference']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"
        )
    ref = noise["reference"]
    print(
        f"noise ratio (between-net sd / seed sd): reference {ref['file']} ({ref['networks']} nets) "
        f"{ref['ratio']:.2f} [{ref['ci95'][0]:.2f}, {ref['ci95'][1]:.2f}]"
    )
    for name, f in noise["runs"].items():
        lo, hi = f["ratio_to_reference_ci95"]
        print(
            f"  {name}: {f['ratio']:.2f} [{f['ci95'][0]:.2f}, {f['ci95'][1]:.2f}], "
            f"{f['ratio_to_reference']:.2f}x the reference [{lo:.2f}, {hi:.2f}]"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
