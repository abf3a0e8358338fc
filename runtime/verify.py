"""Three-way verification: the torch fake-quant model, the reference executor and Lava must produce the same
integer spikes at every layer, token and step, and the same readout (token programs, and delayed-timing foreign
LIF programs, recurrent ones included). The first divergence is named. The float reference
(`runtime/float_reference.py`) is no backend here: it is compared by agreement, not bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from spikestack.compiler.ir import Program

from .trace import Trace

BACKENDS = ("torch", "reference", "lava")


def backend_runner(name: str) -> Callable[[Program, np.ndarray], Trace]:
    if name == "reference":
        from .reference import run
    elif name == "torch":
        from .torch_fakequant import run
    elif name == "lava":
        from .lava.backend import run
    else:
        raise ValueError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    return run


def first_divergence(program: Program, a: Trace, b: Trace, names: tuple[str, str]) -> str | None:
    """None if a and b agree everywhere; otherwise one line naming layer, token, step, neuron and both values."""
    for pop in program.populations:
        if pop.name in a.spikes:
            sa, sb = a.spikes[pop.name], b.spikes[pop.name]
            if sa.shape != sb.shape:
                return f"layer {pop.name}: spike shapes differ {sa.shape} vs {sb.shape}"
            diff = np.argwhere(sa != sb)
            if diff.size:
                # order by step first: the earliest step is where the divergence starts
                tok, t, n = min(diff.tolist(), key=lambda d: (d[1], d[0], d[2]))
                return (f"layer {pop.name}, token {tok}, step {t}, neuron {n}: "
                        f"{names[0]}={int(sa[tok, t, n])} {names[1]}={int(sb[tok, t, n])}")
    diff = np.argwhere(a.readout != b.readout)
    if diff.size:
        tok, n = diff[0].tolist()
        return (f"readout {program.populations[-1].name}, token {tok}, neuron {n}: "
                f"{names[0]}={int(a.readout[tok, n])} {names[1]}={int(b.readout[tok, n])}")
    return None


def verify(
    program: Program, ids: np.ndarray, backends: tuple[str, ...] = BACKENDS
) -> tuple[dict[str, Trace], list[str]]:
    """Run every backend; return the traces and the list of mismatch lines (empty = bit-exact)."""
    traces = {name: backend_runner(name)(program, ids) for name in backends}
    return traces, compare_all(program, traces, backends, first_divergence)


def compare_all(program, traces: dict, backends: tuple[str, ...], divergence: Callable) -> list[str]:
    """Every backend against the first: one mismatch line per differing pair (chain and hybrid programs)."""
    base = backends[0]
    problems = []
    for other in backends[1:]:
        line = divergence(program, traces[base], traces[other], (base, other))
        if line:
            problems.append(f"{base} vs {other}: {line}")
    return problems
