"""fold (SpikeGPT "dataflow"): Linears of a normed residual stream become event-driven projections.

SpikeGPT's residual stream is x = LN0(e) + S, with e the binary embedding and S the sum of every earlier LIF's
spikes (REFERENCE.md §3.1), so both e and S are integer vectors. A Linear reading c ⊙ LN(x) (c = the time-mix μ,
1 − μ on the token-shifted branch, or 1) is then, with m, σ the per-token mean and deviation,

    W diag(c) LN(x) = [W diag(cγγ0) e / σ_e − (m_e/σ_e) W(cγγ0) + W diag(cγ) β0 + W diag(cγ) S − m_x W(cγ)] / σ_x
                      + W (c ⊙ β)

(γ0, β0, m_e, σ_e: the LN0 of e; absent when x has no normed part). The two matrix products with integer vectors
are what the cores compute: e and S enter as graded events (channel groups 0 and 1 of a ``relay`` layer), and
the host applies the per-token scalars and constants. The token-shifted branch folds the same way: its rows are
stacked under the current token's, and the host keeps their result one call as state (the Delay's value).

A Linear folds when every input edge is `LN`, `Scale(c) ← LN`, `Delay ← LN` or `Scale(c) ← Delay ← LN` of one
LayerNorm, and that LayerNorm's input decomposes through unit `Scale` sums into integer leaves (LIF spikes, the
flattened integer embedding) plus at most one LayerNorm of integer leaves.
"""

from __future__ import annotations

from dataclasses import dataclass

import nir
import numpy as np
from spikestack.models.nir.nodes import Embedding
from spikestack.models.nir.ops import LayerNorm


@dataclass(frozen=True)
class Fold:
    linear: str
    norm: str  # the LayerNorm whose output the Linear reads
    now: np.ndarray  # c on LN(x_t), zeros when the Linear reads only the shifted branch
    prev: np.ndarray | None  # c on LN(x_{t-1}), None without a shifted branch
    spikes: tuple[str, ...]  # integer leaves of S
    normed: str | None  # LayerNorm of e (LN0), or None
    embed: tuple[str, ...]  # integer leaves of e (inputs of `normed`)
    bound_s: int  # max |S| per channel
    bound_e: int  # max |e| per channel


def _int_bound(graph: nir.NIRGraph, preds: dict[str, list[str]], name: str,
               memo: dict[str, int | None] | None = None) -> int | None:
    """Max |value| when the node's value is an integer vector for every input, else None. `memo` caches the
    answers by node (every fold of a model asks about the same embedding table, 50,277 × 768 at the 216M shape)."""
    if memo is not None and name in memo:
        return memo[name]
    node = graph.nodes[name]
    bound = None
    if isinstance(node, nir.LIF):
        bound = 1
    elif isinstance(node, Embedding):
        w = np.asarray(node.weight)
        bound = int(np.abs(w).max()) if np.all(w == np.round(w)) else None
    elif isinstance(node, nir.Flatten) and len(preds.get(name, [])) == 1:
        bound = _int_bound(graph, preds, preds[name][0], memo)
    elif isinstance(node, nir.Scale) and np.all(np.asarray(node.scale) == 1):
        bounds = [_int_bound(graph, preds, p, memo) for p in preds.get(name, [])]
        bound = None if not bounds or None in bounds else sum(bounds)
    if memo is not None:
        memo[name] = bound
    return bound


def _leaves(graph: nir.NIRGraph, preds: dict[str, list[str]], name: str) -> list[str] | None:
    """Split a unit-Scale sum tree into its leaves (nodes that are not unit Scales)."""
    node = graph.nodes[name]
    if isinstance(node, nir.Scale) and np.all(np.asarray(node.scale) == 1):
        out: list[str] = []
        for p in preds.get(name, []):
            sub = _leaves(graph, preds, p)
            if sub is None:
                return None
            out += sub
        return out
    return [name]


def _branch(graph: nir.NIRGraph, preds: dict[str, list[str]], name: str) -> tuple[str, np.ndarray, bool] | None:
    """(LayerNorm, coefficient, shifted) of one input edge of a Linear, or None if it is not a mix of a norm."""
    node = graph.nodes[name]
    coef = None
    if isinstance(node, nir.Scale):
        coef = np.asarray(node.scale, np.float64)
        if len(preds.get(name, [])) != 1:
            return None
        name = preds[name][0]
        node = graph.nodes[name]
    shifted = isinstance(node, nir.Delay)
    if shifted:
        if len(preds.get(name, [])) != 1:
            return None
        name = preds[name][0]
        node = graph.nodes[name]
    if not isinstance(node, LayerNorm):
        return None
    width = node.weight.size
    return name, (np.ones(width) if coef is None else coef), shifted


def find_folds(graph: nir.NIRGraph, preds: dict[str, list[str]]) -> list[Fold]:
    folds = []
    memo: dict[str, int | None] = {}
    for name, node in graph.nodes.items():
        if not isinstance(node, nir.Linear | nir.Affine) or not preds.get(name):
            continue
        branches = [_branch(graph, preds, p) for p in preds[name]]
        if None in branches or len({b[0] for b in branches}) != 1:
            continue
        norm = branches[0][0]
        width = graph.nodes[norm].weight.size
        now, prev = np.zeros(width), None
        for _, coef, shifted in branches:
            if shifted:
                prev = coef if prev is None else prev + coef
            else:
                now = now + coef
        leaves = [leaf for p in preds.get(norm, []) for leaf in (_leaves(graph, preds, p) or [None])]
        if not leaves or None in leaves:
            continue
        normed = [leaf for leaf in leaves if isinstance(graph.nodes[leaf], LayerNorm)]
        spikes = [leaf for leaf in leaves if leaf not in normed]
        bounds = [_int_bound(graph, preds, leaf, memo) for leaf in spikes]
        if len(normed) > 1 or None in bounds:
            continue
        embed: list[str] = []
        bound_e = 0
        if normed:
            embed = list(preds.get(normed[0], []))
            e_bounds = [_int_bound(graph, preds, leaf, memo) for leaf in embed]
            if not embed or None in e_bounds:
                continue
            bound_e = sum(e_bounds)
        folds.append(Fold(linear=name, norm=norm, now=now, prev=prev, spikes=tuple(spikes),
                          normed=normed[0] if normed else None, embed=tuple(embed), bound_s=sum(bounds),
                          bound_e=bound_e))
    return folds
