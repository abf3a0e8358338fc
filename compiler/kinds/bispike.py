"""``bispike``: SpikeLM's elastic bi-spike neuron on the chip (compiler/hybrid/ir.py has the semantics, the numpy
step is runtime/kinds/bispike.py). One step per call, step index t = call mod T, state reset at t = 0; payload
a_t·s, graded and signed. Lowering: input LSB δ from the calibrated peak, thresholds and carries as the spine's
(`compiler/passes/quantize.py`), amplitudes a_t = round(2^p·α_t/α_ref); a stateless bi-spike fed only by a
chip projection is chained onto it (compiler/hybrid/cut.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from spikestack.models.nir.nodes import BiSpike

from spikestack.errors import CompileError, TargetLimitError

from .base import ChipKind
from .layer import QChipLayer

if TYPE_CHECKING:
    from ..artifact_schema import Ctx
    from ..hybrid.cut import CutPlan, PlannedLayer
    from ..ir import SpikingPop
    from ..targets import Target


@dataclass(frozen=True, slots=True, kw_only=True)
class BiSpikeLayer(QChipLayer):
    """SpikeLM's elastic bi-spike on the chip: one step per call at t = call mod `period`, reset at t = 0."""

    kind: ClassVar[str] = "bispike"
    thresholds: np.ndarray  # int64 [T, K]: level k is reached when u > θ_{t,k}
    carry: np.ndarray  # int64 [T, 2K+1]: membrane factor after emitting level s, in units of 2^-carry_shift
    carry_shift: int
    amplitude: np.ndarray  # int64 [T]: payload amplitude a_t
    period: int = 1  # T (calls per token)


@dataclass(frozen=True)
class BiSpikeKind(ChipKind):
    def peak_per_step(self, layer: QChipLayer) -> int:
        return int(np.abs(np.asarray(layer.amplitude)).max()) * int(layer.levels)

    def payload_bits(self, layer: QChipLayer) -> int:
        return int(self.peak_per_step(layer)).bit_length() + 1  # signed

    def input_limit(self, target: Target) -> int:
        return target.state_max  # the membrane's range

    def spike_levels(self, layer: QChipLayer, payloads: np.ndarray) -> np.ndarray:
        """Payloads are s · a_t (a_t the per-step amplitude, t = call mod T): divide the amplitude out."""
        amp = np.asarray(layer.amplitude, np.int64)[np.arange(payloads.shape[0]) % layer.period]
        return payloads // amp.reshape((-1,) + (1,) * (payloads.ndim - 1))

    def lower(self, plan: CutPlan, planned: PlannedLayer, x_max: dict[str, float], target: Target,
              done: list[QChipLayer]) -> QChipLayer:
        source = next(q for q in done if q.name == planned.source) if planned.source else None
        if planned.projection is not None and source is not None:
            raise CompileError(f"layer {planned.neuron!r}: a chained bi-spike with its own projection is not "
                               "supported")
        return _bispike(plan, planned, x_max[planned.neuron], target, source)

    def manifest_fields(self) -> tuple[dict[str, Any], dict[str, Any]]:
        from ..artifact_schema import MAX_STEPS, Array, Int

        return ({"thresholds": Array("int", 2), "carry": Array("int", 2), "carry_shift": Int(1, 62),
                 "amplitude": Array("int", 1)}, {"period": Int(1, MAX_STEPS)})

    def check_manifest(self, ctx: Ctx, la: dict[str, Any], path: str) -> None:
        from ..artifact_check import expect_shape
        from ..artifact_schema import fail, join

        period, k = la.get("period", 1), la.get("levels", 1)
        if k > 127:
            fail(ctx, join(path, "levels"), k, "an integer in 1..127 (bi-spike levels are int8)")
        expect_shape(ctx, join(path, "thresholds"), la["thresholds"], (period, k), "period × levels")
        expect_shape(ctx, join(path, "carry"), la["carry"], (period, 2 * k + 1), "period × (2·levels + 1)")
        expect_shape(ctx, join(path, "amplitude"), la.get("amplitude"), (period,), "period")


def _bispike(plan: CutPlan, layer: PlannedLayer, x_max: float, target: Target,
             source: QChipLayer | None = None) -> QChipLayer:
    from ..hybrid import quantize as q
    from ..ir import SpikingPop, frozen_array
    from ..passes.mantissas import weight_mantissa_max
    from ..passes.quantize import _spiking_tables, state_bound

    node = plan.graph.nodes[layer.neuron]
    alpha = np.asarray(node.alpha, np.float64)
    steps, levels = alpha.size, int(node.levels)
    pop = SpikingPop(name=layer.neuron, size=int(node.shape[0]), alpha=alpha, levels=levels,
                     reset_scale=float(node.reset_scale))
    if source is not None:
        return _chained_bispike(layer, pop, source, target)
    unit = 2.0 ** q.pow2_ceil(max(2 * x_max, 1e-30) / 2**q.BISPIKE_INPUT_BITS)
    for _ in range(64):
        tables = _spiking_tables(pop, unit, np.zeros(pop.size), target.decay_bits)
        x_int = np.array([math.ceil(2 * x_max / unit)])
        if state_bound(x_int, np.asarray(tables.carry), tables.carry_shift, steps) <= target.state_max:
            break
        unit *= 2
    alpha_ref = float(alpha.max())
    # largest payload precision p whose worst-case accumulator fits (estimated on the float weights; `mantissas`
    # then guarantees it on the integer ones)
    p = q.MAX_AMPLITUDE_BITS
    if layer.projection is not None:
        w_peak = float(np.abs(np.asarray(plan.graph.nodes[layer.projection].weight)).max()) * alpha_ref
        rows = q.fan_in_sum(plan, layer) * alpha_ref
        q_max = weight_mantissa_max(target)
        while p > 1 and rows / max(w_peak / q_max, 1e-300) * 2 * levels * 2**p > target.state_max:
            p -= 1
    amplitude = _amplitudes(alpha, p)
    payload_unit = alpha_ref / 2**p
    payload_max = int(amplitude.max()) * levels
    width = pop.size
    proj = q.projection(plan, layer, alpha_ref, payload_max, np.zeros(width), 1, 1.0 / 2**p,
                        payload_max.bit_length() + 1, target)
    return BiSpikeLayer(name=layer.neuron, width=width, steps=1, input=f"chip_in:{layer.neuron}",
                      output=f"chip_out:{layer.neuron}", in_unit=unit, payload_unit=payload_unit,
                      segment=layer.segment, thresholds=tables.thresholds, carry=tables.carry,
                      carry_shift=tables.carry_shift, amplitude=frozen_array(amplitude), period=steps, levels=levels,
                      projection=proj)


def _amplitudes(alpha: np.ndarray, p: int) -> np.ndarray:
    """Payload amplitudes a_t = round(2^p · α_t / α_ref) ≥ 1, α_ref = max α (the spine's fold_amplitudes)."""
    return np.maximum(np.round(2.0**p * alpha / float(alpha.max())), 1).astype(np.int64)


def _chained_bispike(layer: PlannedLayer, pop: SpikingPop, source: QChipLayer, target: Target) -> QChipLayer:
    """A stateless bi-spike on the chip edge of `source`'s projection: its input LSB is that projection's
    accumulator LSB (the dendritic sum arrives unscaled), the projection's bias becomes the neuron's integer bias.
    Without a carry u = x, so the state holds whatever the accumulator (bounded by `mantissas`) plus the
    bias holds; beyond it the neuron saturates and counts (`bispike_step`)."""
    from ..hybrid import quantize as q
    from ..ir import frozen_array
    from ..passes.quantize import _spiking_tables

    proj = source.projection
    unit = proj.unit
    tables = _spiking_tables(pop, unit, np.zeros(pop.size), target.decay_bits)
    if np.any(np.asarray(tables.carry)):
        raise CompileError(f"layer {layer.neuron!r}: only stateless bi-spikes (reset_scale 0) can be chained")
    if int(np.asarray(tables.thresholds).max()) > target.state_max:
        raise TargetLimitError(f"layer {layer.neuron!r}: threshold {int(np.asarray(tables.thresholds).max())} LSB of "
                               f"{source.name!r}'s accumulator exceeds the {target.state_bits}-bit state")
    bias = np.zeros(pop.size) if proj.bias is None else np.round(np.asarray(proj.bias) / unit)
    alpha_ref = float(pop.alpha.max())
    amplitude = _amplitudes(pop.alpha, q.MAX_AMPLITUDE_BITS)
    return BiSpikeLayer(name=layer.neuron, width=pop.size, steps=1, input=source.output,
                      output=f"chip_out:{layer.neuron}", in_unit=unit,
                      payload_unit=alpha_ref / 2**q.MAX_AMPLITUDE_BITS,
                      segment=layer.segment, thresholds=tables.thresholds, carry=tables.carry,
                      carry_shift=tables.carry_shift, amplitude=frozen_array(amplitude), period=pop.alpha.size,
                      levels=pop.levels, projection=None, source=source.name,
                      bias=frozen_array(np.clip(bias, -target.state_max, target.state_max).astype(np.int64)))


KIND = BiSpikeKind(name="bispike", layer_type=BiSpikeLayer, node_types=(BiSpike,))
