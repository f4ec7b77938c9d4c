"""Training-step time with and without the fast depthwise weight gradient
(``dna_zoo.search.depthwise_grad``), side by side in one process.

For each model (the demo's teacher ``efficientnet_b0``, DNA-b and a network of the demo's
``small`` space, all at 32 px, batch 128, channels_last, AdamW) the plain and the switched
copy take training steps in alternating rounds on the same batch; the figure is the median
step time of each and their ratio. Writes bench/results/depthwise_grad.json.

    .venv/bin/python bench/depthwise_grad.py [--rounds 8]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import timm
import torch
import torch.nn.functional as F

import dna_zoo.models  # noqa: F401  (registers dna_* with timm)
from dna_zoo.search.depthwise_grad import speed_up_depthwise
from dna_zoo.search.latency.devices import cpu_isa, cpu_model
from dna_zoo.search.space import get_space

RESULTS = Path(__file__).resolve().parent / "results"


def small_space_net():
    space = get_space("small")
    cands = [list(space.block_candidates(b))[-1] for b in range(len(space.blocks))]
    return timm.create_model("dna_net", arch=space.to_encoding(cands, name="small-largest"), num_classes=10)


def step_times(make, rounds: int, batch: int) -> dict[str, float]:
    torch.manual_seed(0)
    plain = make().train().to(memory_format=torch.channels_last)
    fast = copy.deepcopy(plain)
    switched = speed_up_depthwise(fast)
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    nets = {"plain": plain, "fast": fast}
    opts = {k: torch.optim.AdamW(n.parameters(), 1e-3) for k, n in nets.items()}
    times: dict[str, list[float]] = {k: [] for k in nets}
    for r in range(rounds + 1):
        for k, net in nets.items():
            t0 = time.perf_counter()
            loss = F.cross_entropy(net(x), y)
            opts[k].zero_grad(set_to_none=True)
            loss.backward()
            opts[k].step()
            if r:  # the first round warms up
                times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    return {
        "switched_convs": switched,
        "plain_ms_per_step": round(med["plain"], 1),
        "fast_ms_per_step": round(med["fast"], 1),
        "speedup": round(med["plain"] / med["fast"], 2),
        "fast_images_per_s": round(batch / med["fast"] * 1e3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--batch", type=int, default=128)
    args = ap.parse_args()
    models = {
        "efficientnet_b0": lambda: timm.create_model("efficientnet_b0", num_classes=10),
        "dna_b": lambda: timm.create_model("dna_b", num_classes=10),
        "small-space largest": small_space_net,
    }
    out = {
        "bench": "depthwise_grad",
        "machine": {"cpu": cpu_model(), "isa": cpu_isa(), "torch_threads": torch.get_num_threads()},
        "torch": torch.__version__,
        "settings": {"input": "32x32", "batch": args.batch, "rounds": args.rounds, "format": "channels_last"},
        "models": {},
    }
    for name, make in models.items():
        out["models"][name] = row = step_times(make, args.rounds, args.batch)
        print(
            f"{name:22s} plain {row['plain_ms_per_step']:7.1f} ms/step"
            f"  fast {row['fast_ms_per_step']:7.1f} ms/step  x{row['speedup']:.2f}"
            f"  ({row['switched_convs']} depthwise convs)"
        )
    print(
        f"machine: {out['machine']['cpu']} ({', '.join(out['machine']['isa']) or 'no AVX2'}), "
        f"{out['machine']['torch_threads']} threads"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "depthwise_grad.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
