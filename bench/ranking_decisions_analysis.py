"""The analysis phase of ``ranking_decisions.py``: every method's ranking judged where the search
decides, from the cached stage outputs (seconds; works on a partial run).

Ground truth: stand-alone test top-1, the seed mean where a net has two seeds. Scores are
oriented so that higher means "predicted better". Figures per method:

* global Kendall tau-b and Spearman rho;
* tau within each latency band, and their mean (the headline: a search picks within a budget);
* partial tau given MACs (what the score knows beyond size);
* concordance of the pairs whose predicted latencies differ by at most 5%;
* regret at three budgets (the middle of each band): the best measured top-1 under the budget
  minus the top-1 of the net the method picks there (its top score under the budget).

95% intervals: a bootstrap over networks, stratified by band (the band sizes stay fixed), the
same resamples for every method, so differences between methods are paired.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import ranking_tau as rt
from ranking_decisions import (
    BANDS,
    HELDOUT,
    Settings,
    cpu_hours,
    imported_acc,
    prepare,
    standalone_dir,
    verification,
)

log = logging.getLogger("ranking_decisions")

#: method -> label; "most MACs under the latency budget" is the MACs score's pick at a budget
LABELS = {
    "dna": "DNA: sum of block losses / teacher variance",
    "dna_nsr": "DNA: sum of block noise-to-signal (MSE / teacher power)",
    "predictor": "predictor: ridge on block ratings + log MACs + depth (LOO)",
    "predictor_nsr": "predictor on noise-to-signal block ratings (LOO)",
    "dna_last_block": "DNA with its last block: label loss, CE rated (+ other blocks' losses)",
    "predictor_last_block": "predictor with the last block's CE rating (LOO)",
    "stitched": "stitched end to end, BN recalibrated (held-out top-1)",
    "stitched_ft": "stitched + short distillation finetune (held-out top-1)",
    "spos": "SPOS supernet, same steps (held-out top-1)",
    "macs": "MACs (= most MACs under the latency budget)",
    "params": "params",
    "latency": "predicted latency (slowest under the budget)",
}
BASELINES = ("macs", "latency")
PAIR_TOLERANCE = 0.05
#: a retrained imported net's held-out top-1 may differ by this (points) on the CPU kind that trained
#: the file (same model and vector ISA: training is deterministic there)
IMPORT_TOLERANCE = 1e-6
#: ... and by this on another kind, whose float kernels differ in the last bits: 0.02 points is 9 of
#: the 45k held-out images, a twelfth of a training's seed sd (0.24), so < 1% of its variance.
#: Measured: a Zen 5 (AVX-512) retraining the AVX2 EPYC's trainings differed by 0.0022 and 0.
CROSS_CPU_TOLERANCE = 0.02


# --- statistics ---------------------------------------------------------------------------------------
def tau_b(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall tau-b (ties allowed), from the pair sign matrices (fast for n < 100)."""
    sx = np.sign(x[:, None] - x[None, :])
    sy = np.sign(y[:, None] - y[None, :])
    d = math.sqrt(float((sx * sx).sum()) * float((sy * sy).sum()))
    return float((sx * sy).sum() / d) if d > 0 else math.nan


def _ranks(v: np.ndarray) -> np.ndarray:
    order = np.argsort(v, kind="stable")
    r = np.empty(len(v))
    r[order] = np.arange(len(v))
    for u in np.unique(v):  # average ranks of ties
        m = v == u
        if m.sum() > 1:
            r[m] = r[m].mean()
    return r


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    rx, ry = _ranks(x), _ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


def partial_tau(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> float:
    """Kendall's partial tau of x and y given z."""
    txy, txz, tyz = tau_b(x, y), tau_b(x, z), tau_b(y, z)
    d = math.sqrt(max(0.0, (1 - txz**2) * (1 - tyz**2)))
    return (txy - txz * tyz) / d if d > 1e-12 else math.nan


def pair_concordance(x: np.ndarray, y: np.ndarray, lat: np.ndarray, tol: float = PAIR_TOLERANCE) -> float:
    """Share of the pairs within ``tol`` latency (and different accuracy) that ``x`` orders as ``y``
    (a tied score counts one half)."""
    near = np.abs(np.log(lat[:, None] / lat[None, :])) <= math.log1p(tol)
    dy = np.sign(y[:, None] - y[None, :])
    dx = np.sign(x[:, None] - x[None, :])
    m = np.triu(near & (dy != 0), 1)
    if not m.any():
        return math.nan
    return float(np.mean(np.where(dx[m] == 0, 0.5, (dx[m] == dy[m]).astype(float))))


def regret(x: np.ndarray, y: np.ndarray, lat: np.ndarray, budget: float) -> float:
    ok = np.flatnonzero(lat <= budget)
    if len(ok) == 0:
        return math.nan
    pick = ok[np.argmax(x[ok])]
    return float(y[ok].max() - y[pick])


def figures(
    x: np.ndarray, y: np.ndarray, lat: np.ndarray, band: np.ndarray, macs: np.ndarray, budgets: list[float]
) -> dict[str, float]:
    f = {"tau": tau_b(x, y), "rho": spearman(x, y)}
    taus = []
    for b in range(BANDS):
        m = band == b
        t = tau_b(x[m], y[m]) if m.sum() >= 3 else math.nan
        f[f"tau_band{b}"] = t
        taus.append(t)
    f["tau_within_bands"] = float(np.nanmean(taus)) if not all(math.isnan(t) for t in taus) else math.nan
    f["partial_tau_given_macs"] = partial_tau(x, y, macs)
    f["pairs_within_5pct_concordance"] = pair_concordance(x, y, lat)
    regs = []
    for k, bud in enumerate(budgets):
        f[f"regret_budget{k}"] = regret(x, y, lat, bud)
        regs.append(f[f"regret_budget{k}"])
    f["regret_mean"] = float(np.nanmean(regs))
    return f


def ci95(a: np.ndarray) -> list[float]:
    """The 2.5 and 97.5 percentiles of the resampled values ``a`` (NaNs left out)."""
    a = a[~np.isnan(a)]
    return [float(np.percentile(a, 2.5)), float(np.percentile(a, 97.5))] if len(a) else [math.nan] * 2


def read_results(ap: argparse.ArgumentParser, path: Path) -> dict[str, Any]:
    """A ``ranking_decisions`` results file (what ``phase_analyse`` writes), or the parser's
    one-line error (exit 2) when it cannot be read or is another file."""
    try:
        r = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        ap.error(f"cannot read the ranking_decisions results {path.name}: {e}")
    if not isinstance(r, dict) or r.get("bench") != "ranking_decisions" or "networks" not in r:
        ap.error(
            f"{path.name} is not a ranking_decisions results file (bench/results/ranking_decisions*.json, "
            "written by ranking_decisions.py --phase analyse)"
        )
    return r


def bootstrap(
    scores: dict[str, np.ndarray],
    y: np.ndarray,
    lat: np.ndarray,
    band: np.ndarray,
    macs: np.ndarray,
    budgets: list[float],
    *,
    resamples: int,
    seed: int,
) -> dict[str, Any]:
    """Point figures, 95% intervals, and paired differences to the baselines."""
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(band == b) for b in range(BANDS)]
    idx = [np.concatenate([rng.choice(g, size=len(g)) for g in groups if len(g)]) for _ in range(resamples)]
    point = {k: figures(v, y, lat, band, macs, budgets) for k, v in scores.items()}
    keys = list(next(iter(point.values())))
    boots = {
        k: {f: np.empty(resamples) for f in keys} for k in scores
    }  # method -> figure -> resampled values
    for r, i in enumerate(idx):
        for k, v in scores.items():
            fr = figures(v[i], y[i], lat[i], band[i], macs[i], budgets)
            for f in keys:
                boots[k][f][r] = fr[f]

    out: dict[str, Any] = {}
    for k in scores:
        out[k] = {f: {"value": point[k][f], "ci95": ci95(boots[k][f])} for f in keys}
        for base in BASELINES:
            if base == k:
                continue
            diffs = {}
            for f in keys:
                d = boots[k][f] - boots[base][f]
                sign = -1 if f.startswith("regret") else 1  # lower regret is better
                diffs[f] = {
                    "difference": point[k][f] - point[base][f],
                    "ci95": ci95(d),
                    "share_better": float(np.nanmean(sign * d > 0)),
                }
            out[k][f"vs_{base}"] = diffs
    return out


def pooled_seed_sd(groups: list[np.ndarray]) -> float:
    """The within-net seed sd pooled over nets with two or more seeds (each weighted by its
    degrees of freedom; ``ranking_tau.seed_sd`` when every net has as many seeds)."""
    if len({len(g) for g in groups}) == 1:
        return rt.seed_sd(np.array(groups))
    df = sum(len(g) - 1 for g in groups)
    return float(np.sqrt(sum(np.var(g, ddof=1) * (len(g) - 1) for g in groups) / df))


def noise_ratio_draws(
    groups: list[np.ndarray], y: np.ndarray, resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """Bootstrap draws of the between-net sd of ``y`` over the pooled seed sd of ``groups``
    (the nets with 2+ seeds): the two resampled independently."""
    ratios = []
    for _ in range(resamples):
        w = pooled_seed_sd([groups[j] for j in rng.integers(0, len(groups), len(groups))])
        b = float(np.std(y[rng.integers(0, len(y), len(y))], ddof=1))
        ratios.append(b / w if w > 0 else math.inf)
    return np.array(ratios)


def noise_floor(
    acc: dict[int, list[float]], y_all: np.ndarray, band: np.ndarray, *, resamples: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """Seed noise against the spread between nets. The ratio's 95% CI resamples the nets with
    two or more seeds (for the seed sd) and all nets (for the between-net sd) independently.

    ``signal_to_noise_sd`` divides by one training's seed sd; ``signal_to_ground_truth_noise``
    by the noise of the ground truth itself (a net's seed mean: the seed sd over the root of
    its seeds, rms over the nets), which more seeds per net lower."""
    groups = [np.array(v) for v in acc.values() if len(v) >= 2 and not any(map(math.isnan, v))]
    out: dict[str, Any] = {"nets_with_two_seeds": len(groups)}
    if max((len(g) for g in groups), default=0) > 2:
        out["nets_with_three_seeds"] = sum(len(g) >= 3 for g in groups)
    if len(groups) >= 3:
        pairs = np.array([g[:2] for g in groups])
        within = pooled_seed_sd(groups)
        between = float(np.std(y_all, ddof=1))
        # the ground truth's noise relative to one training's: rms over the nets of 1/sqrt(seeds)
        shrink = math.sqrt(float(np.mean([1 / len(v) for v in acc.values()])))
        ratios = noise_ratio_draws(groups, y_all, resamples, np.random.default_rng(seed + 7))
        band_sd = [float(np.std(y_all[band == b], ddof=1)) for b in range(BANDS) if (band == b).sum() >= 2]
        out.update(
            {
                "tau_seed0_vs_seed1": tau_b(pairs[:, 0], pairs[:, 1]),
                "within_net_seed_sd": within,
                "within_net_seed_range_mean": float(np.mean(np.abs(pairs[:, 0] - pairs[:, 1]))),
                "between_net_sd": between,
                "between_net_sd_within_bands": band_sd,
                "signal_to_noise_sd": between / within if within > 0 else math.inf,
                "signal_to_noise_sd_ci95": [float(np.percentile(ratios, q)) for q in (2.5, 97.5)],
                "signal_to_noise_sd_within_bands": (
                    float(np.mean(band_sd)) / within if within > 0 else math.inf
                ),
            }
        )
        if "nets_with_three_seeds" in out:  # (kept out of two-seed runs' results, which stay as they were)
            out.update(
                {
                    "ground_truth_noise_sd": within * shrink,
                    "signal_to_ground_truth_noise": between / (within * shrink) if within > 0 else math.inf,
                    "signal_to_ground_truth_noise_ci95": [
                        float(np.percentile(ratios, q)) / shrink for q in (2.5, 97.5)
                    ],
                }
            )
    return out


# --- gathering the cache ----------------------------------------------------------------------------------
def standalone_acc(
    work: rt.Work, s: Settings, n: int, *, heldout: bool = True
) -> tuple[dict[int, list[float]], int | None]:
    """Stand-alone top-1 per net and seed: on the larger held-out set (``--phase evaluate``)
    when ``heldout`` and every trained net has it, else on the test split (recorded at training);
    and the number of held-out images behind it (None: the test split). A training this run did
    not repeat is the ``--nets-from`` run's figure (held-out only)."""
    from dna_zoo.search.retrain import CONFIG

    imported = imported_acc(work) if heldout else {}
    found: dict[int, list[Path | float]] = {}
    for i in range(n):
        for seed in range(s.seeds):
            d = work.path / standalone_dir(s) / f"net{i:02d}-seed{seed}"
            # (with imports the ground truth is held-out only: a net not scored yet waits)
            if (d / CONFIG).exists() and (not imported or (d / HELDOUT).exists()):
                found.setdefault(i, []).append(d)
            elif seed < len(imported.get(i, [])):
                found.setdefault(i, []).append(imported[i][seed])
            elif seed == 0:
                break
    dirs = [d for ds in found.values() for d in ds if isinstance(d, Path)]
    use = heldout and all((d / HELDOUT).exists() for d in dirs)

    def top1(d: Path | float) -> float:
        if not isinstance(d, Path):
            return float(d)
        if use:
            return float(json.loads((d / HELDOUT).read_text())["top1"])
        return float(json.loads((d / CONFIG).read_text())["dna_zoo"]["metrics"]["top1"])

    acc = {i: [top1(d) for d in ds] for i, ds in found.items()}
    if imported:
        return acc, int(work.state["nets_from"]["ground_truth_images"])
    first = dirs[0] if dirs else None
    images = int(json.loads((first / HELDOUT).read_text())["images"]) if use and first else None
    return acc, images


def imported_machine(committed: dict[str, Any]) -> dict[str, Any]:
    """The CPU that trained the ``--nets-from`` file (work directories made before it was copied
    into the state read it from the file)."""
    if "machine" in committed:
        return committed["machine"]
    try:
        return json.loads((rt.RESULTS / committed["file"]).read_text()).get("machine") or {}
    except (OSError, ValueError):
        return {}


def same_cpu_kind(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """One CPU model with one vector ISA (a file that did not record its ISA is of an unknown kind)."""
    return bool(a.get("isa")) and (a.get("cpu"), a.get("isa")) == (b.get("cpu"), b.get("isa"))


def import_check(
    work: rt.Work, s: Settings, scores: dict[str, np.ndarray], done: list[int]
) -> dict[str, Any]:
    """How well this run reproduced the ``--nets-from`` run: every retrained imported training
    (its held-out top-1 must match; the run refuses to analyse otherwise), and each rating that
    does not depend on the ground truth (largest absolute difference over the nets)."""
    from dna_zoo.search.retrain import CONFIG

    imported, committed = imported_acc(work), work.state["nets_from"]
    src = {n["index"]: n for n in committed["networks"]}
    theirs = imported_machine(committed)
    same_kind = same_cpu_kind(theirs, rt.machine())
    tol = IMPORT_TOLERANCE if same_kind else CROSS_CPU_TOLERANCE
    checked = []
    for i, seed in verification(imported, s.verify_imported):
        d = work.path / standalone_dir(s) / f"net{i:02d}-seed{seed}"
        if (d / CONFIG).exists() and (d / HELDOUT).exists():
            mine = float(json.loads((d / HELDOUT).read_text())["top1"])
            checked.append({"net": i, "seed": seed, "imported": imported[i][seed], "retrained": mine})
    bad = [c for c in checked if abs(c["retrained"] - c["imported"]) > tol]
    if bad:
        c = bad[0]
        there = theirs.get("cpu", "unknown")
        kind = "the same CPU kind" if same_kind else f"another CPU kind ({there} there)"
        raise SystemExit(
            f"net{c['net']:02d} seed {c['seed']} retrained here gives {c['retrained']:.4f}% held-out top-1, "
            f"{s.nets_from} says {c['imported']:.4f}%, more than the {tol:g} points allowed on {kind}: "
            "its accuracies do not reproduce on this machine; rerun without --nets-from"
        )
    ratings = {}
    for k, v in scores.items():
        if k.startswith("predictor"):  # fitted to the ground truth, which this run changes
            continue
        if all(f"score_{k}" in src.get(i, {}) for i in done):
            ratings[k] = float(np.max(np.abs(v - np.array([src[i][f"score_{k}"] for i in done]))))
    return {
        "file": s.nets_from,
        "imported_trainings": sum(map(len, imported.values())),
        "its_cpu_hours_total": committed["cpu_hours_total"],
        "its_machine": theirs,
        "same_cpu_kind": same_kind,
        "tolerance_points": tol,
        "retrained_to_verify": checked,
        "max_abs_score_difference": ratings,
    }


def measured_check(work: rt.Work, s: Settings, p: Any, done: list[int]) -> dict[str, Any] | None:
    """How the estimated latencies that drew the bands compare with the nets timed whole
    (``--phase measure``): rank agreement, and how many nets fall in the same band when the
    bands are redrawn as equal-count thirds of the measured latency."""
    f = work.path / f"measured_nets-r{s.latency_size}.json"
    if not f.exists():
        return None
    m = json.loads(f.read_text())
    measured = np.array([float(np.mean(v)) for v in zip(*m["passes_ms"], strict=True)])
    est = np.array(m["estimated_ms"])
    a, b = (np.array(v) for v in m["passes_ms"])
    thirds = np.searchsorted(np.quantile(measured, [1 / 3, 2 / 3]), measured)
    band = np.array(p.band)
    return {
        "spec": m["spec"],
        "networks": len(measured),
        "spearman_estimated_vs_measured": spearman(est, measured),
        "tau_estimated_vs_measured": tau_b(est, measured),
        "spearman_between_passes": spearman(a, b),
        "measured_span": [
            float(measured.min()),
            float(measured.max()),
            float(measured.max() / measured.min()),
        ],
        "median_estimated_over_measured": float(np.median(est / measured)),
        "same_band_share": float((thirds == band).mean()),
        "measured_ms": measured.tolist(),
        "trained_networks_in_check": len(done),
    }


def phase_analyse(work: rt.Work, s: Settings, out: Path) -> dict[str, Any]:
    from dna_zoo.io import atomic_write_json
    from dna_zoo.search.ratings import Ratings
    from dna_zoo.search.strategy.cost import MacsCost, ParamsCost

    space, _, latency, p = prepare(work, s)
    acc, n_heldout = standalone_acc(work, s, len(p.nets))
    done = sorted(acc)
    if len(done) < 6:
        raise SystemExit(f"only {len(done)} networks trained so far: nothing to analyse yet")
    encs = [space.to_encoding(p.nets[i], name=f"net{i:02d}") for i in done]
    y = np.array([float(np.mean(acc[i])) for i in done])
    band = np.array([p.band[i] for i in done])
    # (a --nets-from run keeps the committed run's latencies, which drew its bands)
    lat = np.array(
        [p.latency[i] if s.nets_from else latency.network_cost(e) for i, e in zip(done, encs, strict=True)]
    )
    macs_m = MacsCost(space, input_size=32, num_classes=10)
    macs = np.array([macs_m.network_cost(e) for e in encs])
    params = np.array([ParamsCost(space, input_size=32, num_classes=10).network_cost(e) for e in encs])
    scores: dict[str, np.ndarray] = {"macs": macs, "params": params, "latency": lat}
    missing: list[str] = []
    ratings = None
    if (work.path / "dna_ratings.json").exists():
        ratings = Ratings.load(work.path / "dna_ratings.json")
        var = np.array(ratings.meta["teacher_target_variance"])
        power = np.array(ratings.meta["teacher_target_power"])
        block = np.array([[ratings.loss(c) for c in p.nets[i]] for i in done])  # loss / teacher variance
        nsr = block * var / power  # raw MSE / teacher power
        scores["dna"] = -block.sum(1)
        scores["dna_nsr"] = -nsr.sum(1)
        from dna_zoo.search.strategy.predictor import loo_predictions, network_features

        x, _names = network_features(ratings, encs, input_size=32, in_chans=3, num_classes=10)
        scores["predictor"] = loo_predictions(x, y)
        x_nsr = x.copy()
        x_nsr[:, : block.shape[1]] = nsr
        scores["predictor_nsr"] = loo_predictions(x_nsr, y)
        lb_file = work.path / "last_block_ratings.json"
        if lb_file.exists():  # DNA's last block: its label-loss CE replaces its feature MSE
            lb = json.loads(lb_file.read_text())["ratings"]
            ce = np.array([lb[p.nets[i][-1].key]["loss"] for i in done])
            scores["dna_last_block"] = -(block[:, :-1].sum(1) + ce)
            x_lb = x.copy()
            x_lb[:, block.shape[1] - 1] = ce
            scores["predictor_last_block"] = loo_predictions(x_lb, y)
        else:
            missing += ["dna_last_block (run --phase last-block)", "predictor_last_block"]
    else:
        missing += ["dna", "dna_nsr", "predictor", "predictor_nsr", "dna_last_block", "predictor_last_block"]
    if (work.path / "spos_ratings.json").exists():
        spos = json.loads((work.path / "spos_ratings.json").read_text())
        scores["spos"] = np.array([spos[i]["top1"] for i in done])
    else:
        missing.append("spos")
    if (work.path / "stitched_ratings.json").exists():
        st = json.loads((work.path / "stitched_ratings.json").read_text())
        scores["stitched"] = np.array([st[i]["top1"] for i in done])
    else:
        missing.append("stitched (run --phase rate)")
    if (work.path / "stitched_ft_ratings.json").exists():
        st = json.loads((work.path / "stitched_ft_ratings.json").read_text())
        scores["stitched_ft"] = np.array([st[i]["top1"] for i in done])
    else:
        missing.append("stitched_ft (run --phase rate)")
    budgets = [math.sqrt(p.edges[b] * p.edges[b + 1]) for b in range(BANDS)]
    scores = {k: scores[k] for k in LABELS if k in scores}
    figs = bootstrap(scores, y, lat, band, macs, budgets, resamples=s.bootstrap, seed=s.seed)
    nf = noise_floor(acc, y, band, resamples=s.bootstrap, seed=s.seed)
    if n_heldout and not s.nets_from:  # the same nets on the 10k test split alone, for comparison
        acc_t, _ = standalone_acc(work, s, len(p.nets), heldout=False)
        y_t = np.array([float(np.mean(acc_t[i])) for i in done])
        nf["test_split_only"] = noise_floor(acc_t, y_t, band, resamples=s.bootstrap, seed=s.seed)
    rows = []
    for j, i in enumerate(done):
        rows.append(
            {
                "index": i,
                "band": int(band[j]),
                "candidates": [c.key for c in p.nets[i]],
                "arch_def": encs[j].to_arch_def(),
                "latency_ms": float(lat[j]),
                "macs": float(macs[j]),
                "params": float(params[j]),
                "acc": acc[i],
                "acc_mean": float(y[j]),
                **{f"score_{k}": float(v[j]) for k, v in scores.items()},
            }
        )
    seeds = "2 seeds" if s.seeds == 2 else f"2 or more seeds (up to {s.seeds})"
    if s.nets_from:  # the committed run's latency table and its check drew these bands
        lat_info = {**work.state["nets_from"]["latency_table"], "nets_from": s.nets_from}
    else:
        lat_info = {**work.state.get("latency", {}), "measured_check": measured_check(work, s, p, done)}
    if "file" in lat_info:  # a file of the work directory (no local paths in results)
        lat_info["file"] = Path(lat_info["file"]).name
    result = {
        "bench": "ranking_decisions",
        "settings": {**work.state["settings"]},
        "space": {**space.to_dict(), "identity": space.identity, "num_networks": space.num_networks()},
        "latency": {
            "table": lat_info,
            "resolution_px": s.latency_size,
            "band_edges_ms": p.edges,
            "budgets_ms": budgets,
            "measured_nets_span": [float(lat.min()), float(lat.max()), float(lat.max() / lat.min())],
        },
        "trained": {
            "networks": len(done),
            "planned": len(p.nets),
            "second_seeds": nf["nets_with_two_seeds"],
            **({"third_seeds": nf["nets_with_three_seeds"]} if "nets_with_three_seeds" in nf else {}),
        },
        "band_sizes": [int((band == b).sum()) for b in range(BANDS)],
        "missing_methods": missing,
        **({"nets_from": import_check(work, s, scores, done)} if s.nets_from else {}),
        "labels": {k: LABELS[k] for k in scores},
        "figures": figs,
        "noise_floor": nf,
        "ground_truth_images": n_heldout or s.test_images,
        "networks": rows,
        "seconds": work.state.get("seconds", {}),
        "cpu_seconds": work.state.get("cpu_seconds", {}),
        "cpu_hours": cpu_hours(work),
        "cpu_hours_total": round(sum(work.state.get("cpu_seconds", {}).values()) / 3600, 3),
        "work_dir": work.path.name,
        "versions": rt.versions(),
        "machine": rt.machine(),
        "how": {
            "ground_truth": (
                f"stand-alone top-1 on {n_heldout} held-out images (Fashion-MNIST test split + "
                f"training-split rows no stage uses; --phase evaluate), seed mean where {seeds}"
                if n_heldout
                else f"stand-alone test top-1 (Fashion-MNIST test split), seed mean where {seeds}"
            ),
            "scores": "higher = predicted better; DNA scores are minus the summed block losses",
            "bootstrap": f"{s.bootstrap} resamples of networks, stratified by band, same for every method "
            "(paired differences)",
            "budgets": "the geometric middle of each latency band",
            "pairs": f"pairs whose predicted latencies differ by at most {PAIR_TOLERANCE:.0%}",
            "predictor": "search.strategy.predictor.loo_predictions (nested leave-one-out ridge) on "
            "network_features (block ratings, log MACs, depth) against the same ground truth",
            "dna_last_block": "search.supernet.last_block: the last block trained with the label loss "
            "(teacher head copied, trained with it), each candidate's held-out CE replaces its MSE rating",
            "stitched_ft": f"rate_stitched(finetune_steps={s.stitch_finetune_steps}): the net's own layers "
            "distilled to the teacher's logits (KL) on that many training batches, then rated as stitched",
            "stitched": "search.supernet.stitch.rate_stitched: teacher stem/first stage, the net's block "
            "paths from the DNA supernet, teacher tail/head; student BN re-estimated; no finetune",
        },
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, result)
    md = table_md(result)
    out.with_suffix(".md").write_text(md)
    plot(out.with_suffix(".png"), result)
    print(md)
    print(f"wrote {out}, {out.with_suffix('.md')}, {out.with_suffix('.png')}")
    return result


# --- output ---------------------------------------------------------------------------------------------
def _v(f: dict[str, Any], digits: int = 2) -> str:
    v, (lo, hi) = f["value"], f["ci95"]
    if math.isnan(v):
        return "n/a"
    return f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


ORDINAL = {4: "fourth", 5: "fifth"}


def nets_with_seeds(r: dict[str, Any]) -> dict[int, int]:
    """k -> how many of the results' nets have at least k seeds (k = 1 .. the most any net has)."""
    most = max(len(n["acc"]) for n in r["networks"])
    return {k: sum(len(n["acc"]) >= k for n in r["networks"]) for k in range(1, most + 1)}


def table_md(r: dict[str, Any]) -> str:
    figs, lat, nf = r["figures"], r["latency"], r["noise_floor"]
    seeds = nets_with_seeds(r)
    lines = [
        f"# ranking_decisions: {r['trained']['networks']} of {r['trained']['planned']} networks trained "
        f"(bands {r['band_sizes']}), {nf['nets_with_two_seeds']} with a second seed"
        + (f", {nf['nets_with_three_seeds']} with a third" if "nets_with_three_seeds" in nf else "")
        + "".join(f", {n} with a {ORDINAL.get(k, f'{k}th')}" for k, n in seeds.items() if k >= 4 and n),
        "",
        f"Bench space {r['space']['name']} (identity {r['space']['identity']}).",
        "",
        f"Latency: {lat['table'].get('source', '?')}, {lat['resolution_px']} px; band edges "
        + ", ".join(f"{e:.3f}" for e in lat["band_edges_ms"])
        + " ms; the trained nets span {:.3f}-{:.3f} ms ({:.2f}x); budgets ".format(*lat["measured_nets_span"])
        + ", ".join(f"{b:.3f}" for b in lat["budgets_ms"])
        + " ms.",
        "",
        *_measured_line(lat["table"].get("measured_check")),
        "| method | global tau | Spearman | tau band 0 | tau band 1 | tau band 2 | tau within bands (mean) "
        "| partial tau given MACs | pairs within 5% latency | regret b0 | regret b1 | regret b2 "
        "| regret mean |",
        "|---|" + "---|" * 12,
    ]
    for k, label in r["labels"].items():
        f = figs[k]
        cells = [
            _v(f["tau"]), _v(f["rho"]), _v(f["tau_band0"]), _v(f["tau_band1"]), _v(f["tau_band2"]),
            _v(f["tau_within_bands"]), _v(f["partial_tau_given_macs"]),
            _v(f["pairs_within_5pct_concordance"]),
            _v(f["regret_budget0"]), _v(f["regret_budget1"]), _v(f["regret_budget2"]), _v(f["regret_mean"]),
        ]  # fmt: skip
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "Paired differences (method - baseline; regret: lower is better), 95% bootstrap CI:", ""]
    lines.append(
        "| method | vs | d tau within bands | d partial tau | d regret mean | d regret b0 | d regret b1 "
        "| d regret b2 |"
    )
    lines.append("|---|---|" + "---|" * 6)
    for k in r["labels"]:
        for base in BASELINES:
            d = figs[k].get(f"vs_{base}")
            if d is None:
                continue
            fields = ["tau_within_bands", "partial_tau_given_macs", "regret_mean"]
            fields += [f"regret_budget{b}" for b in range(BANDS)]
            cells = [_d(d[f]) for f in fields]
            lines.append(f"| {k} | {base} | " + " | ".join(cells) + " |")
    lines += ["", f"Ground truth: {r['how']['ground_truth']}."]
    if "nets_from" in r:
        c = r["nets_from"]
        lines += [
            "",
            f"Networks, bands, latencies and {c['imported_trainings']} trainings' accuracies taken from "
            f"{c['file']} (trained on {c['its_machine'].get('cpu', 'an unrecorded CPU')}"
            f"{'' if c['same_cpu_kind'] else ', another CPU kind than this run'}: retrained figures must "
            f"match to {c['tolerance_points']:g} points); retrained to verify: "
            + ", ".join(
                f"net{v['net']:02d} seed {v['seed']} {v['retrained']:.4f} vs {v['imported']:.4f}"
                for v in c["retrained_to_verify"]
            )
            + "; largest rating difference to it: "
            + ", ".join(f"{k} {v:.3g}" for k, v in c["max_abs_score_difference"].items())
            + ".",
        ]
    lines += [
        "",
        "Noise floor: " + ", ".join(f"{k} {_fmt(v)}" for k, v in nf.items() if not isinstance(v, dict)),
    ]
    if "test_split_only" in nf:
        t = nf["test_split_only"]
        lines += [
            "",
            f"Noise floor of the same nets on the {r['settings']['test_images']:,} test-split images alone: "
            + ", ".join(f"{k} {_fmt(v)}" for k, v in t.items() if not isinstance(v, dict)),
        ]
    lines += [
        "",
        f"CPU-hours by stage: {r['cpu_hours']} (total {r['cpu_hours_total']}); CPU: {r['machine']['cpu']}",
    ]
    if r["missing_methods"]:
        lines += ["", "Not measured: " + "; ".join(r["missing_methods"])]
    return "\n".join(lines) + "\n"


def _measured_line(m: dict[str, Any] | None) -> list[str]:
    if not m:
        return ["The bands' latencies are not checked against whole-network timings (`--phase measure`).", ""]
    return [
        f"Check against the {m['networks']} picked nets timed whole ({m['spec']['runtime']}, "
        f"{m['spec']['threads']} threads, {m['spec']['input_size']} px): Spearman estimated vs measured "
        f"{m['spearman_estimated_vs_measured']:.3f} (between two timing passes "
        f"{m['spearman_between_passes']:.3f}); measured span {m['measured_span'][0]:.3f}-"
        f"{m['measured_span'][1]:.3f} ms ({m['measured_span'][2]:.2f}x); estimate / measured median "
        f"{m['median_estimated_over_measured']:.2f}; {m['same_band_share']:.0%} of the nets fall in the "
        "same band when the bands are redrawn as thirds of the measured latency.",
        "",
    ]


def _d(x: dict[str, Any]) -> str:
    return f"{x['difference']:+.3f} [{x['ci95'][0]:+.3f}, {x['ci95'][1]:+.3f}]"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


def plot(path: Path, r: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = r["figures"]
    names = list(r["labels"])
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.5))
    for ax, key, title in (
        (axes[0], "tau_within_bands", "Kendall tau within latency bands (mean of 3)"),
        (axes[1], "regret_mean", "regret at 3 budgets (mean, top-1 points; lower is better)"),
    ):
        v = np.array([figs[k][key]["value"] for k in names])
        lo = v - np.array([figs[k][key]["ci95"][0] for k in names])
        hi = np.array([figs[k][key]["ci95"][1] for k in names]) - v
        ax.errorbar(v, np.arange(len(names)), xerr=[lo, hi], fmt="o", capsize=3)
        ax.set_yticks(np.arange(len(names)), names)
        ax.axvline(figs["macs"][key]["value"], color="grey", ls="--", lw=1, label="MACs")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.invert_yaxis()
        ax.legend(fontsize=8)
    nets = r["networks"]
    for b in range(BANDS):
        pts = [n for n in nets if n["band"] == b]
        axes[2].scatter([n["latency_ms"] for n in pts], [n["acc_mean"] for n in pts], label=f"band {b}", s=18)
    for e in r["latency"]["band_edges_ms"]:
        axes[2].axvline(e, color="grey", lw=0.6)
    for bud in r["latency"]["budgets_ms"]:
        axes[2].axvline(bud, color="red", lw=0.6, ls=":")
    kind = "roofline estimate" if r["latency"]["table"].get("table") == "estimated" else "measured table"
    axes[2].set_xlabel(f"predicted latency on this CPU, ms ({r['latency']['resolution_px']} px, {kind})")
    axes[2].set_ylabel(f"stand-alone top-1 % ({r['ground_truth_images'] // 1000}k held-out images)")
    axes[2].set_title("networks (red: budgets)", fontsize=10)
    axes[2].legend(fontsize=8)
    axes[2].grid(alpha=0.3)
    nf = r["noise_floor"]
    seeds = nets_with_seeds(r)
    most = max(seeds)
    with_most = seeds[most]
    fig.suptitle(
        f"Fashion-MNIST 32 px, {r['trained']['networks']} networks; seed sd "
        f"{nf.get('within_net_seed_sd', math.nan):.2f}, "
        f"between-net sd {nf.get('between_net_sd', math.nan):.2f}"
        + (
            f"; {with_most} nets with {most} seeds (ground-truth noise {nf['ground_truth_noise_sd']:.2f})"
            if "ground_truth_noise_sd" in nf
            else ""
        ),
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
