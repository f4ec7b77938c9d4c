"""Rebuild ``dna_zoo/data/public_latency.json`` from the extracted public measurements.

Developer tool, run once when the public data changes; the package and its tests never read
the source folder. It keeps only what the latency estimator needs (network shapes and
whole-network latencies) in a compact form, with each source's attribution and license:

    .venv/bin/python bench/public_latency_data.py --src ../shared/data/public-latency

Sources (see ``sources`` in the output): OFA's specialised networks (mit-han-lab/once-for-all,
han-cai/files; MIT) and HELP's FBNet-space latencies (HayeonLee/HELP, MIT; the space from
RICE-EIC/HW-NAS-Bench, MIT). None of it was measured by us.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dna_zoo.io import atomic_write

OUT = Path(__file__).resolve().parents[1] / "dna_zoo" / "data" / "public_latency.json"
HELP_ARCHS = 1000  # of the 2,000 extracted: enough for rank statistics, half the size


def _make_divisible(v: float, divisor: int = 8) -> int:
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def _act(name: str | None) -> str:
    return {"h_swish": "hswish", "relu6": "relu", "relu": "relu", None: "none"}[name]


def _conv_row(layer: dict, hw: int) -> list:
    return [
        "conv",
        hw,
        layer["in_channels"],
        layer["out_channels"],
        layer["kernel_size"],
        layer["stride"],
        layer.get("groups", 1),
        _act(layer.get("act_func")),
        int(bool(layer.get("use_bn", True))),
    ]


def ofa_rows(cfg: dict, r: int) -> list[list]:
    """An OFA ``net.config`` as estimator layer rows (see search/latency/estimator/network.py)."""
    rows = [_conv_row(cfg["first_conv"], r)]
    hw = (r + 1) // 2
    for b in cfg["blocks"]:
        m = b["mobile_inverted_conv"]
        if m is None or m.get("name") == "ZeroLayer":
            continue
        cin, cout, s = m["in_channels"], m["out_channels"], m["stride"]
        mid = m.get("mid_channels") or round(cin * m["expand_ratio"])
        se = _make_divisible(mid / 4) if m.get("use_se") else 0
        skip = int(b.get("shortcut") is not None)
        rows.append(
            ["mb", hw, cin, cout, m["kernel_size"], s, mid, _act(m["act_func"]), se, skip, 1, int(mid != cin)]
        )
        hw = int((hw - 1) / s + 1)
    if "final_expand_layer" in cfg:
        rows.append(_conv_row(cfg["final_expand_layer"], hw))
        rows.append(["pool", hw, cfg["final_expand_layer"]["out_channels"]])
        rows.append(_conv_row(cfg["feature_mix_layer"], 1))
    else:
        rows.append(_conv_row(cfg["feature_mix_layer"], hw))
        rows.append(["pool", hw, cfg["feature_mix_layer"]["out_channels"]])
    c = cfg["classifier"]
    rows.append(["fc", c["in_features"], c["out_features"]])
    return rows


def build(src: Path) -> dict:
    ofa = json.loads((src / "ofa_specialized_nets.json").read_text())
    hlp = json.loads((src / "help_fbnet_cifar.json").read_text())
    networks: dict[str, dict] = {}
    measurements: list[dict] = []
    ofa_groups: dict[str, dict] = {}
    for n in ofa["nets"]:
        if n["latency_ms"] is None:
            continue
        networks[n["net_id"]] = {
            "input_size": n["image_size"],
            "layers": ofa_rows(n["net_config"], n["image_size"]),
        }
        m = ofa_groups.setdefault(
            n["device_key"],
            {
                "dataset": "ofa",
                "device": n["device_key"],
                "batch": n["batch_size"] or 1,
                "batch_stated": n["batch_size"] is not None,
                "nets": [],
                "ms": [],
            },
        )
        m["nets"].append(n["net_id"])
        m["ms"].append(n["latency_ms"])
    measurements += ofa_groups.values()
    archs = hlp["archs"][:HELP_ARCHS]
    for i, ops in enumerate(archs):
        networks[f"fbnet-{i}"] = {"input_size": 32, "fbnet_ops": ops}
    for key, dev in hlp["devices"].items():
        device = key.rsplit("_", 1)[0] if dev["batch_size"] else key
        measurements.append(
            {
                "dataset": "help",
                "device": device,
                "batch": dev["batch_size"] or 1,
                "batch_stated": dev["batch_size"] is not None,
                "nets": f"fbnet-0..{len(archs) - 1}",
                "ms": [round(x, 3) for x in hlp["latency_ms"][key][: len(archs)]],
            }
        )
    space = hlp["search_space"]
    return {
        "format": "dna-zoo-public-latency",
        "version": 1,
        "about": (
            "Whole-network latencies that other people measured on real devices, for fitting and "
            "checking dna-zoo's latency estimator. Nothing here was measured by dna-zoo. Compact copy "
            "made by bench/public_latency_data.py; units ms; OFA latencies are the whole ms written in "
            "each net's name (the latency it was specialised for), GPU figures are per batch. Runtimes, "
            "precisions and threads are not stated by the sources. The Note10 names are most likely "
            "sums of OFA's own per-layer table, not end-to-end measurements. "
            f"HELP: the first {len(archs)} architectures of its 5,000."
        ),
        "sources": {"ofa": ofa["source"], "help": hlp["source"]},
        "layer_rows": {
            "conv": "[conv, in_hw, cin, cout, kernel, stride, groups, act, has_bn]",
            "mb": "[mb, in_hw, cin, cout, kernel, stride, mid, act, se_chs (0 = no SE), id_skip, groups, has_expand]",  # noqa: E501
            "pool": "[pool, hw, channels] (global average pool)",
            "fc": "[fc, in_features, out_features]",
            "act": "relu (relu / relu6), hswish, swish, none",
            "nets": "a list of network ids, or 'prefix-0..N' for prefix-0 to prefix-N in order",
        },
        "fbnet_space": {
            "about": space["name"] + "; " + space["ops"]["conv_block"] + " skip: " + space["ops"]["skip"],
            "op_names": hlp["op_names"],
            "ops": space["ops"]["list"],
            "positions_fields": space["positions_fields"],
            "positions": space["positions"],
            "stem": [3, 16],
            "head": [352, 1504, 100],
        },
        "networks": networks,
        "measurements": measurements,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--src", type=Path, required=True, help="folder with the extracted public-latency JSON files"
    )
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    data = build(a.src)
    text = json.dumps(data, separators=(",", ":")) + "\n"
    atomic_write(a.out, lambda f: f.write(text))
    print(f"wrote {a.out} ({a.out.stat().st_size / 1e3:.0f} kB, {len(data['networks'])} networks)")


if __name__ == "__main__":
    main()
