"""The integer numpy step of every chip-layer kind: the definition of its semantics, which the torch and Lava
backends are tested against. Keyed by the same names as `compiler/kinds/` (its IR-side facts); one module per kind.

Why here and not in compiler/kinds/: the steps are built from the shared integer primitives of
`runtime/neurons.py` (bi-spike, LIF, GIF), and compiler/ must not import runtime/.

A step is `step(layer, x, state, call, target) -> payloads int64 [steps, ..., width]`, updating `state`; `x` is
the layer's input (a chained layer's source accumulators already reduced, runtime/hybrid/chip.py).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from spikestack.compiler.hybrid.ir import QChipLayer
from spikestack.compiler.targets import Target

from spikestack.errors import CompileError

from . import bispike, gif, lif, readout, relay
from .state import LayerState, cached

Step = Callable[[QChipLayer, np.ndarray, LayerState, int, Target], np.ndarray]

STEPS: dict[str, Step] = {"bispike": bispike.step, "lif": lif.step, "gif": gif.step, "relay": relay.step,
                         "readout": readout.step}


def step_of(layer: QChipLayer) -> Step:
    """The numpy step of a layer's kind; an unregistered kind is a CompileError naming the layer."""
    step = STEPS.get(layer.kind)
    if step is None:
        raise CompileError(f"chip layer {layer.name!r}: no numpy step for kind {layer.kind!r}; registered: "
                           f"{', '.join(STEPS)}")
    return step


__all__ = ["STEPS", "LayerState", "Step", "cached", "step_of"]
