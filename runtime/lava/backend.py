"""Lava CPU backend: builds one Lava process per population and per projection and runs it with
`Loihi2SimCfg(select_tag="fixed_pt")` (REFERENCE.md §5.2). Lava is imported nowhere else in spikestack.

Tokens stream through the layers as a pipeline: the host writes token i's input at steps i·T … i·T+T-1; each stock
`Dense` delays by one step, so population k (counting from the input population) runs token i's step t at Lava
step i·T + t + k + 1, and the run lasts tokens·T + depth steps. Neurons reset on each token's first step, so
the pipelined run equals the reference executor's token-batched one, spike for spike.
"""

from __future__ import annotations

import numpy as np
from spikestack.compiler.ir import Program, QSpikingPop

from ..reference import host_inputs, readout_logits
from ..trace import Trace


def run(program: Program, ids: np.ndarray) -> Trace:
    from . import prepare_lava_import

    prepare_lava_import()
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import Dense

    from .procs.bispike import BiSpikeNeurons, PyBiSpikeNeuronsFixed
    from .procs.host_input import HostInput, PyHostInputFixed
    from .procs.readout import PyTokenReadoutFixed, TokenReadout

    inputs = host_inputs(program, ids)
    n_tok, steps = inputs.shape[0], program.steps
    host = HostInput(data=np.repeat(inputs, steps, axis=0))
    procs: dict[str, object] = {}
    source = host.s_out
    for depth, pop in enumerate(program.populations):
        if isinstance(pop, QSpikingPop):
            proc = BiSpikeNeurons(bias=pop.bias, thresholds=pop.thresholds, carry=pop.carry,
                                  amplitude=pop.amplitude, carry_shift=pop.carry_shift, levels=pop.levels,
                                  state_max=program.state_max, delay=depth, n_local_steps=n_tok * steps,
                                  name=pop.name)
        else:
            proc = TokenReadout(size=pop.size, steps=steps, state_max=program.state_max, delay=depth,
                                n_tokens=n_tok, name=pop.name)
        source.connect(proc.a_in)
        procs[pop.name] = proc
        if isinstance(pop, QSpikingPop):
            proj = next(p for p in program.projections if p.src == pop.name)
            dense = Dense(weights=np.asarray(proj.weight, np.int32), num_message_bits=proj.message_bits,
                          weight_exp=proj.weight_exp, num_weight_bits=8, name=proj.name)
            proc.s_out.connect(dense.s_in)
            source = dense.a_out
    total = n_tok * steps + len(program.populations)
    cfg = Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map={
        BiSpikeNeurons: PyBiSpikeNeuronsFixed, TokenReadout: PyTokenReadoutFixed, HostInput: PyHostInputFixed})
    host.run(condition=RunSteps(num_steps=total), run_cfg=cfg)
    try:
        spikes, saturations = {}, {}
        readout = np.zeros((n_tok, 0), np.int64)
        for pop in program.populations:
            proc = procs[pop.name]
            saturations[pop.name] = int(proc.saturations.get()[0])
            if isinstance(pop, QSpikingPop):
                spikes[pop.name] = proc.spike_log.get().astype(np.int8).reshape(n_tok, steps, pop.size)
            else:
                readout = proc.readout_log.get().astype(np.int64)
    finally:
        host.stop()
    return Trace(spikes=spikes, readout=readout, logits=readout_logits(program, readout), inputs=inputs,
                 saturations=saturations)
