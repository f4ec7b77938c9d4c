"""Fit the ImageNet prior shipped as ``dna_zoo/data/imagenet_prior.json`` and print its figures.

Data: ``dna_zoo/data/imagenet_ranking.json`` (23 nets of the DNA/BossNAS ranking study,
5-epoch protocol; sources named in the file) and DNA-a..d's published 500-epoch top-1
(``published.json``). Model and leave-one-out evaluation: :mod:`dna_zoo.search.prior`.

    .venv/bin/python bench/fit_imagenet_prior.py            # refit and rewrite the data file
    .venv/bin/python bench/fit_imagenet_prior.py --check    # only compare with the shipped file
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dna_zoo.io import atomic_write_json
from dna_zoo.search.prior import fit_prior, ranking_samples

OUT = Path(__file__).resolve().parents[1] / "dna_zoo" / "data" / "imagenet_prior.json"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the shipped file, write nothing")
    args = ap.parse_args()
    samples = ranking_samples()
    prior = fit_prior(samples)
    loo = prior.loo
    print(f"features {', '.join(prior.features)}; ridge lambda {prior.lam}")
    print(f"protocol offset (500 ep - 5 ep): {prior.protocol_offset:+.2f} points")
    print(
        f"leave-one-out on the {loo['n_short_5ep']} short-protocol nets: "
        f"Kendall tau {loo['tau_short_5ep']:.3f} "
        f"(MACs alone {loo['macs_tau_short_5ep']:.3f}), RMSE {loo['rmse_short_5ep']:.3f}"
    )
    print(f"leave-one-out on DNA-a..d (500 epochs): RMSE {loo['rmse_long_500ep']:.3f}")
    for s in samples[-4:]:
        print(f"  {s.name}: published {s.top1:.1f}, LOO prediction {loo['predictions'][s.name]:.2f}")
    if args.check:
        shipped = json.loads(OUT.read_text())
        same = json.dumps(shipped, sort_keys=True) == json.dumps(
            json.loads(json.dumps(prior.to_dict())), sort_keys=True
        )
        print("shipped file is up to date" if same else "shipped file differs from a refit")
        return 0 if same else 1
    atomic_write_json(OUT, prior.to_dict())
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
