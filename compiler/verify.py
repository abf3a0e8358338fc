"""Verifiers, one per stage: each states the invariants its stage promises, and runs after every pass.

They raise CompileError naming the pass that broke the invariant (the pipeline adds the pass list).
"""

from __future__ import annotations

import numpy as np

from spikestack.errors import CompileError

from .ir import FloatGraph, LIFPop, Program, QLIFPop, QReadoutPop, QSpikingPop, ReadoutPop, SpikingPop
from .passes.mantissas import weight_mantissa_max
from .targets import Target


def verify_float(graph: FloatGraph) -> None:
    names = [p.name for p in graph.populations]
    if len(set(names)) != len(names):
        raise CompileError(f"duplicate population names: {names}")
    if graph.steps < 1:
        raise CompileError(f"steps per token must be >= 1, got {graph.steps}")
    sizes = {p.name: p.size for p in graph.populations}
    if graph.input_pop is None:  # the host sends events through a projection
        sizes[graph.host_input.name] = graph.host_input.size
    for proj in graph.projections:
        if proj.src not in sizes or proj.dst not in sizes:
            raise CompileError(f"projection {proj.name!r} joins unknown populations {proj.src!r} → {proj.dst!r}")
        if proj.weight.shape != (sizes[proj.dst], sizes[proj.src]):
            raise CompileError(f"projection {proj.name!r}: weight {proj.weight.shape} ≠ "
                               f"({sizes[proj.dst]}, {sizes[proj.src]})")
        if proj.src != graph.host_input.name and not isinstance(graph.pop(proj.src), (SpikingPop, LIFPop)):
            raise CompileError(f"projection {proj.name!r}: source {proj.src!r} does not spike")
    for pop in graph.populations:
        if isinstance(pop, SpikingPop) and pop.alpha.shape != (graph.steps,):
            raise CompileError(f"layer {pop.name!r}: alpha has shape {pop.alpha.shape}, expected ({graph.steps},)")
    if graph.timing == "delayed":
        if not all(isinstance(p, LIFPop) for p in graph.populations):
            raise CompileError("delayed-timing graphs hold only LIF populations")
        return
    if graph.input_pop is None or graph.host_input.size != sizes[graph.input_pop]:
        raise CompileError(f"host input has {graph.host_input.size} values, {graph.input_pop!r} has "
                           f"{sizes.get(graph.input_pop or '', 0)} neurons")
    if not isinstance(graph.populations[-1], ReadoutPop):
        raise CompileError("the last population must be the readout")


def verify_program(program: Program) -> None:
    """Integer stage: integer dtypes, ranges inside the target's fields, cores covering every neuron once."""
    target = program.target_spec
    if program.target != target.name:
        raise CompileError(f"program for target {program.target!r} carries the spec of target {target.name!r}")
    smax = program.state_max
    for pop in program.populations:
        if isinstance(pop, QSpikingPop):
            for name, arr in (("thresholds", pop.thresholds), ("carry", pop.carry), ("amplitude", pop.amplitude),
                              ("bias", pop.bias)):
                if not np.issubdtype(np.asarray(arr).dtype, np.integer):
                    raise CompileError(f"layer {pop.name!r}: {name} is {np.asarray(arr).dtype}, not an integer")
            if pop.thresholds.shape != (program.steps, pop.levels):
                raise CompileError(f"layer {pop.name!r}: thresholds shape {pop.thresholds.shape}")
            if np.any(np.diff(pop.thresholds, axis=1) < 0) or np.any(pop.thresholds < 0):
                raise CompileError(f"layer {pop.name!r}: thresholds must be non-negative and ascending in level")
            if np.abs(pop.bias).max(initial=0) > smax or np.abs(pop.thresholds).max() > smax:
                raise CompileError(f"layer {pop.name!r}: bias/threshold outside the {program.state_bits}-bit state")
        elif isinstance(pop, QLIFPop):
            verify_lif_fields(pop.name, pop.du, pop.dv, pop.vth, target)
        elif not isinstance(pop, QReadoutPop):
            raise CompileError(f"layer {pop.name!r}: unknown population type {type(pop).__name__}")
    m_max = 2 * weight_mantissa_max(target)  # 254 at the shipped targets' 8 bits
    for proj in program.projections:
        w = np.asarray(proj.weight)
        if not np.issubdtype(w.dtype, np.integer) or np.abs(w).max(initial=0) > m_max or np.any(w % 2):
            raise CompileError(f"projection {proj.name!r}: weights must be even integers in [-{m_max}, {m_max}] "
                               f"({target.weight_mantissa_bits}-bit mantissas of target {target.name})")
    if program.cores:
        for pop in program.populations:
            covered = sorted((c.lo, c.hi) for c in program.cores if c.pop == pop.name)
            edges = [0] + [hi for _, hi in covered]
            if [lo for lo, _ in covered] != edges[:-1] or edges[-1] != pop.size:
                raise CompileError(f"layer {pop.name!r}: cores {covered} do not cover [0, {pop.size}) exactly once")


def verify_lif_fields(name: str, du: int, dv: int, vth: int, target: Target) -> None:
    """A LIF's decays are fractions of the target's decay unity and its shifted threshold fits the state."""
    unity = target.decay_unity
    if not (0 <= du < unity and 0 <= dv < unity and 0 < vth <= target.activation_max):
        raise CompileError(f"layer {name!r}: du = {du}, dv = {dv} must be {target.decay_bits}-bit (0..{unity - 1}) "
                           f"and vth = {vth} in 1..{target.activation_max} (target {target.name})")
