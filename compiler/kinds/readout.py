"""``readout``: non-spiking accumulators on the chip, the readout population of a chain program (the bi-spike
spine's logits) as a hybrid chip layer. Chained only: its input is its source's projection, landing on it on the
chip. Over the `period` calls of a token it integrates that input, restarting at the token's first call and
saturating at ±state_max every step (runtime/neurons.py `readout_step`, the chain's readout); its output, read by
the host, is the running sum, which a `last_step` program reads at the token's last call. It emits no events: its
payloads are zero, its value leaves only as its output (numpy step: runtime/kinds/readout.py).

Why a kind: the chain's readout integrates on the cores over all T steps and is read once per token; as a hybrid
layer it keeps that: no host round trip per step, the same integers (compiler/chain_hybrid.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from spikestack.errors import CompileError

from .base import ChipKind
from .layer import QChipLayer

if TYPE_CHECKING:
    from ..targets import Target


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadoutLayer(QChipLayer):
    """Accumulators integrating their chained input over `period` calls (reset at t = call mod period = 0)."""

    kind: ClassVar[str] = "readout"
    period: int = 1  # T: calls per token


@dataclass(frozen=True)
class ReadoutKind(ChipKind):
    def peak_per_step(self, layer: QChipLayer) -> int:
        return 0  # no events

    def payload_bits(self, layer: QChipLayer) -> int:
        return 0

    def chip_output(self, payloads: Any, state: Any) -> Any:
        """The running sum the step keeps in its state, not a payload: `state.u` of the numpy reference
        (runtime/kinds/readout.py), `state["u"]` of the torch chip (runtime/hybrid/torch_chip.py)."""
        return state["u"] if isinstance(state, dict) else state.u

    def manifest_fields(self) -> tuple[dict[str, Any], dict[str, Any]]:
        from ..artifact_schema import MAX_STEPS, Int

        return {}, {"period": Int(1, MAX_STEPS)}

    def verify(self, layer: QChipLayer, target: Target) -> None:
        if layer.source is None or layer.projection is not None:
            raise CompileError(f"readout layer {layer.name!r}: accumulators are chained from a projection on the "
                               f"chip (source set) and drive none (source {layer.source!r}, projection "
                               f"{None if layer.projection is None else layer.projection.name!r})")


KIND = ReadoutKind(name="readout", layer_type=ReadoutLayer, read_per_token=True)
