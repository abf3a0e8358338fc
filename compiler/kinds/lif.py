"""``lif``: SpikeGPT's LIF as Lava's stock fixed_pt LIF (compiler/hybrid/ir.py has the semantics, the numpy step
is runtime/kinds/lif.py). One step per call, state kept across calls; payload s ∈ {0, 1}. Lowering (NIR LIF,
Euler dt = 1 call): du = U − 1 (no current state), dv = round(U/τ), a_in = round(R·I/(τ·2^A·δ_v)) so that
a_in << A is the Euler input in v-LSBs; vth = θ/(2^A δ_v). NIR fires on v > θ; SpikeGPT's ≥ (node metadata)
becomes vth·2^A = θ/δ_v − 2^A (fires from 2^A − 1 LSBs below θ, a relative error of 2^-14; reported)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import nir
import numpy as np

from spikestack.errors import CompileError

from .base import ChipKind
from .layer import QChipLayer

if TYPE_CHECKING:
    from ..artifact_schema import Ctx
    from ..hybrid.cut import CutPlan, PlannedLayer
    from ..targets import Target

THRESHOLD_TEST_KEY = "spikestack.threshold_test"


@dataclass(frozen=True, slots=True, kw_only=True)
class LIFLayer(QChipLayer):
    """Lava's fixed_pt LIF (`lava/proc/lif/models.py`), state kept across calls; binary spikes."""

    kind: ClassVar[str] = "lif"
    du: int  # current decay in the target's decay_bits; 2^bits − 1 makes u this step's input (NIR LIF)
    dv: int  # voltage decay, round(2^decay_bits / τ)
    vth: int  # threshold mantissa; effective threshold vth << activation_shift


@dataclass(frozen=True)
class LIFKind(ChipKind):
    def peak_per_step(self, layer: QChipLayer) -> int:
        return 1

    def payload_bits(self, layer: QChipLayer) -> int:
        return 0  # a binary spike

    def input_limit(self, target: Target) -> int:
        return target.activation_max  # a_in, shifted into the state

    def lower(self, plan: CutPlan, planned: PlannedLayer, x_max: dict[str, float], target: Target,
              done: list[QChipLayer]) -> QChipLayer:
        return _lif(plan, planned, x_max[planned.neuron], target)

    def manifest_fields(self) -> tuple[dict[str, Any], dict[str, Any]]:
        from ..artifact_schema import LAVA_DECAY, LAVA_VTH

        return {"du": LAVA_DECAY, "dv": LAVA_DECAY, "vth": LAVA_VTH}, {}

    def verify(self, layer: QChipLayer, target: Target) -> None:
        from ..verify import verify_lif_fields

        verify_lif_fields(layer.name, layer.du, layer.dv, layer.vth, target)

    def check_values(self, ctx: Ctx, layer: QChipLayer, path: str, target: Target) -> None:
        from ..artifact_check import lif_widths

        lif_widths(ctx, path, layer.du, layer.dv, layer.vth, target)


def _uniform(node: nir.NIRNode, name: str, field_name: str) -> float:
    values = np.asarray(getattr(node, field_name), np.float64).reshape(-1)
    if values.size == 0 or not np.all(values == values[0]):
        raise CompileError(f"node {name!r}: field {field_name!r} must be the same for every neuron on the chip, got "
                           f"{np.unique(values)[:4].tolist()}")
    return float(values[0])


def _lif(plan: CutPlan, layer: PlannedLayer, x_max: float, target: Target) -> QChipLayer:
    from ..hybrid import quantize as q

    node: nir.LIF = plan.graph.nodes[layer.neuron]
    tau, r = _uniform(node, layer.neuron, "tau"), _uniform(node, layer.neuron, "r")
    theta = _uniform(node, layer.neuron, "v_threshold")
    for f in ("v_leak", "v_reset"):
        if _uniform(node, layer.neuron, f) != 0:
            raise CompileError(f"node {layer.neuron!r}: field {f!r} must be 0 for the chip LIF (Lava resets to 0 and "
                               "has no leak potential)")
    if tau < 1 or theta <= 0:
        raise CompileError(f"node {layer.neuron!r}: needs tau >= 1 step and v_threshold > 0, got {tau}, {theta}")
    dv = round(target.decay_unity / tau)
    gain = r / tau  # Euler input gain in v units per unit of I
    shifted = 1 << target.activation_shift  # one a_in LSB in v LSBs
    # 2× the calibrated input spans a_in's range; the threshold (in v LSBs) stays within a quarter of the state
    unit_v = 2.0 ** q.pow2_ceil(max(2 * x_max * gain / ((target.activation_max + 1) * shifted),
                                    theta / 2 ** (target.state_bits - 2)))
    theta_int = round(theta / unit_v)
    test = (node.metadata or {}).get(THRESHOLD_TEST_KEY, ">")
    test = test.decode() if isinstance(test, bytes) else str(test)
    vth = theta_int // shifted - (1 if test == ">=" else 0)
    width = int(np.asarray(node.v_threshold).size)
    proj = q.projection(plan, layer, 1.0, 1, np.zeros(width), 1, 1.0, 0, target)
    return LIFLayer(name=layer.neuron, width=width, steps=1, input=f"chip_in:{layer.neuron}",
                      output=f"chip_out:{layer.neuron}", in_unit=shifted * unit_v / gain, payload_unit=1.0,
                      segment=layer.segment, du=target.decay_unity - 1, dv=dv, vth=int(vth), projection=proj)


KIND = LIFKind(name="lif", layer_type=LIFLayer, programmable=False, node_types=(nir.LIF,))
