"""Human-readable tables and plots of a simulation report (the JSON from `simulators.model.report`)."""

from __future__ import annotations

import html
from pathlib import Path

from spikestack.errors import SpikestackError
from spikestack.outputs import atomic_write, write_text

REPORT_SUFFIXES = (".md", ".markdown", ".html", ".htm")


class ReportError(SpikestackError):
    """A report cannot be written as asked (e.g. an unsupported format)."""


def _or_na(value: float | None, scale: float, unit: str) -> str:
    """Profiles without timing (Horowitz) report latency as null: say so instead of printing 0."""
    return "n/a (profile has no timing)" if value is None else f"{value * scale:.4g}{unit}"


def human_table(r: dict) -> str:
    assumption = " (ASSUMED constants: no public Loihi 2 figures)" if r["profile_is_assumption"] else ""
    conv = r["counting_conventions"]
    nb = conv["neurobench"]
    rows = [
        ("profile", f"{r['profile']}{assumption}"),
        ("target / cores / tiles", f"{r['target']} / {r['cores']} / {r['tiles']}"),
        ("tokens x steps", f"{r['tokens']} x {r['steps_per_token']}"),
        ("synaptic ops per token", f"{r['sops_per_token']:.4g}"),
        ("spikes / messages / input messages", f"{r['spikes']} / {r['messages']} / {r.get('input_messages', 0)} "
                                               f"(all tokens)"),
        ("active-update rule", r.get("update_rule", "event") + (
            f" (event rule for {', '.join(r['update_rule_fallback'])}: no potentials in the trace)"
            if r.get("update_rule_fallback") else "")),
        ("energy per token", f"{r['energy_per_token_j'] * 1e6:.4g} uJ (dynamic)"),
        ("latency per step", _or_na(r["latency_s_per_step"], 1e6, " us")),
        ("tokens per second", _or_na(r["tokens_per_s"], 1.0, "")),
        ("time to first token", _or_na(r["time_to_first_token_s"], 1e6, " us")),
        ("NeuroBench per token", f"Dense {nb['dense_per_token']:.4g}, "
                                 f"Effective_ACs {nb['effective_acs_per_token']:.4g}, "
                                 f"Effective_MACs {nb['effective_macs_per_token']:.4g}"),
        ("paper fr*T*FLOPs per token", f"{conv['paper']['sops_per_token']:.4g} SOPs, "
                                       f"{conv['paper']['energy_per_token_j'] * 1e6:.4g} uJ (45 nm fp32)"),
        ("ANN twin per token", f"{conv['ann_twin']['macs_per_token']:.4g} MACs, " + ", ".join(
            f"{v * 1e6:.4g} uJ ({k})" for k, v in conv["ann_twin"]["energy_per_token_j"].items())),
        ("firing rate", ", ".join(f"{k} {v:.3f}" for k, v in r["firing_rate"].items())),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def plot_firing_rates(rates: dict[str, float], out: Path, title: str) -> Path:
    """Horizontal bars, one row per layer, the figure's height sized to the layer count: SpikeGPT's 15 layer names
    stay readable (vertical bars overlapped their labels)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(rates)
    longest = max((len(n) for n in names), default=1)
    fig, ax = plt.subplots(figsize=(4 + 0.07 * longest, 1.2 + 0.3 * len(names)))
    ax.barh(range(len(names)), list(rates.values()), color="#4a7ab5")
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()  # first layer on top
    ax.set_xlabel("fraction of non-zero spikes")
    ax.set_xlim(0, 1.1)
    ax.set_title(title)
    for i, v in enumerate(rates.values()):
        ax.text(v + 0.01, i, f"{v:.2f}", va="center", fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    finally:
        plt.close(fig)
    return out


def _md_table(header: tuple[str, ...], rows: list[tuple]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    # a "|" inside a cell (|s| >= 2) would split the column: escape it
    return lines + ["| " + " | ".join(str(x).replace("|", "\\|") for x in row) + " |" for row in rows]


def _conventions_rows(r: dict) -> list[tuple]:
    c = r["counting_conventions"]
    nb, paper, ann = c["neurobench"], c["paper"], c["ann_twin"]
    return [
        ("dataflow SOPs (this simulator)", f"{c['dataflow']['sops_per_token']:.4g}",
         f"{r['energy_per_token_j']:.4g} ({r['profile']})", c["dataflow"]["why"]),
        ("NeuroBench Dense", f"{nb['dense_per_token']:.4g}", "-", "every weight at every step"),
        ("NeuroBench Effective_ACs", f"{nb['effective_acs_per_token']:.4g}", "-", nb["why"]),
        ("NeuroBench Effective_MACs", f"{nb['effective_macs_per_token']:.4g}", "-", "steps holding levels |s| >= 2"),
        ("paper SOP = fr*T*FLOPs", f"{paper['sops_per_token']:.4g}", f"{paper['energy_per_token_j']:.4g}",
         paper["why"]),
        ("ANN twin MACs", f"{ann['macs_per_token']:.4g}",
         ", ".join(f"{v:.4g} ({k})" for k, v in ann["energy_per_token_j"].items()), ann["why"]),
    ]


def markdown_report(r: dict, plots: dict[str, Path] | None = None, base: Path | None = None) -> str:
    """The report as Markdown: summary, energy breakdown, conventions side by side, ANN twin, sources, plots.

    Why Markdown: it reads in a terminal, renders on any forge, and diffs cleanly between two runs.
    """
    lines = [f"# Simulation report: {r['target']} under {r['profile']}", ""]
    if r["profile_is_assumption"]:
        lines += ["**The profile is an ASSUMPTION**: no public per-event figures exist for this chip "
                  "(REFERENCE.md §6.2).", ""]
    lines += ["```", human_table(r), "```", "", "## Energy per token by event (dynamic only)", ""]
    lines += _md_table(("event", "energy per token (J)"),
                       [(k, f"{v / r['tokens']:.4g}") for k, v in r["energy_breakdown_j"].items()])
    lines += ["", "## Counting conventions side by side (per token)", ""]
    lines += _md_table(("convention", "ops per token", "energy per token (J)", "why it differs"),
                       _conventions_rows(r))
    lines += ["", "## SNN vs ANN twin, same technology (compute only, a lower bound)", ""]
    lines += _md_table(("profile", "SNN J/token", "ANN twin J/token", "ANN pJ/MAC"),
                       [(k, f"{v['snn_energy_per_token_j']:.4g}", f"{v['ann_energy_per_token_j']:.4g}",
                         v["ann_mac_pj"]) for k, v in r["ann_twin_comparison"].items()])
    busiest = sorted(r["per_core"], key=lambda c: -c["synaptic_ops_per_step"])[:8]
    lines += ["", "## Busiest cores", ""]
    lines += _md_table(("core", "layer", "tile (chip, x, y)", "neurons", "synaptic ops per step", "spikes",
                        "messages in", "messages out", "active updates"),
                       [(c["core"], c["layer"], tuple(c["tile"]), c["neurons"], f"{c['synaptic_ops_per_step']:.4g}",
                         c.get("spikes", "-"), c.get("messages_in", "-"), c.get("messages_out", "-"),
                         c.get("updates_active", "-")) for c in busiest])
    if r.get("per_layer"):
        lines += ["", "## Per layer (all tokens)", ""]
        keys = ("cores", "spikes", "synaptic_ops", "sops", "updates_active", "neuron_updates_active", "messages",
                "messages_out", "messages_in", "hops")
        shown = [k for k in keys if any(k in v for v in r["per_layer"].values())]
        lines += _md_table(("layer", *shown), [(name, *(v.get(k, "-") for k in shown))
                                               for name, v in r["per_layer"].items()])
    lines += ["", f"Busiest mesh link: {r['busiest_link_messages_per_step']:.4g} messages per step on average, "
              f"{r['busiest_link_messages_per_step_max']} at most (X-Y routing).", "",
              f"## Profile sources ({r['profile']})", ""]
    lines += [f"- `{k}`: {v}" for k, v in r["profile_sources"].items()]
    if plots:
        lines += ["", "## Plots", ""]
        for name, path in plots.items():
            rel = Path(path).resolve().relative_to(base.resolve()) if base else Path(path)
            lines += [f"![{name}]({rel.as_posix()})", ""]
    return "\n".join(lines).rstrip() + "\n"


HTML_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:70em;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #bbb;padding:.2em .5em;vertical-align:top}}
pre{{background:#f4f4f4;padding:.5em}}img{{max-width:100%}}</style></head>
<body>
{body}</body></html>
"""


def html_report(markdown: str, title: str) -> str:
    """The Markdown report rendered by markdown-it-py (CommonMark + tables) into one standalone page."""
    from markdown_it import MarkdownIt

    return HTML_PAGE.format(title=html.escape(title), body=MarkdownIt("commonmark").enable("table").render(markdown))


def check_report_format(out: Path) -> Path:
    """The report's format comes from its suffix: refuse any other before a simulation runs."""
    if Path(out).suffix.lower() not in REPORT_SUFFIXES:
        raise ReportError(f"{out}: --report writes Markdown (*.md) or HTML (*.html)")
    return Path(out)


def write_markdown(r: dict, out: Path, plots: dict[str, Path] | None = None) -> Path:
    """Write the report as Markdown (.md) or as a standalone HTML page (.html) of the same content (atomically:
    a failure leaves no partial page)."""
    out = check_report_format(out)
    suffix = out.suffix.lower()
    out.parent.mkdir(parents=True, exist_ok=True)
    base = out.parent if plots and all(out.parent.resolve() in Path(p).resolve().parents for p in plots.values()) \
        else None
    text = markdown_report(r, plots, base)
    if suffix in (".html", ".htm"):
        text = html_report(text, f"spikestack simulation report: {r['target']} under {r['profile']}")
    return write_text(out, text)
