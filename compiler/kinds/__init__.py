"""The neuron kinds of hybrid programs' chip layers, registered once: `KINDS[name]` is the `ChipKind` of every
`QChipLayer` whose `kind` is `name` (compiler/hybrid/ir.py).

One module per kind (bispike, lif, gif, relay, readout) holds its layer class (the kind's integer parameters, a
`QChipLayer` subclass) and its IR-side facts: payload width and bound, its lowering
from the float graph, the verifier's and the artifact reader's field checks, the simulator's cost hooks. Its
integer numpy step — the definition of its semantics — lives in `runtime/kinds/` (same layout, same names),
because it is built from the shared integer primitives of `runtime/neurons.py` and compiler/ must not import
runtime/ (data flows compiler → artifact → runtime). Its torch and Lava implementations are one entry each in the
per-kind tables of `runtime/hybrid/torch_chip.py` and `runtime/lava/hybrid_chip.py`.

Adding a kind: a module here, one in runtime/kinds/, an entry in each backend table, and tests.
"""

from __future__ import annotations

from typing import Protocol

from spikestack.errors import CompileError

from .base import ChipKind
from .bispike import KIND as BISPIKE
from .bispike import BiSpikeLayer
from .gif import KIND as GIF
from .gif import GIFLayer
from .layer import QChipLayer, QChipProjection
from .lif import KIND as LIF
from .lif import LIFLayer
from .readout import KIND as READOUT
from .readout import ReadoutLayer
from .relay import KIND as RELAY
from .relay import RelayLayer


class _Layer(Protocol):
    """What `kind_of` reads of a `QChipLayer` (compiler/hybrid/ir.py imports this package, not the reverse)."""

    name: str
    kind: str


KINDS: dict[str, ChipKind] = {k.name: k for k in (BISPIKE, LIF, GIF, RELAY, READOUT)}


def kind_of(layer: _Layer) -> ChipKind:
    """The kind object of a chip layer; an unregistered kind is a CompileError naming the layer."""
    kind = KINDS.get(layer.kind)
    if kind is None:
        raise CompileError(f"chip layer {layer.name!r}: unknown kind {layer.kind!r}; registered: "
                           f"{', '.join(KINDS)}")
    return kind


__all__ = ["KINDS", "BiSpikeLayer", "ChipKind", "GIFLayer", "LIFLayer", "QChipLayer", "QChipProjection", "ReadoutLayer",
           "RelayLayer", "kind_of"]
