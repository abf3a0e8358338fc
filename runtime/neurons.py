"""The one definition of every integer neuron kind the compiler emits.

The reference executor calls these steps vectorised over [tokens, neurons]; the Lava ProcessModels in
`runtime/lava/procs/` call the same functions on one vector per Lava time step; the torch fake-quant model
re-derives them in real units and is tested against them. Integers only: int64 arithmetic, explicit saturation.

Bi-spike step (REFERENCE.md §1.1 in fixed point; `compiler/passes/quantize.py` derives the tables):

    t == 0:  u = x
    t >  0:  u = (u · carry[t-1, s_prev + K] + 2^(shift-1)) >> shift  + x      # round half up
    u = clip(u, -state_max, state_max)                                         # the target's state width
    s = Σ_k [u > θ[t, k]] - [u < -θ[t, k]]                                      # signed level in -K..K

`x` is the synaptic input of this step plus the neuron's bias. Widths and shifts (state_max, the carry shift, the
LIF's decay bits and activation shift) come from the program's target (`compiler/targets.py`), never from here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from spikestack.compiler.targets import Target


class BiSpikeTables(NamedTuple):
    thresholds: np.ndarray  # int64 [T, K], positive, ascending in k
    carry: np.ndarray  # int64 [T, 2K+1]
    carry_shift: int
    levels: int
    state_max: int
    carry_by_byte: np.ndarray | None = None  # int32 [T, 256]: `carry_lookup`, for int32 callers; None: built per step


def carry_lookup(carry: np.ndarray, levels: int) -> np.ndarray:
    """carry[t, s + K] at [t, s mod 256] (int32; s in -K..K, K < 128): the carry of an int8 level s read through
    the level's byte (`s.view(np.uint8)`), one gather with no index arithmetic. The int32 step's lookup was three
    passes (widen to intp, add K, gather) taking a fifth of a step on the MLP's 128-neuron rows (measured)."""
    carry = np.asarray(carry, np.int64)
    table = np.zeros((carry.shape[0], 256), np.int32)
    for s in range(-levels, levels + 1):
        table[:, s % 256] = carry[:, s + levels]
    return table


def narrow_dtype(tables: BiSpikeTables) -> type:
    """int32 when every intermediate of `bispike_step` provably fits 31 bits, else int64 (same integers).

    With u = h · 2^shift + l (0 <= l < 2^shift), (u · c + 2^(shift-1)) >> shift = h · c + ((l · c + 2^(shift-1)) >>
    shift) exactly, so the products stay below max|h| · max c and 2^shift · max c instead of state_max · max c
    (2^23 · 2^14 overflows int32; the split parts are 2^25 and 2^26). Half the bytes per pass: the executor's
    bi-spike loop runs at about 1.6× the int64 speed (bench/runtime_speed.py)."""
    c_max = int(np.abs(tables.carry).max(initial=0))
    h_max = (tables.state_max >> tables.carry_shift) + 1
    limit = (1 << 31) - 1
    fits = (h_max * c_max + (((1 << tables.carry_shift) * c_max) >> tables.carry_shift) + 2 * tables.state_max < limit
            and (1 << tables.carry_shift) * (c_max + 1) < limit)
    return np.int32 if fits else np.int64


def bispike_step(
    u: np.ndarray | None, s_prev: np.ndarray | None, x: np.ndarray, t: int, tables: BiSpikeTables,
    word: type | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One step of the integer bi-spike neuron. Returns (u, s, saturated) with s in -K..K.

    Integers in `word` (default: u's dtype, int64 at t = 0): int64, or int32 where `narrow_dtype` proves it
    exact — then the carry product is split (see there); s is int64 for int64 callers, int8 for int32 ones.
    The executors call `bispike_step_count`, the same step with the saturations counted instead of masked.
    """
    u, s, saturated = _bispike(u, s_prev, x, t, tables, word)
    return u, s, saturated if saturated is not None else np.zeros(u.shape, bool)


def bispike_step_count(
    u: np.ndarray | None, s_prev: np.ndarray | None, x: np.ndarray, t: int, tables: BiSpikeTables,
    word: type | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """`bispike_step` returning how many neurons saturated, not where: no all-False mask to build and add up in
    the executors' hot loops, where saturation is rare."""
    u, s, saturated = _bispike(u, s_prev, x, t, tables, word)
    return u, s, 0 if saturated is None else int(saturated.sum())


def _bispike(
    u: np.ndarray | None, s_prev: np.ndarray | None, x: np.ndarray, t: int, tables: BiSpikeTables,
    word: type | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The step of `bispike_step`; saturated is None when no neuron saturated.

    The executor's hot loop (every SpikeLM layer and call over all positions), so it avoids numpy passes that do
    not change the result: the int32 carry lookup reads the level's byte (`carry_lookup`), the int64 one skips
    bounds checks (`mode="clip"`: s_prev is in -K..K, so no index is ever clipped), the clip to ±state_max runs
    only if a value is beyond it, a converted input is not copied again, and the levels are added up as int8
    (per 16k neurons, measured: lookup 26 → 15 µs, saturation 38 → 11 µs, levels 33 → 26 µs).
    """
    dtype = np.dtype(word if word is not None else np.int64 if u is None else u.dtype)
    word = dtype.type
    x_in, x = x, x.astype(dtype, copy=False)
    if t == 0:
        u = x if x is not x_in else x.copy()  # a converted input is already a fresh array
    elif dtype == np.int64:
        carry = np.take(tables.carry[t - 1], s_prev + tables.levels, mode="clip")
        u = np.multiply(u, carry, dtype=np.int64)  # a new array
        u += np.int64(1) << (tables.carry_shift - 1)  # in place from here on
        u >>= tables.carry_shift
        u += x
    else:  # int32: h · c + ((l · c + half) >> shift), exact (narrow_dtype)
        if s_prev.dtype == np.int8:  # by the level's byte: -K..K are distinct bytes for K < 128 (carry_lookup)
            table = tables.carry_by_byte if tables.carry_by_byte is not None else carry_lookup(tables.carry,
                                                                                               tables.levels)
            carry = np.take(table[t - 1], s_prev.view(np.uint8), mode="wrap")  # every byte is in range; "wrap"
            # skips the bounds check of the default "raise" (per 32k levels, measured: 84 → 26 µs)
        else:
            carry = np.take(tables.carry[t - 1].astype(dtype), s_prev.astype(np.intp) + tables.levels, mode="clip")
        low = u & word((1 << tables.carry_shift) - 1)
        low *= carry
        low += word(1 << (tables.carry_shift - 1))
        low >>= tables.carry_shift
        u = u >> tables.carry_shift  # a new array
        u *= carry
        u += low
        u += x
    saturated = None
    if u.size and (u.max() > tables.state_max or u.min() < -tables.state_max):
        saturated = np.abs(u) > tables.state_max
        np.minimum(u, tables.state_max, out=u)
        np.maximum(u, -tables.state_max, out=u)
    theta = tables.thresholds[t]
    # one comparison per level: a sum over a [..., K] axis of size 2 was 20× slower (measured, K = 2)
    s = (u > theta[0]).view(np.int8) - (u < -theta[0]).view(np.int8)
    if tables.levels > 1:
        s = s.astype(np.int8 if tables.levels < 128 else np.int16, copy=False)
        for k in range(1, tables.levels):
            s += (u > theta[k]).view(np.int8)
            s -= (u < -theta[k]).view(np.int8)
    return u, (s if dtype != np.int64 else s.astype(np.int64)), saturated


def readout_step(
    acc: np.ndarray, x: np.ndarray, t: int, state_max: int
) -> tuple[np.ndarray, np.ndarray]:
    """Token accumulator: acc = x at t == 0, else acc + x; saturating. Returns (acc, saturated)."""
    x = x.astype(np.int64, copy=False)
    acc = x.copy() if t == 0 else acc + x
    saturated = np.abs(acc) > state_max
    return np.clip(acc, -state_max, state_max), saturated


def tables_for(pop, state_max: int) -> BiSpikeTables:  # pop: a chain's QSpikingPop or a hybrid BiSpikeLayer
    """The runtime's view of a compiled population's tables (with the int32 step's carry lookup)."""
    levels = int(pop.levels)
    return BiSpikeTables(thresholds=np.asarray(pop.thresholds, np.int64), carry=np.asarray(pop.carry, np.int64),
                         carry_shift=int(pop.carry_shift), levels=levels, state_max=state_max,
                         carry_by_byte=carry_lookup(pop.carry, levels) if levels < 128 else None)


def gif_charge(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """GIF (SpikeLLM) call start: the host's input is the unsigned charge u. Returns (u, negative): a negative
    input is clipped to 0 and counted as a saturation."""
    x = np.asarray(x, np.int64)
    return np.clip(x, 0, None), x < 0


def gif_step(u: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray]:
    """One GIF step: s = min(u, L − 1), u ← u − s (the charge empties in ≤ K steps). Returns (u, s) int64."""
    s = np.minimum(u, levels - 1)
    return u - s, s


def gif_call(u: np.ndarray, levels: int, steps: int) -> np.ndarray:
    """All `steps` GIF steps of one call from the charge u >= 0 (after `gif_charge`): payloads [steps, ...], each
    step `gif_step`'s s. int16 where L − 1 fits it (the executor records int16 payloads), else int64; u is not
    written. The steps run in place on one scratch charge (SpikeLLM: every layer over all positions at once)."""
    out = np.empty((steps, *u.shape), np.int16 if levels - 1 < 1 << 15 else np.int64)
    for k in range(steps):
        np.minimum(u, levels - 1, out=out[k])  # s = min(u, L − 1)
        if k + 1 < steps:  # u ← u − s (the last step's rest is not kept: the charge lives for one call)
            u = u - out[k] if k == 0 else np.subtract(u, out[k], out=u)
    return out


class LIFFields(NamedTuple):
    """A LIF population's fields and the target widths its step runs in (Lava: 12, 6, 24)."""

    du: int
    dv: int
    vth: int
    bias: np.ndarray  # int64 [n]: bias_mant << bias_exp (Lava's effective bias)
    decay_bits: int  # decays keep x·(2^decay_bits − d) >> decay_bits
    activation_shift: int  # a_in and vth are shifted left by this before meeting u and v
    state_bits: int  # u wraps and v saturates at this signed width


def lif_fields(du: int, dv: int, vth: int, bias: np.ndarray, target: Target) -> LIFFields:
    """The fields of one population in the widths of the program's target."""
    return LIFFields(du=int(du), dv=int(dv), vth=int(vth), bias=bias, decay_bits=target.decay_bits,
                     activation_shift=target.activation_shift, state_bits=target.state_bits)


def lif_bias(bias_mant: np.ndarray, bias_exp: np.ndarray) -> np.ndarray:
    mant = np.asarray(bias_mant, np.int64)
    exp = np.asarray(bias_exp, np.int64)
    return np.where(exp >= 0, mant << np.maximum(exp, 0), mant >> np.maximum(-exp, 0))


def _decay(x: np.ndarray, keep: int, shift: int) -> np.ndarray:
    """x · keep / 2^shift truncated toward zero, as Lava does (sign · (|x·keep| >> 12)); a new int64 array.

    Computed as a floor shift of x·keep + (2^shift − 1 if negative): the same integer, in place and without the
    sign/abs temporaries (the executor calls this twice per LIF layer and token)."""
    prod = np.multiply(x, keep, dtype=np.int64)
    bias = prod >> 63  # −1 where negative, else 0
    bias &= (1 << shift) - 1
    prod += bias
    prod >>= shift
    return prod


def lif_step(u: np.ndarray, v: np.ndarray, a_in: np.ndarray, f: LIFFields
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One step of Lava's fixed_pt LIF (PyLifModelBitAcc), bit for bit in Lava's widths (decay_bits D = 12,
    activation_shift A = 6, state_bits S = 24), and the same arithmetic in any other target's. With U = 2^D:

        u ← trunc(u · (U - du - 1) / U) + (a_in << A), wrapped to S bits (Loihi 1's ds_offset = 1)
        v ← clip(trunc(v · (U - dv) / U) + u + bias, ±(2^(S-1) - 1));  s = v > vth << A;  v[s] = 0

    Returns (u, v, spikes as int64 0/1).

    u, v and a_in have one shape. In place on fresh arrays (the inputs are never written), the wrap only when a
    value needs it: SpikeGPT calls this once per LIF layer and token on a few hundred neurons, where each numpy
    call's fixed cost, not the arithmetic, is the time (4 × 64 neurons, measured: 41 → 24 µs).
    """
    half = 1 << (f.state_bits - 1)  # u wraps into (−half, half], v saturates at ±(half − 1)
    u_new = np.left_shift(a_in, f.activation_shift, dtype=np.int64)
    keep_u = (1 << f.decay_bits) - (f.du + 1)
    if keep_u:  # du = U - 1 (SpikeGPT's) keeps nothing of u
        u_new += _decay(u, keep_u, f.decay_bits)
    if u_new.size and (u_new.max() > half or u_new.min() <= -half):  # rare: wrap
        u_new = np.where(u_new > half, u_new - 2 * half, u_new)
        u_new = np.where(u_new <= -half, u_new + 2 * half, u_new)
    v_new = _decay(v, (1 << f.decay_bits) - f.dv, f.decay_bits)
    v_new += u_new
    v_new += f.bias
    np.minimum(v_new, half - 1, out=v_new)
    np.maximum(v_new, -half + 1, out=v_new)
    s = v_new > (f.vth << f.activation_shift)
    v_new[s] = 0
    return u_new, v_new, s.astype(np.int64)
