"""Supernet figures on the built-in data (Fashion-MNIST, 32 px), printed side by side.

1. Teacher forward passes and wall-clock per epoch: all blocks trained from ONE teacher
   pass per step (this project) vs stage by stage (the original DNA code: one training
   run per block, each with its own teacher pass per step, the teacher stopped early at
   the block's stage). Same data subset, same supernet, same optimizer; the two schemes
   alternate (A B A B ...) and medians are reported, because this CPU drifts by up to 25%.
2. Rating throughput (candidates per second) for the default (paper) space: the prefix
   tree over every candidate of every block, and prefix tree vs naive on a subset (same
   scores, checked).

Run under ``flock -x /tmp/dna-cpu.lock`` (no other CPU work during the timing). The
teacher is efficientnet_b0 (its stages fit the default space at 32 px); with
``--teacher-weights`` a trained one (e.g. from ``dna supernet teacher``), otherwise random
init: the pass counts and the timings do not depend on the weights.

    flock -x /tmp/dna-cpu.lock .venv/bin/python bench/supernet_passes.py --limit 1024
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import timm
import torch

from dna_zoo.search.space import paper_space
from dna_zoo.search.supernet.cell_rating import rate_cell_naive, rate_cell_prefix
from dna_zoo.search.supernet.data import ShardSampler, open_dataset
from dna_zoo.search.supernet.model import PathSampler, Supernet
from dna_zoo.search.supernet.rate import RateConfig, prepare_data, rate_supernet
from dna_zoo.search.supernet.teacher import Teacher
from dna_zoo.search.supernet.train import TrainConfig, block_losses, build_optimizer
from dna_zoo.weights import load_weights

CL = torch.channels_last


def epoch(
    teacher, supernet, opt, source, batch_size, *, stage_by_stage: bool, seed: int = 0
) -> tuple[int, float]:
    """One epoch of supernet training; returns (teacher forward passes, seconds)."""
    sampler = PathSampler(len(supernet.space.ops), "fair", seed)
    passes, t0 = 0, time.perf_counter()
    blocks = range(len(supernet.blocks))
    schedule = [[b] for b in blocks] if stage_by_stage else [list(blocks)]
    for train_blocks in schedule:  # stage by stage: one pass over the data per block
        for step, idx in enumerate(ShardSampler(len(source), batch_size, seed=seed)):
            x = source.batch(idx)[0].contiguous(memory_format=CL)
            if stage_by_stage:
                b = train_blocks[0]
                part = teacher.features(x, upto=b)
                feats: list = [None] * (len(supernet.blocks) + 1)
                feats[b], feats[b + 1] = part
            else:
                feats = teacher.features(x)
            passes += 1
            loss, _ = block_losses(supernet, feats, sampler, step, normalize=True, blocks=train_blocks)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return passes, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=1024, help="training images per epoch (subset)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2, help="epochs per scheme (alternating)")
    ap.add_argument("--teacher-weights", default=None)
    ap.add_argument("--bn-batches", type=int, default=2)
    ap.add_argument("--eval-batches", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    space = paper_space()
    model = timm.create_model("efficientnet_b0", num_classes=10)
    if args.teacher_weights:
        load_weights(model, args.teacher_weights)
    teacher = Teacher(model.to(memory_format=CL), space, input_size=32, name="efficientnet_b0")
    source = open_dataset("builtin", split="train", input_size=32, limit=args.limit)
    torch.manual_seed(0)
    supernet = Supernet(space, teacher.stage_channels).to(memory_format=CL).train()
    opt = build_optimizer(supernet, TrainConfig())

    # warm-up (oneDNN builds kernels on first use of each shape), then alternate the schemes
    warm = open_dataset("builtin", split="train", input_size=32, limit=args.batch_size)
    for sbs in (False, True):
        epoch(teacher, supernet, opt, warm, args.batch_size, stage_by_stage=sbs)
    runs: dict[str, list[tuple[int, float]]] = {"all_blocks_at_once": [], "stage_by_stage": []}
    for _ in range(args.repeats):
        runs["all_blocks_at_once"].append(
            epoch(teacher, supernet, opt, source, args.batch_size, stage_by_stage=False)
        )
        runs["stage_by_stage"].append(
            epoch(teacher, supernet, opt, source, args.batch_size, stage_by_stage=True)
        )
    train = {
        k: {
            "teacher_passes_per_epoch": v[0][0],
            "seconds_per_epoch_median": round(statistics.median(s for _, s in v), 2),
        }
        for k, v in runs.items()
    }
    a, s = train["all_blocks_at_once"], train["stage_by_stage"]

    # rating: prefix tree vs naive on a subset (block 1, 3-layer cell, first op fixed: 36 paths)
    cfg = RateConfig(batch_size=args.batch_size, bn_batches=args.bn_batches, eval_batches=args.eval_batches)
    held = open_dataset("builtin", split="val", input_size=32, limit=cfg.batch_size * cfg.eval_batches)
    data = prepare_data(teacher, source, held, cfg)
    cell = supernet.block(1).cell(3)
    ins = ([f[1] for f in data.calib], [f[1] for f in data.held_out], [f[2] for f in data.held_out])
    rate_cell_prefix(cell, *ins, first_ops=[1])  # warm-up
    t_pre, t_nai, same = [], [], True
    for _ in range(2):
        t0 = time.perf_counter()
        p = rate_cell_prefix(cell, *ins, first_ops=[0])
        t_pre.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        n = rate_cell_naive(cell, *ins, first_ops=[0])
        t_nai.append(time.perf_counter() - t0)
        same = same and p == n
    subset = {
        "paths": len(p),
        "prefix_seconds": round(statistics.median(t_pre), 3),
        "naive_seconds": round(statistics.median(t_nai), 3),
        "identical_scores": same,
    }
    # every candidate of the default space
    _, facts = rate_supernet(supernet, data, cfg)
    result = {
        "data": f"Fashion-MNIST train, first {len(source)} images (subset), 32 px, batch {args.batch_size}",
        "teacher": "efficientnet_b0"
        + (f" ({args.teacher_weights})" if args.teacher_weights else " (random init)"),
        "space": f"default ({space.num_candidates()} candidates)",
        "threads": args.threads,
        "training": train,
        "teacher_pass_ratio": round(a["teacher_passes_per_epoch"] / s["teacher_passes_per_epoch"], 4),
        "epoch_time_ratio": round(a["seconds_per_epoch_median"] / s["seconds_per_epoch_median"], 3),
        "rating_subset": subset,
        "rating_full": {
            "candidates": facts["candidates"],
            "seconds": facts["seconds"],
            "candidates_per_second": facts["candidates_per_second"],
            "bn_batches": cfg.bn_batches,
            "eval_batches": cfg.eval_batches,
        },
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"data: {result['data']}; teacher: {result['teacher']}; space: {result['space']}")
    print(f"{'scheme':<22}{'teacher passes/epoch':>22}{'s/epoch (median)':>18}")
    for k, v in train.items():
        print(f"{k:<22}{v['teacher_passes_per_epoch']:>22}{v['seconds_per_epoch_median']:>18}")
    print(
        f"all-at-once / stage-by-stage: teacher passes x{result['teacher_pass_ratio']}, "
        f"wall-clock x{result['epoch_time_ratio']}"
    )
    print(
        f"rating subset ({subset['paths']} paths): prefix {subset['prefix_seconds']} s, naive "
        f"{subset['naive_seconds']} s (x{subset['naive_seconds'] / subset['prefix_seconds']:.1f}), "
        f"identical scores: {subset['identical_scores']}"
    )
    rf = result["rating_full"]
    print(
        f"rating every candidate of the default space: {rf['candidates']} in {rf['seconds']} s = "
        f"{rf['candidates_per_second']} candidates/s (BN {rf['bn_batches']} x {args.batch_size}, "
        f"held-out {rf['eval_batches']} x {args.batch_size} images)"
    )


if __name__ == "__main__":
    main()
