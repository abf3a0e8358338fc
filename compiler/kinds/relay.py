"""``relay``: SpikeGPT's dataflow fold (compiler/hybrid/fold.py): host-injected graded events straight into a
projection's synapses, no neuron state and no neurons on a core. One step per call; payload = the input integer,
clipped to |x| ≤ `levels` (numpy step: runtime/kinds/relay.py). Lowering: the folded Linear's weights over
[e ; S] (`relay_weights`), one accumulator group per part."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .base import ChipKind

if TYPE_CHECKING:
    from ..hybrid.cut import CutPlan, PlannedLayer
    from ..hybrid.ir import QChipLayer
    from ..targets import Target


@dataclass(frozen=True)
class RelayKind(ChipKind):
    def lower(self, plan: CutPlan, planned: PlannedLayer, x_max: dict[str, float], target: Target,
              done: list[QChipLayer]) -> QChipLayer:
        from ..hybrid import quantize as q
        from ..hybrid.ir import QChipLayer, QChipProjection
        from ..ir import frozen_array

        fold = planned.fold
        v, groups, _ = q.relay_weights(plan, planned)
        payload_max = max(fold.bound_e, fold.bound_s, 1)
        m, e = q.mantissas(v, payload_max, fold.linear, target)
        proj = QChipProjection(name=fold.linear, weight=frozen_array(m), unit=2.0 ** (e - 1),
                               message_bits=payload_max.bit_length(), groups=frozen_array(groups.astype(np.int8)),
                               n_groups=int(groups.max()) + 1, bias=None)
        return QChipLayer(name=fold.linear, kind="relay", width=int(groups.size), steps=1,
                          input=f"chip_in:{fold.linear}", output=f"chip_out:{fold.linear}", in_unit=1.0,
                          payload_unit=1.0, segment=planned.segment, levels=payload_max, projection=proj)


KIND = RelayKind(name="relay", programmable=False, host_injected=True, binary_encodings=True)
