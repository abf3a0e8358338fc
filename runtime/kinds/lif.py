"""The numpy step of ``lif`` layers (compiler/kinds/lif.py): Lava's fixed_pt LIF (`lif_step`) in the target's
widths, state kept across calls; payload s ∈ {0, 1}."""

from __future__ import annotations

import numpy as np
from spikestack.compiler.hybrid.ir import QChipLayer
from spikestack.compiler.targets import Target

from ..neurons import LIFFields, lif_fields, lif_step
from .state import LayerState, cached


def layer_lif_fields(layer: QChipLayer, target: Target) -> LIFFields:
    """A chip LIF's fields (no bias: the host adds it before quantizing) in the target's widths."""
    return lif_fields(layer.du, layer.dv, layer.vth, np.zeros(layer.width, np.int64), target)


def step(layer: QChipLayer, x: np.ndarray, state: LayerState, call: int, target: Target) -> np.ndarray:
    if state.u is None:
        state.u, state.v = np.zeros_like(x), np.zeros_like(x)
    fields = cached(state, "lif", lambda: layer_lif_fields(layer, target))
    state.u, state.v, s = lif_step(state.u, state.v, x, fields)
    return s[None]
