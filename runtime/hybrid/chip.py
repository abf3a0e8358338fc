"""The integer semantics of a chip layer per call (compiler/hybrid/ir.py), in numpy: the reference every other
backend of hybrid programs (torch, Lava) is tested against.

Tensors carry leading batch axes (sequences, positions) before the neuron axis; each position is its own copy of
the layer's neurons (time-multiplexed on the same cores). Integers only; projection sums use float64 matmuls,
exact because the compiler bounds every accumulator to 24 bits (< 2^53).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from spikestack.compiler.hybrid.ir import STATE_MAX, QChipLayer

from ..neurons import BiSpikeTables, LIFFields, bispike_step, gif_charge, gif_step, lif_step


@dataclass
class LayerState:
    u: np.ndarray | None = None
    v: np.ndarray | None = None
    s: np.ndarray | None = None
    saturations: int = 0
    extra: dict = field(default_factory=dict)


def _tables(layer: QChipLayer) -> BiSpikeTables:
    return BiSpikeTables(thresholds=np.asarray(layer.thresholds, np.int64), carry=np.asarray(layer.carry, np.int64),
                         carry_shift=int(layer.carry_shift), levels=int(layer.levels), state_max=STATE_MAX)


def lif_fields(layer: QChipLayer) -> LIFFields:
    return LIFFields(du=layer.du, dv=layer.dv, vth=layer.vth, bias=np.zeros(layer.width, np.int64))


def neuron_steps(layer: QChipLayer, x: np.ndarray, state: LayerState, call: int) -> np.ndarray:
    """Run the layer's neurons for one call; returns payloads int64 [steps, ..., width] and updates `state`."""
    x = np.asarray(x, np.int64)
    if layer.kind == "bispike":
        t = call % layer.period
        u, s, sat = bispike_step(state.u if t else None, state.s if t else None, x, t, _tables(layer))
        state.u, state.s = u, s
        state.saturations += int(sat.sum())
        return (s * int(layer.amplitude[t]))[None]
    if layer.kind == "relay":  # host-injected graded events: the payload is the input
        state.saturations += int((np.abs(x) > layer.levels).sum())
        return np.clip(x, -layer.levels, layer.levels)[None]
    if layer.kind == "lif":
        if state.u is None:
            state.u, state.v = np.zeros_like(x), np.zeros_like(x)
        state.u, state.v, s = lif_step(state.u, state.v, x, lif_fields(layer))
        return s[None]
    # gif: the charge empties in ≤ K steps of at most L − 1
    u, negative = gif_charge(x)
    state.saturations += int(negative.sum())
    out = np.empty((layer.steps, *x.shape), np.int64)
    for k in range(layer.steps):
        u, out[k] = gif_step(u, layer.levels)
    return out


def project(layer: QChipLayer, payloads: np.ndarray) -> np.ndarray:
    """Accumulators int64 [..., groups, out] = Σ_steps Σ_{i ∈ g} weight[o, i] · payload_i."""
    p = layer.projection
    total = payloads.sum(0).astype(np.float64)
    w = np.asarray(p.weight, np.float64)
    groups = np.asarray(p.groups)
    out = np.stack([total[..., groups == g] @ w[:, groups == g].T for g in range(p.n_groups)], axis=-2)
    return out.astype(np.int64)


def chip_call(layer: QChipLayer, x: np.ndarray, state: LayerState, call: int) -> tuple[np.ndarray, np.ndarray]:
    """(output tensor for the host, payloads [steps, ..., width]) of one call."""
    payloads = neuron_steps(layer, x, state, call)
    if layer.projection is not None:
        return project(layer, payloads), payloads
    return (payloads.sum(0) if layer.kind == "gif" else payloads[-1]), payloads
