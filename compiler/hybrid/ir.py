"""IR of hybrid programs: the language-model families as chip layers and host stages, run on a per-call schedule.

Why a second program kind: the spine's `Program` is a chain of populations with the host only at both ends. The
LM graphs (SpikeLM, SpikeGPT, SpikeLLM) branch through ops no core can run (norms, attention, WKV, gates), so
their compiled form alternates host and chip on every call of the NIR graph:

    host stage 0 → chip segment 0 → host stage 1 → chip segment 1 → … → host stage n

A *call* is one evaluation of the exported NIR graph: one token (SpikeGPT, `time_axis = tokens`), one spiking step
over the sequence (SpikeLM, `steps`) or the whole sequence (SpikeLLM, `sequence`). Every tensor crossing the cut
is named; host → chip tensors are integers already in the receiving layer's units (the host quantizes), chip →
host tensors are integers the host dequantizes. So the chip side is integer-only and every backend that runs it
(`runtime/hybrid/`) must agree bit for bit; the host side is ONNX (float32) and runs in onnxruntime everywhere.

A chip layer is one spiking population plus, optionally, the projection it drives (`QChipProjection`), whose
destination's dendritic accumulators the host reads, adding the bias. Its class is its neuron kind
(`BiSpikeLayer`, `LIFLayer`, `GIFLayer`, `RelayLayer`, `ReadoutLayer`: compiler/kinds/, each with only its kind's
integer parameters). Integer semantics per call (each kind's numpy step in `runtime/kinds/` is the definition,
every backend is tested against it; the kind's IR-side facts are its `ChipKind` in `compiler/kinds/`):

* ``bispike`` (SpikeLM's elastic bi-spike, one step per call, step index t = call mod T; state reset at t = 0):
  `runtime.neurons.bispike_step` on the input currents; payload a_t·s (graded, signed).
* ``lif`` (SpikeGPT, one step per call, state kept across calls): `runtime.neurons.lif_step` (Lava fixed_pt LIF,
  du = 4095, dv = 2048 at Lava's 12 decay bits); payload s ∈ {0, 1}.
* ``gif`` (SpikeLLM, K = `steps` steps per call, state reset every call): the input is the unsigned charge u;
  s_k = min(u, L − 1), u ← u − s_k; payload s_k (graded, unsigned).

* ``relay`` (SpikeGPT's dataflow fold, compiler/hybrid/fold.py: host-injected graded events, no neuron state):
  payload = the input integer (|x| ≤ `levels`), one step per call.
* ``readout`` (a chain program's readout, compiler/chain_hybrid.py; chained only): accumulators summing their input
  over the `period` calls of a token with the chain's saturation; no events; the output is the running sum.

Encodings (compiler/encodings.py) of a projection's events: ``graded`` (one message, payload s), or, for the
unsigned payloads of gif and relay layers, ``unary`` (s binary events) and ``bitserial`` (the bits of s, plane b
weighted 2^b: SpikeLLM's (T/L)·log2 L compression). All three give the same accumulators.

A chained layer (`source` set) runs in its source's segment, after it: its input is the source's accumulators
(one group) plus its integer `bias`, never a host tensor; the source's synapses land on its neurons.

With a projection, the output tensor is acc[..., g, o] = Σ_steps Σ_{i ∈ group g} weight[o, i] · payload_i;
without one, it is the payload of the call's last step (bispike, lif) or the sum over steps (gif).

Widths and shifts are the program's target's (`target_spec`, `compiler/targets.py`): bi-spike membranes saturate
at its `state_max`, the LIF runs in its `state_bits`, `decay_bits` and `activation_shift`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..ir import Core, frozen_array
from ..kinds import BiSpikeLayer, GIFLayer, LIFLayer, QChipLayer, QChipProjection, RelayLayer, kind_of
from ..targets import Target


@dataclass(frozen=True, slots=True, kw_only=True)
class HostStage:
    """One ONNX model: inputs and outputs are named env tensors; `state_in[i]` is updated to `state_out[i]`."""

    index: int
    onnx: bytes
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    state_in: tuple[str, ...] = ()
    state_out: tuple[str, ...] = ()
    ops: tuple[str, ...] = ()  # the NIR nodes it computes (for inspect and the simulator)
    macs_per_position: int = 0  # multiply-accumulates per token position (matmul shapes)


@dataclass(frozen=True, slots=True, kw_only=True)
class StateSpec:
    """A host state tensor: per-position shape and the value it starts from."""

    name: str
    shape: tuple[int, ...]
    init: float


@dataclass(frozen=True, slots=True, kw_only=True)
class HybridProgram:
    family: str
    target: str  # the target's name (reports, messages)
    target_spec: Target  # the whole target compiled for: state width, decay bits and activation shift of every layer
    time_axis: str  # tokens | steps | sequence (see module docstring)
    steps_per_token: int  # calls per token for `steps`, else 1
    vocab_size: int
    layers: tuple[QChipLayer, ...]
    stages: tuple[HostStage, ...]  # len(segments) + 1
    states: tuple[StateSpec, ...] = ()
    cores: tuple[Core, ...] = ()
    report: dict = field(default_factory=dict)
    input_name: str = "ids"
    output_name: str = "logits"
    max_positions: int = 0  # longest sequence the host program supports (0: unbounded)
    # `steps` programs: a token's logits are the mean of its calls' (`mean_over_steps`), or its last call's
    # (`last_step`: the graph averages the hidden state itself, models/nir/ops.py `StepMean`, before a head that
    # is not affine, such as BERT's MLM transform)
    readout: str = "mean_over_steps"
    # 0: the input holds one id per position ([B, L]); w > 0: each position reads a window of w ids, the input's
    # last axis ([N, w]: the bi-spike spine's token contexts, compiler/chain_hybrid.py)
    input_window: int = 0
    # the KV-cache program (whole-sequence models): one new position per call, attention reading cached keys and
    # values kept as host states; same chip layers (host_stages.py `decode_supported`)
    decode_stages: tuple[HostStage, ...] = ()
    decode_states: tuple[StateSpec, ...] = ()

    @property
    def state_max(self) -> int:
        """The saturation bound of bi-spike membranes and the bound every accumulator is proven to stay within."""
        return self.target_spec.state_max

    @property
    def segments(self) -> int:
        return len(self.stages) - 1

    def projection_target(self, layer: QChipLayer) -> str:
        """The population a layer's projection lands on: its own accumulators, or the layer chained to it."""
        return next((la.name for la in self.layers if la.source == layer.name), layer.projection.name)

    def feeds_chip(self, layer: QChipLayer) -> bool:
        """A chained layer takes this layer's accumulators: its projection lands on that layer's neurons."""
        return any(la.source == layer.name for la in self.layers)

    def to_host(self, layer: QChipLayer) -> int:
        """Values per position and call that the layer hands to the host (none when a chained layer takes them)."""
        if self.feeds_chip(layer):
            return 0
        return layer.width if layer.projection is None else layer.projection.n_groups * layer.projection.size

    def from_host(self, layer: QChipLayer) -> int:
        """Values per position and call the host writes into the layer (none for a chained layer)."""
        return 0 if layer.source is not None else layer.width

    def layer(self, name: str) -> QChipLayer:
        return next(layer for layer in self.layers if layer.name == name)

    def segment_layers(self, segment: int) -> list[QChipLayer]:
        return [layer for layer in self.layers if layer.segment == segment]

    # --- the shape `compiler.passes.place` reads: populations and projections by name
    @property
    def populations(self) -> tuple[_Pop, ...]:
        pops = []
        chained = {la.source for la in self.layers if la.source is not None}
        for layer in self.layers:
            if not kind_of(layer).host_injected:  # a relay's events come from the host: no neurons on a core
                pops.append(_Pop(name=layer.name, size=layer.width))
            if layer.projection is not None and layer.name not in chained:  # else its synapses land on the chain
                pops.append(_Pop(name=layer.projection.name, size=layer.projection.size))
        return tuple(pops)

    @property
    def projections(self) -> tuple[_Proj, ...]:
        target = {la.source: la.name for la in self.layers if la.source is not None}
        return tuple(_Proj(name=la.projection.name, src=f"host:{la.name}" if kind_of(la).host_injected else la.name,
                           dst=target.get(la.name, la.projection.name), weight=la.projection.weight)
                     for la in self.layers if la.projection is not None)  # a relay's events come from the host


@dataclass(frozen=True, slots=True)
class _Pop:
    name: str
    size: int


@dataclass(frozen=True, slots=True)
class _Proj:
    name: str
    src: str
    dst: str
    weight: np.ndarray


__all__ = ["BiSpikeLayer", "GIFLayer", "HostStage", "HybridProgram", "LIFLayer", "QChipLayer",
           "QChipProjection", "RelayLayer", "StateSpec", "frozen_array"]
