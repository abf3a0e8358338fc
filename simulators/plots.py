"""Plots of a simulation report (the JSON of `simulators.model.report`), matplotlib with the Agg backend.

They read only the documented JSON (docs/simulator.md), so a saved report can be re-plotted without the
artifact. Each function writes one PNG and returns its path; `write_all` writes the standard set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spikestack.outputs import atomic_write

from .report import plot_firing_rates

PLOT_FILES = {"firing_rate": "firing_rate.png", "core_load": "core_load.png",
              "energy_breakdown": "energy_breakdown.png", "energy_vs_ann": "energy_vs_ann.png"}  # write_all's set


def _pyplot():
    """Import pyplot on the Agg backend: reports are written on headless machines and in tests."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    try:  # atomically: an interrupted run leaves no truncated PNG under the final name
        atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    finally:
        _pyplot().close(fig)
    return out


def core_load_grid(r: dict, chip: int) -> np.ndarray:
    """Synaptic ops per step of each core of one chip, as a [y, x · cores_per_tile + slot] grid (NaN: unused): a
    tile's cores sit side by side, so a 4-core program shows 4 cells, not one tile's sum."""
    per_tile = 1 + max((c.get("slot", 0) for c in r["per_core"]), default=0)
    width = 1 + max((c["tile"][1] for c in r["per_core"]), default=0)
    height = 1 + max((c["tile"][2] for c in r["per_core"]), default=0)
    grid = np.full((height, width * per_tile), np.nan)
    for c in (c for c in r["per_core"] if c["tile"][0] == chip):
        _, x, y = c["tile"]
        grid[y, x * per_tile + c.get("slot", 0)] = c["synaptic_ops_per_step"]
    return grid


def plot_core_heatmap(r: dict, out: Path) -> Path:
    """Per-core load on the mesh (cores of a tile side by side, tile borders drawn): the busiest core sets the step
    latency (REFERENCE.md §7.6), so hot spots show where re-placement would pay."""
    plt = _pyplot()
    chips = sorted({c["tile"][0] for c in r["per_core"]})
    per_tile = 1 + max((c.get("slot", 0) for c in r["per_core"]), default=0)
    grids = [core_load_grid(r, chip) for chip in chips]
    cols = max(g.shape[1] for g in grids)
    fig, axes = plt.subplots(len(chips), 1, figsize=(min(2 + 0.45 * cols, 16), 1.5 + 0.6 * grids[0].shape[0]),
                             squeeze=False)
    for ax, chip, grid in zip(axes[:, 0], chips, grids, strict=True):
        im = ax.imshow(grid, cmap="viridis", origin="lower", aspect="auto")
        if grid.size <= 64:  # numbers only where they fit
            for (y, x), v in np.ndenumerate(grid):
                if not np.isnan(v):
                    ax.text(x, y, f"{v:.2g}", ha="center", va="center", color="w", fontsize=7)
        for edge in range(per_tile, grid.shape[1], per_tile):
            ax.axvline(edge - 0.5, color="k", linewidth=1)
        ticks = range(0, grid.shape[1], per_tile)
        ax.set_xticks([t + (per_tile - 1) / 2 for t in ticks], [str(t // per_tile) for t in ticks])
        ax.set_yticks(range(grid.shape[0]))
        ax.set_xlabel(f"tile x ({per_tile} cores per tile, side by side)")
        ax.set_ylabel("tile y")
        ax.set_title(f"chip {chip}: synaptic ops per step, per core")
        fig.colorbar(im, ax=ax)
    return _save(fig, out)


def plot_energy_breakdown(r: dict, out: Path) -> Path:
    """Energy per token by event kind under the report's profile (horizontal bars: the event names stay
    readable): says which event to optimise first."""
    plt = _pyplot()
    kinds = list(r["energy_breakdown_j"])
    per_token_uj = [r["energy_breakdown_j"][k] / r["tokens"] * 1e6 for k in kinds]
    fig, ax = plt.subplots(figsize=(6, 1 + 0.35 * len(kinds)))
    ax.barh(range(len(kinds)), per_token_uj, color="#b5654a")
    ax.set_yticks(range(len(kinds)), kinds)
    ax.invert_yaxis()
    ax.set_xlabel("energy per token (uJ)")
    ax.set_title(f"energy breakdown, {r['profile']}")
    return _save(fig, out)


def plot_energy_vs_ann(r: dict, out: Path) -> Path:
    """Energy per token of the SNN (this profile and 45 nm) against the ANN twin (45 nm), log scale: the
    same-technology pairs separate the network's gain from the technology's."""
    plt = _pyplot()
    labels = [f"SNN\n{r['profile']}"]
    values = [r["energy_per_token_j"]]
    colors = ["#4a7ab5"]
    for name, row in r["ann_twin_comparison"].items():
        labels += [f"SNN\n{name}", f"ANN twin\n{name}"]
        values += [row["snn_energy_per_token_j"], row["ann_energy_per_token_j"]]
        colors += ["#7fa6d6", "#999999"]
    fig, ax = plt.subplots(figsize=(1.4 * len(labels) + 1, 3.2))
    ax.bar(range(len(values)), values, color=colors)
    ax.set_xticks(range(len(values)), labels, fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("energy per token (J, compute only)")
    ax.set_title("energy per token: SNN vs ANN twin")
    return _save(fig, out)


def write_all(r: dict, out_dir: Path) -> dict[str, Path]:
    """The four standard plots into out_dir; returns {name: path} for the Markdown report."""
    out_dir = Path(out_dir)
    return {
        "firing_rate": plot_firing_rates(r["firing_rate"], out_dir / PLOT_FILES["firing_rate"],
                                         f"{r['target']}: firing rate per layer"),
        "core_load": plot_core_heatmap(r, out_dir / PLOT_FILES["core_load"]),
        "energy_breakdown": plot_energy_breakdown(r, out_dir / PLOT_FILES["energy_breakdown"]),
        "energy_vs_ann": plot_energy_vs_ann(r, out_dir / PLOT_FILES["energy_vs_ann"]),
    }
