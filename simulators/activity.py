"""Which neurons a core updates actively in a step: the profile's `update_rule` (docs/simulator.md).

Two rules are in use by published Loihi models, and they count different work:

* ``event`` (spikestack's first rule): a neuron is active in a step when it received at least one event on a
  non-zero synapse or emitted a spike; the population the host writes into is active every step.
* ``nonzero`` (SANA-FE's, Boyle et al., IEEE TCAD 2025; its soma updates a neuron whose potential is non-zero or
  that received input, REFERENCE.md §7.5, measured against sanafe 2.2.9 in bench/sanafe_agreement.py): a leaky
  neuron keeps costing an update while its potential decays, so a sparse network pays for its memory.

The trace holds spikes, not potentials, so the ``nonzero`` rule replays the integer LIF step (runtime/neurons.py
`lif_step`, the definition) from the trace's own events for the LIF populations of delayed-timing (foreign NIR)
programs. Other populations (bi-spike layers, language-model layers) fall back to the ``event`` rule, and the report
names them (`update_rule_fallback`) rather than guessing their potentials.
"""

from __future__ import annotations

import numpy as np
from spikestack.compiler.ir import Program, QLIFPop
from spikestack.runtime.neurons import lif_bias, lif_fields, lif_step
from spikestack.runtime.reference import delay_groups
from spikestack.runtime.trace import Trace

UPDATE_RULES = ("event", "nonzero")


def delayed_inputs(program: Program, trace: Trace, pop: QLIFPop) -> tuple[np.ndarray, np.ndarray]:
    """The weighted input a_in [tok, T, n] a delayed-timing population integrates in each step, and whether any
    event arrived on a non-zero synapse [tok, T, n] (events of step t-1-d, d the synapse's extra delay)."""
    a_in = got = None
    for proj in (p for p in program.projections if p.dst == pop.name):  # a recurrent population has several
        src = trace.inputs if proj.src == program.host_input.name else trace.spikes[proj.src]
        src = np.asarray(src, np.float64)  # [tok, T, n_src] binary events; float BLAS, exact below 2^53
        if a_in is None:
            a_in, got = np.zeros((*src.shape[:2], pop.size)), np.zeros((*src.shape[:2], pop.size))
        for d, w_d in delay_groups(np.asarray(proj.weight, np.float64), proj.delay):
            lag = 1 + d
            if lag >= src.shape[1]:
                continue
            a_in[:, lag:] += src[:, :-lag] @ w_d.T
            got[:, lag:] += src[:, :-lag] @ (w_d != 0).T.astype(np.float64)
    return np.rint(a_in).astype(np.int64), got > 0


def nonzero_updates(program: Program, trace: Trace, pop: QLIFPop) -> np.ndarray:
    """bool [tok, T, n]: SANA-FE's rule for one LIF population of a delayed program: updated in step t when its
    potential after step t-1 is non-zero (or its current, where u decays over steps), an event arrived for it, or
    its bias is non-zero (the bias moves v)."""
    a_in, got = delayed_inputs(program, trace, pop)
    bias = lif_bias(pop.bias_mant, pop.bias_exp)
    fields = lif_fields(pop.du, pop.dv, pop.vth, bias, program.target_spec)
    n_tok, steps = a_in.shape[:2]
    u = np.zeros((n_tok, pop.size), np.int64)
    v = np.zeros((n_tok, pop.size), np.int64)
    active = np.zeros((n_tok, steps, pop.size), bool)
    keeps_u = (1 << fields.decay_bits) - (fields.du + 1) > 0  # du = U - 1: u is this step's input only
    for t in range(steps):
        active[:, t] = (v != 0) | got[:, t] | (bias != 0)
        if keeps_u:
            active[:, t] |= u != 0
        u, v, _ = lif_step(u, v, a_in[:, t], fields)
    return active


def replayable(program: Program) -> set[str]:
    """Populations whose potentials the ``nonzero`` rule can replay from a trace (delayed-timing LIF ones)."""
    if program.timing != "delayed":
        return set()
    return {p.name for p in program.populations if isinstance(p, QLIFPop)}
