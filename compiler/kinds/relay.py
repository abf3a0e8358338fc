"""``relay``: SpikeGPT's dataflow fold (compiler/hybrid/fold.py): host-injected graded events straight into a
projection's synapses, no neuron state and no neurons on a core. One step per call; payload = the input integer,
clipped to |x| ≤ `levels` (numpy step: runtime/kinds/relay.py). Lowering: the folded Linear's weights over
[e ; S] (`relay_weights`), one accumulator group per part. Host side: the input is the integer [e ; S] itself
(no quantizer), and the output goes through the fold's dequantizer (compiler/hybrid/host_ops.py `FoldDequant`),
which also keeps the token-shift state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .base import ChipKind
from .layer import QChipLayer

if TYPE_CHECKING:
    from ..hybrid.cut import CutPlan, PlannedLayer
    from ..hybrid.host_stages import StageModule
    from ..targets import Target


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayLayer(QChipLayer):
    """Host-injected graded events (no neuron state, no neurons on a core); `levels` bounds |payload|."""

    kind: ClassVar[str] = "relay"


@dataclass(frozen=True)
class RelayKind(ChipKind):
    def lower(self, plan: CutPlan, planned: PlannedLayer, x_max: dict[str, float], target: Target,
              done: list[QChipLayer]) -> QChipLayer:
        from ..hybrid import quantize as q
        from ..ir import frozen_array, frozen_new
        from .layer import QChipProjection

        fold = planned.fold
        v, groups, _ = q.relay_weights(plan, planned, unique=True)  # equal column groups: mantissas once
        payload_max = max(fold.bound_e, fold.bound_s, 1)
        m, e = q.mantissas(v, payload_max, fold.linear, target, repeat=q.relay_repeat(plan, planned))
        proj = QChipProjection(name=fold.linear, weight=frozen_new(m), unit=2.0 ** (e - 1),
                               message_bits=payload_max.bit_length(), groups=frozen_array(groups.astype(np.int8)),
                               n_groups=int(groups.max()) + 1, bias=None)
        return RelayLayer(name=fold.linear, width=int(groups.size), steps=1,
                          input=f"chip_in:{fold.linear}", output=f"chip_out:{fold.linear}", in_unit=1.0,
                          payload_unit=1.0, segment=planned.segment, levels=payload_max, projection=proj)

    # --- host side
    def host_setup(self, stage: StageModule, layer: QChipLayer, sends: bool) -> None:
        from ..hybrid.host_ops import FoldDequant
        from ..hybrid.host_stages import _key

        if not sends:
            stage.folds[_key(layer.name)] = FoldDequant(stage.plan, layer)

    def host_quantize(self, stage: StageModule, layer: QChipLayer, env: dict[str, Any]) -> None:
        """[e ; S]: integer vectors, exact in float32 below 2^24."""
        import torch

        from ..hybrid.host_ops import embed_input

        fold = stage.fold_of[layer.name]
        parts = [embed_input(stage, fold, env)] if fold.normed else []  # e, or a real embedding's u
        parts += [stage.summed(fold.spikes, env)] if fold.spikes else []
        env[layer.input] = torch.round(torch.cat(parts, -1)).to(torch.int32)

    def host_receive(self, stage: StageModule, layer: QChipLayer, env: dict[str, Any]) -> None:
        """The folded Linear's output (and the next token-shift state) from the accumulators."""
        from ..hybrid.host_stages import _key, next_name, state_name

        fold = stage.fold_of[layer.name]
        e = stage.summed(fold.embed, env) if fold.normed and not fold.real_embedding else None
        x = stage.summed(((fold.normed,) if fold.normed else ()) + fold.spikes, env)
        state = state_name(f"fold:{layer.name}")
        env[layer.name], shifted = stage.folds[_key(layer.name)](env[layer.output], x, e,
                                                                 env[state] if fold.prev is not None else None)
        if shifted is not None:
            env[next_name(state)] = shifted


KIND = RelayKind(name="relay", layer_type=RelayLayer,
                 programmable=False, host_injected=True, binary_encodings=True, dataflow_fold=True)
