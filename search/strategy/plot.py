"""Pareto plot of a search result: rating vs cost, the budget, the chosen net, DNA-a..d.

Drawn from the result file alone (matplotlib, Agg backend, no display needed).
"""

from __future__ import annotations

from pathlib import Path

from dna_zoo.io import atomic_save
from dna_zoo.search.result import SearchResult

_SCALES = {"params": (1e6, "M params"), "macs": (1e6, "M MACs"), "latency": (1.0, "ms")}


def _axis(result: SearchResult) -> tuple[float, str]:
    name = result.front_axis
    div, unit = _SCALES.get(name, (1.0, ""))
    fig = next((c for c in result.costs if c.name == name), None)
    if name == "latency" and fig is not None:
        d = fig.details
        where = " ".join(str(d[k]) for k in ("device", "runtime", "precision") if k in d)
        unit = f"ms{', ' + where if where else ''}{', estimated' if fig.estimated else ''}"
    elif fig is not None and name == "macs" and "convention" in fig.details:
        unit = f"{unit} ({fig.details['convention']})"
    return div, unit


def pareto_plot(result: SearchResult, path: str | Path, *, title: str | None = None) -> Path:
    """Write the Pareto front of ``result`` as a PNG (atomically) and return its path."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    name = result.front_axis
    div, unit = _axis(result)
    xs = [p.costs[name] / div for p in result.front]
    ys = [p.rating for p in result.front]
    fig, ax = plt.subplots(figsize=(7.5, 5), dpi=110)
    if xs:
        ax.step(xs, ys, where="post", color="tab:blue", lw=1.2, alpha=0.8)
        ax.plot(xs, ys, "o", ms=2.5, color="tab:blue", label=f"Pareto front ({len(xs)} networks)")
    chosen = result.cost(name).value / div
    ax.plot([chosen], [result.rating], "*", ms=16, color="tab:red", zorder=5, label="chosen")
    budget = result.cost(name).budget
    if budget is not None:
        ax.axvline(budget / div, color="tab:red", ls=":", lw=1, label=f"budget {budget / div:g}")
    colors = ["tab:green", "tab:purple", "tab:orange", "tab:brown"]
    for ref, color in zip(result.references, colors * 2, strict=False):
        x = ref.costs.get(name)
        if x is None:
            continue
        if ref.rating is not None:
            ax.plot([x / div], [ref.rating], "D", color=color, ms=7, label=f"{ref.name} (rated)")
        else:
            ax.axvline(x / div, color=color, ls="--", lw=1, alpha=0.8, label=f"{ref.name} (not in space)")
    ax.set_xlabel(f"{name} [{unit}]")
    ax.set_ylabel(f"DNA rating (sum of block losses, {result.ratings.get('normalization', '?')})")
    ax.set_title(title or f"search space '{result.space.get('name')}': rating vs {name}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    try:
        return atomic_save(path, fig.savefig, suffix=".png")
    finally:
        plt.close(fig)
