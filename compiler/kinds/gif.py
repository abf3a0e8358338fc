"""``gif``: SpikeLLM's graded integrate-and-fire (compiler/hybrid/ir.py has the semantics, the numpy step is
runtime/kinds/gif.py). K = `steps` steps per call, state reset every call; the input is the unsigned charge u;
s_k = min(u, L − 1), u ← u − s_k; payload s_k, graded and unsigned (binary encodings can carry it). Lowering: the
input is the code (unit 1); accumulators are in weight-mantissa units, dequantized per group with Δ and z on the
host: the host encoder (compiler/hybrid/host_ops.py `GIFEncode`) writes the codes and each group's Δ and z, and
the host stage after the chip reads them back (`host_aux_outputs`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from spikestack.models.nir.neurons import GIF

from .base import ChipKind, with_bias
from .layer import QChipLayer

if TYPE_CHECKING:
    from ..hybrid.cut import CutPlan, PlannedLayer
    from ..hybrid.host_stages import StageModule
    from ..targets import Target


@dataclass(frozen=True, slots=True, kw_only=True)
class GIFLayer(QChipLayer):
    """SpikeLLM's GIF: `steps` steps per call, charge reset every call; `levels` = L (spikes 0..L − 1)."""

    kind: ClassVar[str] = "gif"


def scale_name(layer: str) -> str:
    """Env name of a GIF layer's per-group quantization step Δ (written by its host encoder)."""
    return f"gif_scale:{layer}"


def zero_name(layer: str) -> str:
    """Env name of a GIF layer's per-group zero point z."""
    return f"gif_zero:{layer}"


@dataclass(frozen=True)
class GIFKind(ChipKind):
    def peak_per_step(self, layer: QChipLayer) -> int:
        return int(layer.levels) - 1

    def max_level(self, layer: QChipLayer) -> int:
        return int(layer.levels) - 1

    def lower(self, plan: CutPlan, planned: PlannedLayer, x_max: dict[str, float], target: Target,
              done: list[QChipLayer]) -> QChipLayer:
        from ..hybrid import quantize as q

        node = plan.graph.nodes[planned.neuron]
        groups = q.gif_groups(node)
        max_code = max(code for _, _, code in groups)
        proj = q.projection(plan, planned, 1.0, max_code, q.gif_group_of(node), len(groups), 1.0, int(node.bits),
                            target)
        return GIFLayer(name=planned.neuron, width=int(node.salient.size), steps=2**node.addbit,
                          input=f"chip_in:{planned.neuron}", output=f"chip_out:{planned.neuron}", in_unit=1.0,
                          payload_unit=1.0, segment=planned.segment, levels=2**node.bits, projection=proj)

    # --- host side: codes, Δ and z from the encoder; accumulators Σ_{i∈g} m_oi (code_i − z_g) dequantized per group
    def host_aux_outputs(self, layer: QChipLayer) -> tuple[str, ...]:
        return scale_name(layer.name), zero_name(layer.name)

    def host_setup(self, stage: StageModule, layer: QChipLayer, sends: bool) -> None:
        import torch

        from ..hybrid.host_ops import GIFEncode
        from ..hybrid.host_stages import _key

        node = stage.plan.graph.nodes[layer.name]
        if sends:
            stage.encoders[_key(layer.name)] = GIFEncode(node, float(node.min_step))
        elif layer.projection is not None:
            stage.register_buffer(f"w_{_key(layer.name)}", torch.from_numpy(layer.projection.group_sums()).float())

    def host_quantize(self, stage: StageModule, layer: QChipLayer, env: dict[str, Any]) -> None:
        from ..hybrid.host_stages import _key

        x = stage.summed(stage.layer_inputs[layer.name], env)
        codes, scale, zero = stage.encoders[_key(layer.name)](x)
        env[layer.input], env[scale_name(layer.name)], env[zero_name(layer.name)] = codes, scale, zero

    def host_dequantize(self, stage: StageModule, layer: QChipLayer, raw: Any, env: dict[str, Any]) -> Any:
        import torch

        from ..hybrid.host_stages import _key
        from ..hybrid.quantize import gif_group_of

        p = layer.projection
        scale, zero = env[scale_name(layer.name)], env[zero_name(layer.name)]
        if p is None:  # per channel: Δ_g (code − z_g) of the channel's group
            group = torch.from_numpy(gif_group_of(stage.plan.graph.nodes[layer.name]))
            return scale[..., group] * (raw.float() - zero[..., group])
        colsum = getattr(stage, f"w_{_key(layer.name)}")  # [G, out] Σ_{i∈g} m_oi
        acc = raw.float() * p.unit - zero[..., None] * colsum * p.unit
        return with_bias((scale[..., None] * acc).sum(-2), layer)

    def dequantize(self, layer: QChipLayer, env: dict[str, np.ndarray]) -> np.ndarray:
        p = layer.projection
        if p is None:
            raise NotImplementedError("GIF layers without a projection are not in any shipped model")
        raw = np.asarray(env[layer.output], np.float64)
        scale, zero = (np.asarray(env[n], np.float64) for n in self.host_aux_outputs(layer))
        y = (scale[..., None] * (raw - zero[..., None] * p.group_sums()) * p.unit).sum(-2)
        return y + (0.0 if p.bias is None else np.asarray(p.bias))


KIND = GIFKind(name="gif", layer_type=GIFLayer, binary_encodings=True,
               sums_steps=True, multi_step=True, node_types=(GIF,))
