"""Human-readable tables and plots of a simulation report (the JSON from `simulators.model.report`)."""

from __future__ import annotations

from pathlib import Path


def _or_na(value: float | None, scale: float, unit: str) -> str:
    """Profiles without timing (Horowitz) report latency as null: say so instead of printing 0."""
    return "n/a (profile has no timing)" if value is None else f"{value * scale:.4g}{unit}"


def human_table(r: dict) -> str:
    assumption = " (ASSUMED constants: no public Loihi 2 figures)" if r["profile_is_assumption"] else ""
    rows = [
        ("profile", f"{r['profile']}{assumption}"),
        ("target / cores / tiles", f"{r['target']} / {r['cores']} / {r['tiles']}"),
        ("tokens x steps", f"{r['tokens']} x {r['steps_per_token']}"),
        ("synaptic ops per token", f"{r['sops_per_token']:.4g}"),
        ("energy per token", f"{r['energy_per_token_j'] * 1e6:.4g} uJ (dynamic)"),
        ("latency per step", _or_na(r["latency_s_per_step"], 1e6, " us")),
        ("tokens per second", _or_na(r["tokens_per_s"], 1.0, "")),
        ("firing rate", ", ".join(f"{k} {v:.3f}" for k, v in r["firing_rate"].items())),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def plot_firing_rates(rates: dict[str, float], out: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    ax.bar(list(rates), list(rates.values()), color="#4a7ab5")
    ax.set_ylabel("fraction of non-zero spikes")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    for i, v in enumerate(rates.values()):
        ax.text(i, v + 0.02, f"{v:.2f}", ha="center")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
