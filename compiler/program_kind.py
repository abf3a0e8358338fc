"""Which compiler a NIR graph goes through: the chain pipeline (`compiler/pipeline.py`) or the language-model
one (`compiler/hybrid/`). Kept apart from both so that choosing costs no torch import."""

from __future__ import annotations

LM_FAMILIES = ("spikegpt", "spikellm", "spikelm-enc", "spikelm-dec")


def is_hybrid_graph(graph) -> bool:
    """LM-family metadata, or any node with two inputs or two consumers: the chain compiler cannot take it."""
    family = (graph.metadata or {}).get("spikestack.family", "")
    family = family.decode() if isinstance(family, bytes) else str(family)
    if family in LM_FAMILIES:
        return True
    fan_in: dict[str, int] = {}
    fan_out: dict[str, int] = {}
    for src, dst in graph.edges:
        fan_out[src] = fan_out.get(src, 0) + 1
        fan_in[dst] = fan_in.get(dst, 0) + 1
    return max([*fan_in.values(), *fan_out.values(), 0]) > 1
