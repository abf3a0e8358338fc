"""The chip layer of a hybrid program (compiler/hybrid/ir.py has the program and the per-call semantics): the
fields every kind shares, and the projection a layer drives.

Why here, in compiler/kinds/: each neuron kind's layer class (its integer parameters) lives in its kind module
beside its `ChipKind`, and those modules subclass `QChipLayer`; compiler/hybrid/ir.py imports the registry, so the
base cannot live there without an import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np


@dataclass(frozen=True, slots=True, kw_only=True)
class QChipProjection:
    """Dense synapses from a chip layer's neurons to host-read accumulators.

    weight holds Lava-exact mantissas (even, |w| <= 254: Lava's mixed-sign truncation leaves them unchanged);
    real weight = weight · unit. `groups` [in] assigns every input neuron to an accumulator group (SpikeLLM's
    salient / non-salient channels have their own Δ and zero point); one group elsewhere.
    """

    name: str  # the NIR Linear/Affine node
    weight: np.ndarray  # int16 [out, in]
    unit: float  # real value of one weight LSB × one payload LSB
    message_bits: int  # graded payload width (0 for binary spikes)
    groups: np.ndarray  # int8 [in]
    n_groups: int
    bias: np.ndarray | None = None  # float [out], added on the host
    encoding: str = "graded"  # compiler/encodings.py; binary encodings only for unsigned payloads (gif, relay)

    @property
    def size(self) -> int:
        return int(self.weight.shape[0])

    def grouped(self) -> np.ndarray:
        """int64 [groups · out, in]: row g · out + o holds weight[o, i] for the inputs i of group g, 0 elsewhere —
        every group's accumulators as one matrix (the chip backends' synapses, the host's group sums)."""
        w, groups = np.asarray(self.weight, np.int64), np.asarray(self.groups)
        return np.concatenate([np.where(groups[None, :] == g, w, 0) for g in range(self.n_groups)], axis=0)

    def group_sums(self) -> np.ndarray:
        """int64 [groups, out]: Σ_{i ∈ g} weight[o, i] (the host's zero-point correction of GIF groups).

        Not summed over `grouped()` (0.7 GB of int64 per LLaMA-7B projection, 11,008 × 4,096): the smaller groups'
        columns are gathered and summed, and the largest group is the row total less theirs (integer sums: exact in
        any order; 0.05 s against 2 s at that size)."""
        w, groups = np.asarray(self.weight), np.asarray(self.groups)
        members = [groups == g for g in range(self.n_groups)]
        largest = max(range(self.n_groups), key=lambda g: int(members[g].sum()))
        out = np.zeros((self.n_groups, self.size), np.int64)
        for g, cols in enumerate(members):
            if g != largest:
                out[g] = w[:, cols].sum(1, dtype=np.int64)
        if sum(int(m.sum()) for m in members) == groups.size:  # every column in a group (as quantize makes them)
            out[largest] = w.sum(1, dtype=np.int64) - out.sum(0)
        else:
            out[largest] = w[:, members[largest]].sum(1, dtype=np.int64)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class QChipLayer:
    """What every chip layer has, whatever its neuron: its place in the schedule, its tensors and units, its
    projection. Each neuron kind is a subclass holding its own integer parameters (`BiSpikeLayer`, `LIFLayer`,
    `GIFLayer`, `RelayLayer` in this package's kind modules), so a layer carries exactly its kind's fields and
    `kind` is a class attribute, not a string any stage could set to a kind whose fields are missing."""

    kind: ClassVar[str] = ""  # the key of compiler/kinds KINDS: its ChipKind is the layer's behaviour
    name: str  # the NIR neuron node
    width: int  # neurons per position (batch and sequence axes replicate them)
    steps: int  # neuron steps per call
    input: str  # host → chip tensor (int32 [..., width])
    output: str  # chip → host tensor
    in_unit: float  # real value of one input LSB
    payload_unit: float  # real value of one payload LSB (before the projection)
    segment: int  # schedule position: runs after host stage `segment`
    levels: int = 1  # the payload's level bound: bispike K; gif L (max spike L − 1); relay max |payload|; lif 1
    projection: QChipProjection | None = None
    source: str | None = None  # chained (cut.py): input = that layer's accumulators [..., 0, :] + `bias`
    bias: np.ndarray | None = None  # int64 [width], chained layers only

    @property
    def max_level(self) -> int:
        """Largest unsigned payload of gif and relay layers (what their binary encodings must cover)."""
        return _kind(self).max_level(self)

    @property
    def planes(self) -> int:
        """Axon planes per neuron of the projection's encoding (1 for graded)."""
        p = self.projection
        if p is None or p.encoding == "graded":
            return 1
        from ..encodings import unsigned_plane_scales

        return int(unsigned_plane_scales(p.encoding, self.max_level).size)

    @property
    def payload_bits(self) -> int:
        """Bits of one event's graded payload, sign included (0: binary spike)."""
        return _kind(self).payload_bits(self)


def _kind(layer: QChipLayer):
    from . import kind_of  # the registry imports the kind modules, which import this one

    return kind_of(layer)


__all__ = ["QChipLayer", "QChipProjection"]
