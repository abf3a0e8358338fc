"""Lava CPU backend: builds one Lava process per population and per projection and runs it with
`Loihi2SimCfg(select_tag="fixed_pt")` (REFERENCE.md §5.2). Lava is imported nowhere else in spikestack.

Tokens stream through the layers as a pipeline: the host writes token i's input at steps i·T … i·T+T-1; each stock
`Dense` delays by one step, so population k (counting from the input population) runs token i's step t at Lava
step i·T + t + k + 1, and the run lasts tokens·T + depth steps. Neurons reset on each token's first step, so
the pipelined run equals the reference executor's token-batched one, spike for spike.
"""

from __future__ import annotations

import numpy as np
from spikestack.compiler.encodings import plane_scales, planes_count
from spikestack.compiler.ir import Program, QLIFPop, QSpikingPop

from ..reference import host_inputs, readout_logits
from ..trace import Trace


def run(program: Program, ids: np.ndarray) -> Trace:
    if program.timing == "delayed":
        return run_delayed(program, ids)
    from . import lava_weight_bits, prepare_lava_import

    lava_weight_bits(program.target_spec)  # before the (slow) Lava import
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
    sources = [host.s_out]
    for depth, pop in enumerate(program.populations):
        incoming = program.incoming(pop.name)
        gain = incoming.gain if incoming is not None and incoming.gain is not None else np.ones(steps, np.int64)
        if isinstance(pop, QSpikingPop):
            out = next(p for p in program.projections if p.src == pop.name)
            proc = BiSpikeNeurons(bias=pop.bias, thresholds=pop.thresholds, carry=pop.carry,
                                  amplitude=pop.amplitude, carry_shift=pop.carry_shift, levels=pop.levels,
                                  state_max=program.state_max, delay=depth, n_local_steps=n_tok * steps,
                                  input_gain=gain, out_encoding=out.encoding,
                                  out_planes=planes_count(out.encoding, pop.levels), name=pop.name)
        else:
            proc = TokenReadout(size=pop.size, steps=steps, state_max=program.state_max, delay=depth,
                                n_tokens=n_tok, input_gain=gain, name=pop.name)
        for source in sources:  # several Dense processes into one port add up (one per bit plane)
            source.connect(proc.a_in)
        procs[pop.name] = proc
        if isinstance(pop, QSpikingPop):
            sources = []
            for dense in _denses(out, pop, Dense, program.target_spec):
                proc.s_out.connect(dense.s_in)
                sources.append(dense.a_out)
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


def _denses(proj, pop: QSpikingPop, dense_cls, target) -> list:
    """Lava Dense processes carrying one projection in its encoding (compiler/encodings.py).

    graded: one Dense with num_message_bits. unary: one binary Dense over the 2K planes, blocks +W and -W.
    bitserial: one binary Dense per bit b over the planes, blocks +W (positive plane b) and -W (negative plane b),
    weight_exp = b so the mantissas stay as compiled. Weights reach Lava on its 8-bit scale (`lava_weights`).
    """
    from . import lava_weights

    w = np.asarray(proj.weight, np.int32)
    if proj.encoding == "graded":
        lw, exp, bits = lava_weights(w, proj.weight_exp, target)
        return [dense_cls(weights=lw, num_message_bits=proj.message_bits, weight_exp=exp, num_weight_bits=bits,
                          name=proj.name)]
    scales = plane_scales(proj.encoding, pop.levels)
    n_planes = len(scales)
    if proj.encoding == "unary":
        lw, exp, bits = lava_weights(np.concatenate([np.sign(s) * w for s in scales], axis=1), 0, target)
        return [dense_cls(weights=lw, num_message_bits=0, weight_exp=exp, num_weight_bits=bits, name=proj.name)]
    out = []
    half = n_planes // 2
    for b in range(half):
        blocks = [np.zeros_like(w)] * n_planes
        blocks[b], blocks[half + b] = w, -w
        lw, exp, bits = lava_weights(np.concatenate(blocks, axis=1), b, target)
        out.append(dense_cls(weights=lw, num_message_bits=0, weight_exp=exp, num_weight_bits=bits,
                             name=f"{proj.name}_bit{b}"))
    return out


def run_delayed(program: Program, spikes_in: np.ndarray) -> Trace:
    """Foreign LIF programs on Lava's *stock* LIF (PyLifModelBitAcc) and Dense: one Lava run per sample.

    Reference step t is Lava step t+1: the host process sends the events of step t at Lava step t+1, and each
    Dense delivers them one step later, which is the delayed timing the reference executor defines.
    """
    from . import check_stock_lif, lava_weight_bits, lava_weights, prepare_lava_import

    check_stock_lif(program.target_spec)  # before the (slow) Lava import
    lava_weight_bits(program.target_spec)
    prepare_lava_import()
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.models import PyDelayDenseModelBitAcc
    from lava.proc.dense.process import DelayDense, Dense
    from lava.proc.lif.models import PyLifModelBitAcc
    from lava.proc.lif.process import LIF

    from ..reference import check_spike_inputs
    from .procs.host_input import HostInput, PyHostInputFixed
    from .procs.logger import EventLogger, PyEventLoggerFixed

    x = check_spike_inputs(program, spikes_in)
    steps = program.steps
    pops = [p for p in program.populations if isinstance(p, QLIFPop)]
    spikes = {p.name: np.zeros((x.shape[0], steps, p.size), np.int8) for p in pops}
    final_v = np.zeros((x.shape[0], pops[-1].size), np.int64)
    cfg = Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map={
        LIF: PyLifModelBitAcc, HostInput: PyHostInputFixed, EventLogger: PyEventLoggerFixed,
        DelayDense: PyDelayDenseModelBitAcc})
    for sample in range(x.shape[0]):
        host = HostInput(data=x[sample])
        outs = {program.host_input.name: host.s_out}
        loggers = {}
        lifs = {}
        for p in pops:  # every LIF first: a recurrent projection may end at an earlier population or its own
            lif = LIF(shape=(p.size,), du=p.du, dv=p.dv, vth=p.vth, bias_mant=np.asarray(p.bias_mant),
                      bias_exp=np.asarray(p.bias_exp), name=p.name)
            loggers[p.name] = EventLogger(size=p.size, steps=steps, name=f"{p.name}_log")
            lif.s_out.connect(loggers[p.name].a_in)
            outs[p.name] = lif.s_out
            lifs[p.name] = lif
        for proj in program.projections:  # several Dense into one a_in add up (Lava's InPort sums its inputs)
            lw, exp, bits = lava_weights(np.asarray(proj.weight, np.int32), proj.weight_exp, program.target_spec)
            if proj.delay is None:
                dense = Dense(weights=lw, num_message_bits=proj.message_bits, weight_exp=exp, num_weight_bits=bits,
                              name=proj.name)
            else:  # NIR Delay nodes: per-synapse extra steps (0 = Dense's own one-step delay)
                delays = np.asarray(proj.delay).astype(int)  # DelayDense checks dtype == int
                dense = DelayDense(weights=lw, delays=delays, num_message_bits=proj.message_bits, weight_exp=exp,
                                   num_weight_bits=bits, name=proj.name)
            outs[proj.src].connect(dense.s_in)
            dense.a_out.connect(lifs[proj.dst].a_in)
        host.run(condition=RunSteps(num_steps=steps), run_cfg=cfg)
        try:
            for name, logger in loggers.items():
                spikes[name][sample] = logger.log.get().astype(np.int8)
            final_v[sample] = lifs[pops[-1].name].v.get()
        finally:
            host.stop()
    out = pops[-1]
    if out.neuron == "LI":
        return Trace(spikes=spikes, readout=final_v, logits=final_v * out.state_unit, inputs=x,
                     saturations={p.name: 0 for p in pops})
    counts = spikes[pops[-1].name].sum(1).astype(np.int64)
    return Trace(spikes=spikes, readout=counts, logits=counts.astype(np.float64), inputs=x,
                 saturations={p.name: 0 for p in pops})
