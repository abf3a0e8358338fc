"""fold (SpikeGPT "dataflow"): Linears of a normed residual stream become event-driven projections.

SpikeGPT's residual stream is x = LN0(e) + S, with e the binary embedding (a real one: below) and S the sum of
every earlier LIF's spikes (REFERENCE.md §3.1), so both e and S are integer vectors. A Linear reading c ⊙ LN(x)
(c = the time-mix μ, 1 − μ on the token-shifted branch, or 1) is then, with m, σ the per-token mean and deviation,

    W diag(c) LN(x) = [W diag(cγγ0) e / σ_e − (m_e/σ_e) W(cγγ0) + W diag(cγ) β0 + W diag(cγ) S − m_x W(cγ)] / σ_x
                      + W (c ⊙ β)

(γ0, β0, m_e, σ_e: the LN0 of e; absent when x has no normed part). The two matrix products with integer vectors
are what the cores compute: e and S enter as graded events (channel groups 0 and 1 of a ``relay`` layer), and
the host applies the per-token scalars and constants. The token-shifted branch folds the same way: its rows are
stacked under the current token's, and the host keeps their result one call as state (the Delay's value).

A Linear folds when every input edge is `LN`, `Scale(c) ← LN`, `Delay ← LN` or `Scale(c) ← Delay ← LN` of one
LayerNorm, and that LayerNorm's input decomposes through unit `Scale` sums into integer leaves (LIF spikes, the
flattened integer embedding) plus at most one LayerNorm of integer leaves or of one real-valued token embedding.

**Real-valued embedding** (SpikeGPT-216M: a float BPE embedding, so LN0(e) is dense and real). LN0(e_v) depends
only on the token id v, so its values are the rows of a table A = LN0(E) [V, C], known at compile time. Three
ways to get W diag(cγ) a_v onto the cores were weighed:

* a per-token table of the folded products W diag(cγ) A per fold and branch, looked up on the host: exact, but
  at the 216M shape it holds 18 blocks × 12,288 outputs × 50,277 tokens ≈ 1.1·10^10 floats (44 GB) plus the
  head's 50,277²: it does not fit, and it moves the folded work back to the host;
* graded events of e's own payload behind the current LN0 split: e is real, so it must be rounded anyway, and
  the rounding error is then magnified by γ0/σ_e of each token;
* **graded events of the normed embedding's payload (chosen)**: a_v on a power-of-two grid δ with a
  per-channel integer offset o, u_v = round(a_v/δ) − o ∈ [0, L] (L ≤ 2^EMBED_PAYLOAD_BITS − 1, unsigned so the
  binary plane codes of Loihi 1 carry it too). The cores hold W diag(cγ) twice (the u group and the S group,
  the same mantissas) and compute both integer products exactly; the host applies

      W diag(c) LN(x) = [δ·(W diag(cγ) u + W diag(cγ) o) + W diag(cγ) S − m_x W(cγ)] / σ_x + W (c ⊙ β)

  with δ·(·) on the u group's accumulator and the constant W diag(cγ) o from the integer mantissas (exact).
  The one approximation is the rounding of a_v (|error| ≤ δ/2 per channel; `compile --calibrate` reports what
  it costs per layer), and the host computes m_x, σ_x from the exact x. Grid and offsets come from A's
  per-channel range (one float64 pass over the table, shared by every fold of the model). The binary path is
  untouched: its folds have ``embed_step == 0``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import nir
import numpy as np
from spikestack.models.nir.nodes import Embedding
from spikestack.models.nir.ops import LayerNorm

# Payload bits of the quantized normed embedding u (real-valued embeddings). 8 bits keep δ ≈ range/255 (about
# 0.06 for a unit-variance LN0 output over 50,277 tokens); each extra bit halves δ but doubles the worst-case
# accumulator, which costs the whole relay a weight bit once Σ|m|·L passes the 24-bit state (quantize.mantissas).
EMBED_PAYLOAD_BITS = 8
TABLE_CHUNK = 1 << 14  # embedding rows per float64 LN0 chunk (the 216M table is 50,277 × 768)


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
    bound_e: int  # max |e| per channel (real embedding: L, the largest payload u)
    embed_step: float = 0.0  # δ of a real-valued embedding's quantized LN0 output; 0: e itself is integer
    # o [C] (int64): u = round(LN0(e)/δ) − o; not compared (an array: a truth value of == would be ambiguous)
    embed_offset: np.ndarray | None = field(default=None, compare=False)

    @property
    def real_embedding(self) -> bool:
        return self.embed_step > 0


def embed_scale(graph: nir.NIRGraph, fold: Fold) -> np.ndarray | None:
    """Per-channel factor of the e column group's weights beyond c·γ: γ0 of LN0 for an integer embedding (its
    input e is sent), ones for a real one (its quantized output u is sent, δ applied on the host), None without
    LN0."""
    if fold.normed is None:
        return None
    gamma0 = np.asarray(graph.nodes[fold.normed].weight, np.float64)
    return np.ones_like(gamma0) if fold.real_embedding else gamma0


@dataclass(frozen=True)
class EmbedGrid:
    """The power-of-two grid of a real embedding's LN0 output (see the module docstring)."""

    step: float  # δ
    offset: np.ndarray  # o [C], int64
    levels: int  # L = max u


def _table(graph: nir.NIRGraph, preds: dict[str, list[str]], leaves: list[str]) -> np.ndarray | None:
    """The rows e can take when e is one flattened single-id Embedding: its table [V, C]; else None."""
    if len(leaves) != 1:
        return None
    name = leaves[0]
    if isinstance(graph.nodes[name], nir.Flatten) and len(preds.get(name, [])) == 1:
        name = preds[name][0]
    node = graph.nodes[name]
    if not isinstance(node, Embedding) or int(node.context) != 1:
        return None
    return np.asarray(node.weight)


def embed_grid(norm: LayerNorm, table: np.ndarray, bits: int = EMBED_PAYLOAD_BITS) -> EmbedGrid:
    """δ = the smallest power of two with every channel's range of LN0(table) within 2^bits − 2 steps (so the
    rounded range is at most 2^bits − 1), o = round(min/δ) per channel. float64, in row chunks."""
    lo = np.full(table.shape[1], np.inf)
    hi = np.full(table.shape[1], -np.inf)
    for start in range(0, table.shape[0], TABLE_CHUNK):
        a = norm.reference(np.asarray(table[start:start + TABLE_CHUNK], np.float64))
        np.minimum(lo, a.min(0), out=lo)
        np.maximum(hi, a.max(0), out=hi)
    span = float((hi - lo).max())
    step = 2.0 ** math.ceil(math.log2(span / (2**bits - 2))) if span > 0 else 1.0
    offset = np.round(lo / step).astype(np.int64)
    levels = int((np.round(hi / step).astype(np.int64) - offset).max())
    return EmbedGrid(step=step, offset=offset, levels=max(levels, 1))


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
    grids: dict[str, EmbedGrid | None] = {}  # LN0 → its grid when e is a real embedding (shared by every fold)
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
        grid = None
        if normed:
            embed = list(preds.get(normed[0], []))
            e_bounds = [_int_bound(graph, preds, leaf, memo) for leaf in embed]
            if not embed:
                continue
            if None in e_bounds:  # a real embedding: fold its quantized LN0 output instead
                if normed[0] not in grids:
                    table = _table(graph, preds, embed)
                    grids[normed[0]] = None if table is None else embed_grid(graph.nodes[normed[0]], table)
                grid = grids[normed[0]]
                if grid is None:
                    continue
                bound_e = grid.levels
            else:
                bound_e = sum(e_bounds)
        folds.append(Fold(linear=name, norm=norm, now=now, prev=prev, spikes=tuple(spikes),
                          normed=normed[0] if normed else None, embed=tuple(embed), bound_s=sum(bounds),
                          bound_e=bound_e, embed_step=0.0 if grid is None else grid.step,
                          embed_offset=None if grid is None else grid.offset))
    return folds
