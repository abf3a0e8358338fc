"""The reference executor: runs a compiled program with integer arithmetic, vectorised over tokens and neurons.

Tokens are independent (every state resets at a token's first step, REFERENCE.md §1.4), so the executor runs
layer by layer over a cache-sized chunk of tokens at a time (CHUNK_STATES): for each population, T calls of the
neuron step from `runtime.neurons`, then one matmul of payloads by weight mantissas for the next population.
The matmul runs in float32 BLAS and is exact: `quantize` proves Σ_j |w_ij|·|payload_j| + |bias_i| <= state_max
< 2^23 for every neuron, so every partial sum, in any summation order, is an integer below 2^24 and float32
represents it exactly (wider states fall back to float64, exact below 2^53). The host part (embedding lookup,
readout scaling) runs as ONNX in onnxruntime (`runtime/host.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from spikestack.compiler.encodings import plane_scales, to_planes
from spikestack.compiler.ir import Program, QLIFPop, QProjection, QReadoutPop, QSpikingPop

from . import host
from .neurons import (
    BiSpikeTables,
    bispike_step_count,
    lif_bias,
    lif_fields,
    lif_step,
    narrow_dtype,
    readout_step,
    tables_for,
)
from .trace import Trace


def host_inputs(program: Program, ids: np.ndarray) -> np.ndarray:
    """Token contexts [tokens, context] → input currents [tokens, n_in] (the host's `encode` program)."""
    return host.encode(program, ids)


def synaptic_input(payload: np.ndarray, weight: np.ndarray, state_bits: int) -> np.ndarray:
    """Σ_j w_ij · payload_j for [tokens, T, n_src] payloads → int64 [tokens, T, n_dst] (exact, see module doc)."""
    return _exact_product(payload, weight, state_bits).astype(np.int64)


def _exact_product(payload: np.ndarray, weight: np.ndarray, state_bits: int) -> np.ndarray:
    """The same product left in its float dtype (integer-valued, exact): the token loop converts one step at a
    time instead of the whole [tokens, T, n] block (bench/runtime_speed.py: one pass fewer per population)."""
    dtype = np.float32 if state_bits <= 24 else np.float64
    flat = payload.reshape(-1, payload.shape[-1]).astype(dtype, copy=False)  # one 2-D GEMM, not one per token
    out = flat @ np.asarray(weight, dtype=dtype).T
    return out.reshape(*payload.shape[:-1], -1)


def projection_input(levels: np.ndarray, pop: QSpikingPop, proj: QProjection, state_bits: int) -> np.ndarray:
    """The destination's synaptic input from a bi-spike population, computed the way the encoding carries it.

    graded: W · (s · amplitude[t]). unary / bitserial: the binary planes of `compiler/encodings.py`, each through
    W, summed with their ±1 / ±2^b scales, times the per-step gain — literally what the hardware would do, so
    tests can prove every encoding equal to the graded (unlowered) one. Integer-valued, in float32 (float64 for
    states wider than 24 bits) for graded projections: exact by the bound in the module docstring.
    """
    if proj.encoding == "graded":
        dtype = np.float32 if state_bits <= 24 else np.float64
        payload = levels * np.asarray(pop.amplitude, dtype)[None, :, None]  # exact small integers
        return _exact_product(payload, proj.weight, state_bits)
    planes = to_planes(levels, proj.encoding, pop.levels)  # [tok, T, P, n_src]
    scales = plane_scales(proj.encoding, pop.levels)
    total = np.zeros((*levels.shape[:2], proj.weight.shape[0]), np.int64)
    for p, scale in enumerate(scales):
        total += scale * synaptic_input(planes[:, :, p], proj.weight, state_bits)
    return total * np.asarray(proj.gain, np.int64)[None, :, None]


def _readout_cannot_saturate(program: Program, pop: QSpikingPop, proj: QProjection) -> bool:
    """True when a graded projection into the readout cannot move any accumulator past ±state_max in a token:
    T · max_t |a_t| · K · Σ_j |w_ij| <= state_max for every i. Then the readout equals W · Σ_t (s_t · a_t), one
    product over tokens instead of one per step (the same integers; float32 exact: the sum is within state_max)."""
    if proj.encoding != "graded" or not isinstance(program.pop(proj.dst), QReadoutPop):
        return False
    reach = int(np.abs(np.asarray(proj.weight, np.int64)).sum(1).max(initial=0))
    bound = program.steps * int(np.abs(np.asarray(pop.amplitude, np.int64)).max(initial=0)) * pop.levels * reach
    return bound <= program.state_max and program.state_bits <= 24


def readout_logits(program: Program, acc: np.ndarray) -> np.ndarray:
    """Readout accumulators → logits (the host's `decode` program)."""
    return host.decode(program, acc)


# Tokens per chunk of the token loop: about this many neuron states per array (128 KB of int32), so that one
# step's arrays stay in the core's L2 cache (512 KB here) instead of streaming 4096 × 128 states through memory
# on every numpy pass: the MLP's run took 0.65× the time in chunks of 256 tokens (measured, one thread, under load).
CHUNK_STATES = 1 << 15


@dataclass(frozen=True)
class _Layer:
    """What every chunk of the token loop reuses of one bi-spike population, built once per run."""

    pop: QSpikingPop
    tables: BiSpikeTables
    dtype: type  # the step's integers (`narrow_dtype`)
    bias: np.ndarray  # in `dtype`
    proj: QProjection  # the projection leaving the population
    summed: bool  # the readout fast path (`_readout_cannot_saturate`)
    weight_t: np.ndarray | None  # graded: weight.T in the exact float type of `_exact_product`


def _layers(program: Program) -> dict[str, _Layer]:
    out = {}
    float_dtype = np.float32 if program.state_bits <= 24 else np.float64
    for pop in program.populations:
        if not isinstance(pop, QSpikingPop):
            continue
        tables = tables_for(pop, program.state_max)
        dtype = narrow_dtype(tables)  # int32 where provably exact: half the bytes per pass
        proj = next(p for p in program.projections if p.src == pop.name)
        weight_t = np.asarray(proj.weight, float_dtype).T if proj.encoding == "graded" else None
        out[pop.name] = _Layer(pop=pop, tables=tables, dtype=dtype, bias=np.asarray(pop.bias, dtype), proj=proj,
                               summed=_readout_cannot_saturate(program, pop, proj), weight_t=weight_t)
    return out


def run(program: Program, ids: np.ndarray) -> Trace:
    """Token programs take token contexts [tokens, context]; delayed (LIF) programs binary events (see run_delayed).

    Tokens are independent, so the tokens run in chunks of about CHUNK_STATES neuron states (the same integers as
    one pass over all tokens; the saturation counts add up)."""
    if program.timing == "delayed":
        return run_delayed(program, ids)
    inputs = host_inputs(program, ids)
    n_tok, steps = inputs.shape[0], program.steps
    layers = _layers(program)
    spikes = {name: np.empty((n_tok, steps, la.pop.size), np.int8) for name, la in layers.items()}
    saturations = {pop.name: 0 for pop in program.populations}
    acc = np.zeros((n_tok, program.populations[-1].size), np.int64)
    widest = max(pop.size for pop in program.populations)
    rows = max(1, CHUNK_STATES // widest)
    for lo in range(0, n_tok, rows):
        chunk = slice(lo, min(lo + rows, n_tok))
        acc[chunk] = _run_tokens(program, layers, inputs[chunk], spikes, saturations, chunk)
    return Trace(spikes=spikes, readout=acc, logits=readout_logits(program, acc), inputs=inputs,
                 saturations=saturations)


def _run_tokens(program: Program, layers: dict[str, _Layer], inputs: np.ndarray, spikes: dict[str, np.ndarray],
                saturations: dict[str, int], chunk: slice) -> np.ndarray:
    """One chunk of tokens through every population: writes spikes[name][chunk], adds to `saturations`, returns
    the readout accumulators. Step-major inside ([T, tokens, n]): each step's rows are contiguous."""
    n_tok, steps = inputs.shape[0], program.steps
    current = inputs[None]  # the same input every step: [1, tokens, n]; later populations [T, tokens, n]
    acc = np.zeros((n_tok, 0), np.int64)
    summed_over_steps = False  # set when the readout's input arrives already summed over the token's steps
    for pop in program.populations:
        if isinstance(pop, QSpikingPop):
            la = layers[pop.name]
            levels = np.empty((steps, n_tok, pop.size), np.int8)
            xs = current.astype(la.dtype)  # every step's input in one conversion, the bias added in place
            xs += la.bias
            u = s = None
            sat = 0
            for t in range(steps):
                u, s, saturated = bispike_step_count(u, s, xs[min(t, len(xs) - 1)], t, la.tables, la.dtype)
                levels[t] = s
                sat += saturated
            spikes[pop.name][chunk] = levels.transpose(1, 0, 2)
            saturations[pop.name] += sat
            current, summed_over_steps = _next_input(program, la, levels)
        elif summed_over_steps:
            acc = current[0].astype(np.int64)
        else:
            acc = np.zeros((n_tok, pop.size), np.int64)
            sat = 0
            for t in range(steps):
                acc, saturated = readout_step(acc, current[min(t, len(current) - 1)], t, program.state_max)
                sat += int(saturated.sum())
            saturations[pop.name] += sat
    return acc


def _next_input(program: Program, la: _Layer, levels: np.ndarray) -> tuple[np.ndarray, bool]:
    """The destination's input [T, tokens, n_dst] (or [1, tokens, n_dst] summed over the steps, with True) from
    the step-major levels [T, tokens, n_src] of population `la`."""
    amplitude = np.asarray(la.pop.amplitude, la.weight_t.dtype if la.weight_t is not None else np.float32)
    if la.summed:  # the token's sum in one product (exact, `_readout_cannot_saturate`)
        summed = np.multiply(levels, amplitude[:, None, None], dtype=amplitude.dtype).sum(0)
        return (summed @ la.weight_t)[None], True
    if la.weight_t is not None:  # graded: W · (s · a_t), exact small integers through one 2-D GEMM
        payload = np.multiply(levels, amplitude[:, None, None], dtype=amplitude.dtype)
        flat = payload.reshape(-1, payload.shape[-1]) @ la.weight_t
        return flat.reshape(*levels.shape[:2], -1), False
    token_major = projection_input(levels.transpose(1, 0, 2), la.pop, la.proj, program.state_bits)
    return token_major.transpose(1, 0, 2), False


def delay_groups(weight: np.ndarray, delay: np.ndarray | None) -> list[tuple[int, np.ndarray]]:
    """(extra delay d, the weights of the synapses with that delay, zeros elsewhere) for every delay a projection
    uses, ascending: a delayed-timing projection is one matrix product per group (NIR Delay nodes; DelayDense)."""
    if delay is None:
        return [(0, weight)]
    delay = np.asarray(delay, np.int64)
    return [(int(d), np.where(delay == d, weight, 0).astype(weight.dtype)) for d in np.unique(delay)]


def check_spike_inputs(program: Program, spikes_in: np.ndarray) -> np.ndarray:
    """Foreign (delayed-timing) programs take binary input events [samples, steps, n_in]."""
    x = np.asarray(spikes_in)
    want = (program.steps, program.host_input.size)
    if x.ndim != 3 or x.shape[1:] != want:
        raise ValueError(f"inputs must be [samples, {want[0]}, {want[1]}] binary events, got shape {x.shape}")
    if not np.isin(x, (0, 1)).all():
        raise ValueError("input events must be 0 or 1 (binary spikes)")
    return x.astype(np.int64)


def run_delayed(program: Program, spikes_in: np.ndarray) -> Trace:
    """Delayed timing: every projection delays by one step (Lava's Dense), layers advance together in time.

    At step t, population k integrates W_k · (its source's events of step t-1-d), d the synapse's extra delay
    from NIR Delay nodes (0 without); the host's events feed the first population the same way. All states start
    at zero for each sample. Output: spike counts of the last population, or, when it is a leaky integrator (LI),
    its final v (readout) and v in real units (logits).
    """
    x = check_spike_inputs(program, spikes_in)
    n_s, steps = x.shape[0], program.steps
    pops = [p for p in program.populations if isinstance(p, QLIFPop)]
    fields = {p.name: lif_fields(p.du, p.dv, p.vth, lif_bias(p.bias_mant, p.bias_exp), program.target_spec)
              for p in pops}
    # per destination: (source, extra delay d, weights holding only the synapses of that delay) for every incoming
    # projection — a recurrent one too: all read the one-step-delayed history, so no order among them matters
    groups: dict[str, list[tuple[str, int, np.ndarray]]] = {p.name: [] for p in pops}
    for proj in program.projections:
        groups[proj.dst] += [(proj.src, d, w_d.T) for d, w_d in delay_groups(np.asarray(proj.weight, np.float32),
                                                                             proj.delay)]
    depth = 1 + max((d for g in groups.values() for _, d, _ in g), default=0)
    u = {p.name: np.zeros((n_s, p.size), np.int64) for p in pops}
    v = {p.name: np.zeros((n_s, p.size), np.int64) for p in pops}
    sizes = {program.host_input.name: program.host_input.size} | {p.name: p.size for p in pops}
    history = {name: np.zeros((depth, n_s, size), np.float32) for name, size in sizes.items()}  # [t-1, t-2, …]
    spikes = {p.name: np.zeros((n_s, steps, p.size), np.int8) for p in pops}
    for t in range(steps):
        new = {}
        for p in pops:
            a_in = sum(history[src][d] @ w_d for src, d, w_d in groups[p.name]).astype(np.int64)  # exact: < 2^15
            u[p.name], v[p.name], new[p.name] = lif_step(u[p.name], v[p.name], a_in, fields[p.name])
            spikes[p.name][:, t] = new[p.name]
        for name, events in ((program.host_input.name, x[:, t]), *new.items()):
            history[name] = np.roll(history[name], 1, axis=0)
            history[name][0] = events
    out = pops[-1]
    if out.neuron == "LI":
        return Trace(spikes=spikes, readout=v[out.name], logits=v[out.name] * out.state_unit, inputs=x,
                     saturations={p.name: 0 for p in pops})
    counts = spikes[out.name].sum(1).astype(np.int64)
    return Trace(spikes=spikes, readout=counts, logits=counts.astype(np.float64), inputs=x,
                 saturations={p.name: 0 for p in pops})
