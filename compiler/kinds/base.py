"""`ChipKind`: everything about one neuron kind of a hybrid program's chip layers that the IR side needs.

A layer class (a `QChipLayer` subclass with the kind's integer parameters, compiler/kinds/layer.py) is the stored
data; its kind object is the behaviour: payload width and
bound, how the kind is lowered from the float graph (quantize), what the verifier and the artifact reader check
on its fields, and the simulator's cost hooks. One subclass instance per kind, registered in `KINDS`
(compiler/kinds/__init__.py); no stage branches on the kind string.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..artifact_schema import Ctx
    from ..hybrid.cut import CutPlan, PlannedLayer
    from ..hybrid.host_stages import StageModule
    from ..hybrid.ir import QChipLayer
    from ..targets import Target


@dataclass(frozen=True)
class ChipKind:
    """One neuron kind. Flags are facts every stage reads; methods are the per-kind parts of the stages.

    The defaults describe a plain stateful neuron with one step per call and an unsigned-free graded payload;
    a kind overrides what differs."""

    name: str
    # the kind's layer class: the fields its layers carry (artifacts are read into it)
    layer_type: type = object
    # needs the target's programmable neurons (bispike, gif); stock LIF and plain synapses do not
    programmable: bool = True
    # events come from the host (relay): no neurons on a core, no neuron state, the value is formed on the host
    host_injected: bool = False
    # the payload is an unsigned level without a per-step amplitude, so binary encodings (unary, bit-serial) can
    # carry it (compiler/encodings.py)
    binary_encodings: bool = False
    # without a projection, the call's output is the sum of its steps' payloads (else the last step's)
    sums_steps: bool = False
    # the kind runs `layer.steps` neuron steps per call (else one)
    multi_step: bool = False
    # the float graph's neuron nodes this kind lowers (compiler/hybrid/cut.py puts them on the chip)
    node_types: tuple[type, ...] = ()
    # what `--dataflow` folds Linears into (compile refuses --dataflow when no layer of such a kind results)
    dataflow_fold: bool = False
    # the output accumulates over a token's calls: a `last_step` program's host reads it once per token (readout)
    read_per_token: bool = False

    # --- payloads
    def peak_per_step(self, layer: QChipLayer) -> int:
        """Largest |payload| of one neuron in one step."""
        return int(layer.levels)

    def payload_bits(self, layer: QChipLayer) -> int:
        """Bits of one event's graded payload, sign included (0: binary spike)."""
        return int(self.peak_per_step(layer)).bit_length()

    def max_level(self, layer: QChipLayer) -> int:
        """Largest unsigned payload (what binary encodings must cover)."""
        return int(layer.levels)

    def steps_per_call(self, layer: QChipLayer) -> int:
        """Neuron steps (Lava time steps) of one call."""
        return int(layer.steps) if self.multi_step else 1

    def output(self, payloads: np.ndarray) -> np.ndarray:
        """The host's value of a layer without a projection, from its payloads [steps, ..., width]."""
        return payloads.sum(0) if self.sums_steps else payloads[-1]

    def chip_output(self, payloads: np.ndarray, state: Any) -> np.ndarray:
        """What the numpy reference hands the host for a layer without a projection after a call (`state`: the
        layer's runtime state): its payloads' `output`, unless the kind's value lives in its state (readout)."""
        return self.output(payloads)

    # --- host side: the host stages' torch code (compiler/hybrid/host_stages.py `StageModule`, exported to ONNX)
    # calls these with the stage and its env of tensors by name. Defaults: the host quantizes the summed float
    # input to `in_unit` and dequantizes the payload (no projection) or the accumulator (projection, plus bias).
    def input_limit(self, target: Target) -> int | None:
        """Largest |integer| the host writes into the layer (None: the kind's host lowering bounds it itself)."""
        return None

    def host_aux_outputs(self, layer: QChipLayer) -> tuple[str, ...]:
        """Env tensors the host writes beside the layer's input and reads again to dequantize its output."""
        return ()

    def host_setup(self, stage: StageModule, layer: QChipLayer, sends: bool) -> None:
        """Register the modules and buffers the stage needs to quantize (`sends`) or dequantize the layer."""

    def host_quantize(self, stage: StageModule, layer: QChipLayer, env: dict[str, Any]) -> None:
        """Write the layer's integer input `env[layer.input]` (and any `host_aux_outputs`)."""
        import torch

        x = stage.summed(stage.layer_inputs[layer.name], env)
        limit = self.input_limit(stage.target)  # what the chip accepts (bi-spike membrane, LIF a_in)
        env[layer.input] = torch.clamp(torch.round(x / layer.in_unit), -limit, limit).to(torch.int32)

    def host_receive(self, stage: StageModule, layer: QChipLayer, env: dict[str, Any]) -> None:
        """Write the host's real value of the layer's output (the projection's node, else the neuron's)."""
        p = layer.projection
        env[p.name if p else layer.name] = self.host_dequantize(stage, layer, env[layer.output], env)

    def host_dequantize(self, stage: StageModule, layer: QChipLayer, raw: Any, env: dict[str, Any]) -> Any:
        """The real value (float32 tensor) of the chip output `raw`."""
        p = layer.projection
        if p is None:
            return raw.float() * layer.payload_unit
        return with_bias(raw[..., 0, :].float() * p.unit, layer)

    def dequantize(self, layer: QChipLayer, env: dict[str, np.ndarray]) -> np.ndarray:
        """numpy float64 twin of `host_dequantize` (runtime/hybrid/calibration.py compares it with the float
        model)."""
        raw = np.asarray(env[layer.output], np.float64)
        p = layer.projection
        if p is None:
            return raw * layer.payload_unit
        return raw[..., 0, :] * p.unit + (0.0 if p.bias is None else np.asarray(p.bias))

    # --- simulator
    def spike_levels(self, layer: QChipLayer, payloads: np.ndarray) -> np.ndarray:
        """Payloads [calls, steps, ...] → spike levels (what NeuroBench calls the spike's value)."""
        return payloads

    # --- artifact
    def manifest_fields(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(required, optional) schema specs (compiler/artifact_schema.py) of the fields the kind's layer class adds
        to `QChipLayer`'s: an artifact's layer entry is checked against exactly its kind's fields."""
        return {}, {}

    # --- lowering and checks
    def lower(self, plan: CutPlan, planned: PlannedLayer, x_max: dict[str, float], target: Target,
              done: list[QChipLayer]) -> QChipLayer:
        """The integer layer of a planned one (`done`: the layers quantized before it, for chained sources)."""
        raise NotImplementedError(f"chip kind {self.name!r} has no lowering from the float graph")

    def verify(self, layer: QChipLayer, target: Target) -> None:
        """The kind's field invariants in the built program (CompileError: a compiler bug)."""

    def check_manifest(self, ctx: Ctx, la: dict[str, Any], path: str) -> None:
        """The kind's field relations in an artifact's manifest entry (ArtifactError naming the JSON path)."""

    def check_values(self, ctx: Ctx, layer: QChipLayer, path: str, target: Target) -> None:
        """The kind's array values against the embedded target, after the arrays are read (ArtifactError)."""


def with_bias(y: Any, layer: QChipLayer) -> Any:
    """y plus the projection's float bias (a torch tensor), if it has one."""
    bias = layer.projection.bias
    if bias is None:
        return y
    import torch

    return y + torch.from_numpy(np.asarray(bias, np.float32))
