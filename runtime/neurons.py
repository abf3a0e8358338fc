"""The one definition of every integer neuron kind the compiler emits.

The reference executor calls these steps vectorised over [tokens, neurons]; the Lava ProcessModels in
`runtime/lava/procs/` call the same functions on one vector per Lava time step; the torch fake-quant model
re-derives them in real units and is tested against them. Integers only: int64 arithmetic, explicit saturation.

Bi-spike step (REFERENCE.md §1.1 in fixed point; `compiler/passes/quantize.py` derives the tables):

    t == 0:  u = x
    t >  0:  u = (u · carry[t-1, s_prev + K] + 2^(shift-1)) >> shift  + x      # round half up
    u = clip(u, -state_max, state_max)                                         # 24-bit saturation
    s = Σ_k [u > θ[t, k]] - [u < -θ[t, k]]                                      # signed level in -K..K

`x` is the synaptic input of this step plus the neuron's bias.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class BiSpikeTables(NamedTuple):
    thresholds: np.ndarray  # int64 [T, K], positive, ascending in k
    carry: np.ndarray  # int64 [T, 2K+1]
    carry_shift: int
    levels: int
    state_max: int


def bispike_step(
    u: np.ndarray, s_prev: np.ndarray, x: np.ndarray, t: int, tables: BiSpikeTables
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One step of the integer bi-spike neuron. Returns (u, s, saturated) with s int64 in -K..K."""
    x = x.astype(np.int64, copy=False)
    if t == 0:
        u = x.copy()
    else:
        u = u.astype(np.int64, copy=False) * tables.carry[t - 1][s_prev + tables.levels]  # a new array
        u += np.int64(1) << (tables.carry_shift - 1)  # in place from here on: this is the executor's hot loop
        u >>= tables.carry_shift
        u += x
    saturated = np.abs(u) > tables.state_max
    np.minimum(u, tables.state_max, out=u)
    np.maximum(u, -tables.state_max, out=u)
    theta = tables.thresholds[t]
    if tables.levels == 1:  # the ternary case, without the [..., K] intermediate (hot path of the executor)
        s = (u > theta[0]).astype(np.int64) - (u < -theta[0])
    else:
        s = (u[..., None] > theta).sum(-1) - (u[..., None] < -theta).sum(-1)
    return u, s.astype(np.int64, copy=False), saturated


def readout_step(
    acc: np.ndarray, x: np.ndarray, t: int, state_max: int
) -> tuple[np.ndarray, np.ndarray]:
    """Token accumulator: acc = x at t == 0, else acc + x; saturating. Returns (acc, saturated)."""
    x = x.astype(np.int64, copy=False)
    acc = x.copy() if t == 0 else acc + x
    saturated = np.abs(acc) > state_max
    return np.clip(acc, -state_max, state_max), saturated


def tables_for(pop, state_max: int) -> BiSpikeTables:  # pop: compiler.ir.QSpikingPop (artifact content)
    """The runtime's view of a compiled population's tables."""
    return BiSpikeTables(thresholds=np.asarray(pop.thresholds, np.int64), carry=np.asarray(pop.carry, np.int64),
                         carry_shift=int(pop.carry_shift), levels=int(pop.levels), state_max=state_max)


def gif_charge(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """GIF (SpikeLLM) call start: the host's input is the unsigned charge u. Returns (u, negative): a negative
    input is clipped to 0 and counted as a saturation."""
    x = np.asarray(x, np.int64)
    return np.clip(x, 0, None), x < 0


def gif_step(u: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray]:
    """One GIF step: s = min(u, L − 1), u ← u − s (the charge empties in ≤ K steps). Returns (u, s) int64."""
    s = np.minimum(u, levels - 1)
    return u - s, s


class LIFFields(NamedTuple):
    du: int
    dv: int
    vth: int
    bias: np.ndarray  # int64 [n]: bias_mant << bias_exp (Lava's effective bias)


DECAY_SHIFT = 12  # Lava fixed_pt LIF (lava/proc/lif/models.py; REFERENCE.md §5.4)
ACT_SHIFT = 6
UV_HALF_RANGE = 1 << 23  # 24-bit u and v


def lif_bias(bias_mant: np.ndarray, bias_exp: np.ndarray) -> np.ndarray:
    mant = np.asarray(bias_mant, np.int64)
    exp = np.asarray(bias_exp, np.int64)
    return np.where(exp >= 0, mant << np.maximum(exp, 0), mant >> np.maximum(-exp, 0))


def _decay(x: np.ndarray, keep: int) -> np.ndarray:
    """x · keep / 2^12 truncated toward zero, as Lava does (sign · (|x·keep| >> 12))."""
    prod = x.astype(np.int64) * keep
    return np.sign(prod) * (np.abs(prod) >> DECAY_SHIFT)


def lif_step(u: np.ndarray, v: np.ndarray, a_in: np.ndarray, f: LIFFields
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One step of Lava's fixed_pt LIF (PyLifModelBitAcc), bit for bit. Returns (u, v, spikes as int64 0/1).

        u ← trunc(u · (4096 - du - 1) / 4096) + (a_in << 6), wrapped to 24 bits (Loihi 1's ds_offset = 1)
        v ← clip(trunc(v · (4096 - dv) / 4096) + u + bias, ±(2^23 - 1));  s = v > vth << 6;  v[s] = 0
    """
    u = _decay(u, (1 << DECAY_SHIFT) - (f.du + 1)) + (a_in.astype(np.int64) << ACT_SHIFT)
    u = np.where(u > UV_HALF_RANGE, u - 2 * UV_HALF_RANGE, u)
    u = np.where(u <= -UV_HALF_RANGE, u + 2 * UV_HALF_RANGE, u)
    v = _decay(v, (1 << DECAY_SHIFT) - f.dv) + u + f.bias
    v = np.clip(v, -UV_HALF_RANGE + 1, UV_HALF_RANGE - 1)
    s = v > (f.vth << ACT_SHIFT)
    v = np.where(s, 0, v)
    return u, v, s.astype(np.int64)
