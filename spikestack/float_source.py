"""The float reference's front door: the NIR graph a program was compiled from → its float model's trace.

Library glue for `spikestack.api` (run with backend "float", verify with a NIR source), kept apart so that the
API module stays an index of entry points. The simulation itself is `runtime/float_reference.py`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from spikestack.errors import SpikestackError


def float_trace(program, float_source, inputs: np.ndarray):
    """The float reference (runtime/float_reference.py) of the NIR graph a delayed-timing program was compiled
    from, at the program's dt and steps; refused when the graph's populations are not the program's."""
    import nir

    from spikestack.compiler.from_nir import from_nir, read_nir
    from spikestack.runtime.float_reference import run_float

    if float_source is None:
        raise SpikestackError("the float backend needs the NIR file the artifact was compiled from (--nir FILE)")
    if _is_hybrid(program) or program.timing != "delayed":
        raise SpikestackError("the float reference covers foreign LIF programs (delayed timing) only")
    graph = float_source if isinstance(float_source, nir.NIRGraph) else read_nir(Path(float_source))
    floating = from_nir(graph, dt=program.report.get("dt_s"), steps=program.steps)
    layer_dt = program.report.get("layer_dt_s", {})  # per-node time bases as compiled (from_nir's dt overrides)
    floating = replace(floating, populations=tuple(replace(p, dt=layer_dt.get(p.name)) if hasattr(p, "dt") else p
                                                   for p in floating.populations))
    want = [(p.name, p.size) for p in program.populations]
    got = [(p.name, p.size) for p in floating.populations]
    if got != want or floating.host_input.size != program.host_input.size:
        raise SpikestackError(f"{float_source if not isinstance(float_source, nir.NIRGraph) else 'graph'}: "
                              f"populations {got} are not the artifact's {want}; give the NIR file it was "
                              f"compiled from")
    return run_float(floating, inputs)


def _is_hybrid(program) -> bool:
    from spikestack.evaluation import is_hybrid

    return is_hybrid(program)
