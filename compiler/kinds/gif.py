"""``gif``: SpikeLLM's graded integrate-and-fire (compiler/hybrid/ir.py has the semantics, the numpy step is
runtime/kinds/gif.py). K = `steps` steps per call, state reset every call; the input is the unsigned charge u;
s_k = min(u, L − 1), u ← u − s_k; payload s_k, graded and unsigned (binary encodings can carry it). Lowering: the
input is the code (unit 1); accumulators are in weight-mantissa units, dequantized per group with Δ and z on the
host (compiler/hybrid/host_stages.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from spikestack.models.nir.neurons import GIF

from .base import ChipKind

if TYPE_CHECKING:
    from ..hybrid.cut import CutPlan, PlannedLayer
    from ..hybrid.ir import QChipLayer
    from ..targets import Target


@dataclass(frozen=True)
class GIFKind(ChipKind):
    def peak_per_step(self, layer: QChipLayer) -> int:
        return int(layer.levels) - 1

    def max_level(self, layer: QChipLayer) -> int:
        return int(layer.levels) - 1

    def lower(self, plan: CutPlan, planned: PlannedLayer, x_max: dict[str, float], target: Target,
              done: list[QChipLayer]) -> QChipLayer:
        from ..hybrid import quantize as q
        from ..hybrid.ir import QChipLayer

        node = plan.graph.nodes[planned.neuron]
        groups = q.gif_groups(node)
        max_code = max(code for _, _, code in groups)
        proj = q.projection(plan, planned, 1.0, max_code, q.gif_group_of(node), len(groups), 1.0, int(node.bits),
                            target)
        return QChipLayer(name=planned.neuron, kind="gif", width=int(node.salient.size), steps=2**node.addbit,
                          input=f"chip_in:{planned.neuron}", output=f"chip_out:{planned.neuron}", in_unit=1.0,
                          payload_unit=1.0, segment=planned.segment, levels=2**node.bits, projection=proj)


KIND = GIFKind(name="gif", binary_encodings=True, sums_steps=True, multi_step=True, node_types=(GIF,))
