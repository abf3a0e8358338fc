"""Chip backend of hybrid programs on Lava's CPU backend (`Loihi2SimCfg(select_tag="fixed_pt")`), bit for bit
equal to the numpy reference (`chip.py`, `ReferenceChip`).

Why a third backend: the reference and torch chips are our own code; this one runs every chip layer as Lava
Processes — Lava's stock fixed_pt LIF (PyLifModelBitAcc) and stock Sparse synapses, and our bi-spike and GIF
ProcessModels (`runtime/lava/procs/chip_*.py`, calling the same integer functions as the reference) — so the
artifact's integer semantics are checked against Lava's own message passing, delays and weight handling.

One Lava network (and runtime) per chip layer, built once per (program, lead) and kept alive across calls,
because host stages run between calls in the executor's loop:

    ChipInput ──▶ neuron (LIF | ChipBiSpike | ChipGIF) ──▶ Sparse (projection) ──▶ DendriteSum (K ≥ 2 only)
                                                      └──▶ StepLog (stock LIF only: it keeps no spike history)

* Positions: every position of the lead axes (B for SpikeGPT, B × L otherwise) is its own copy of the
  neurons, flattened C-order into one population of prod(lead) × width; the projection is block-diagonal
  over the copies (scipy CSR in a stock `Sparse`, so it grows linearly with the positions).
* Groups (SpikeLLM's salient / non-salient accumulators): the projection's rows are [groups × out], row
  g·out + o holding weight[o, i] for the inputs i of group g and zeros elsewhere.
* Per call: `Var.set` the input on the source, run K Lava steps (K = the layer's steps per call: 1 for lif and
  bispike, `steps` for gif), `Var.get` the payloads and accumulators. A Sparse delivers at step k what it got
  at step k − 1 (REFERENCE.md §5.3), so the accumulator of a call is the destination's sum of steps 1 … K − 1
  plus the synapse's `a_buff` (W·s of step K − 1, computed but not yet sent); the arrival at the next call's
  step 0 is that same in-flight value and the destination drops it.

Cost (measured, 2 CPU cores, spikelm-dec-tiny on 1 × 4 positions): ≈0.22 s to compile and fork one layer's
network (16 layers: 3.6 s), ≈31 ms per layer and call (Var.set, one run, one or two Var.get on 256–1024
neurons), mostly Var transport: Lava moves Var data one float64 item per message. Use it to verify small inputs;
a new lead (another batch or sequence length) rebuilds every network.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import Any

import numpy as np
from spikestack.compiler.hybrid.ir import HybridProgram, QChipLayer
from spikestack.compiler.kinds import kind_of
from spikestack.compiler.targets import Target

from . import check_stock_lif, lava_weight_bits, lava_weights


def call_steps(layer: QChipLayer) -> int:
    """Lava time steps per call: the neuron steps of one call (ir.py: one for lif and bispike)."""
    return kind_of(layer).steps_per_call(layer)


def projection_matrix(layer: QChipLayer, positions: int):
    """CSR int32 [positions · groups · out, positions · width]: block-diagonal over the positions, rows per
    accumulator group (zeros for the inputs of other groups, dropped from the CSR)."""
    import scipy.sparse as sp

    grouped = layer.projection.grouped().astype(np.int32)
    m = sp.block_diag([sp.csr_matrix(grouped)] * positions, format="csr").astype(np.int32)
    m.eliminate_zeros()
    return m


def projection_matrices(layer: QChipLayer, positions: int) -> list[tuple[Any, int]]:
    """(CSR weights, weight_exp) of the Sparse processes carrying the projection in its encoding: graded — one
    matrix over the positions' neurons; unary — one matrix over [planes × positions × width] axons, every plane
    holding the weights; bit-serial — one matrix per bit b, holding the weights on plane b only, weight_exp = b
    (Lava scales the mantissas by 2^b; `lava_weights` puts them on Lava's 8-bit scale)."""
    import scipy.sparse as sp

    m = projection_matrix(layer, positions)
    p = layer.projection
    if p.encoding == "graded":
        return [(m, 0)]
    planes = layer.planes
    if p.encoding == "unary":
        return [(sp.hstack([m] * planes, format="csr"), 0)]
    empty = sp.csr_matrix(m.shape, dtype=np.int32)
    return [(sp.hstack([m if k == b else empty for k in range(planes)], format="csr"), b) for b in range(planes)]


@dataclass
class _LayerNet:
    """The Lava processes of one chip layer and what the host knows about their state."""

    layer: QChipLayer
    lead: tuple[int, ...]
    source: Any  # ChipInput; `run` is called on it (any process of a network runs the whole network)
    neuron: Any
    synapses: tuple = ()  # Sparse processes of the projection (one; bit-serial: one per bit plane)
    dendrite: Any = None  # DendriteSum, with a projection and K ≥ 2
    log: Any = None  # StepLog of a stock LIF's spikes
    next_call: int = 0  # the bispike's `call` Var after the last run
    dirty: bool = False  # a sequence ended: state must be cleared before the next call

    @property
    def steps(self) -> int:
        return call_steps(self.layer)


class LavaChip:
    """ChipBackend on Lava's CPU backend; see the module docstring for the network of each layer."""

    name = "lava"

    def __init__(self) -> None:
        self.program: HybridProgram | None = None
        self.lead: tuple[int, ...] = ()
        self.nets: dict[str, _LayerNet] = {}
        self._cfg = None
        self._lava: dict[str, Any] = {}

    # --- Lava imports (only here and in runtime/lava/procs)
    def _load(self) -> None:
        if self._lava:
            return
        from spikestack.runtime.lava import prepare_lava_import

        prepare_lava_import()
        from lava.magma.core.run_conditions import RunSteps
        from lava.magma.core.run_configs import Loihi2SimCfg
        from lava.proc.lif.models import PyLifModelBitAcc
        from lava.proc.lif.process import LIF
        from lava.proc.sparse.models import PySparseModelBitAcc
        from lava.proc.sparse.process import Sparse

        from .procs.chip_bispike import ChipBiSpike, PyChipBiSpikeFixed
        from .procs.chip_gif import ChipGIF, PyChipGIFFixed
        from .procs.chip_io import (
            ChipInput,
            DendriteSum,
            PlaneEncoder,
            PyChipInputFixed,
            PyDendriteSumFixed,
            PyPlaneEncoderFixed,
            PyStepLogFixed,
            StepLog,
        )

        self._lava = dict(RunSteps=RunSteps, LIF=LIF, Sparse=Sparse, ChipBiSpike=ChipBiSpike, ChipGIF=ChipGIF,
                          ChipInput=ChipInput, DendriteSum=DendriteSum, StepLog=StepLog, PlaneEncoder=PlaneEncoder)
        # explicit models: no discovery surprises, and the stock bit-accurate ones for LIF and Sparse
        self._cfg = Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map={
            LIF: PyLifModelBitAcc, Sparse: PySparseModelBitAcc, ChipBiSpike: PyChipBiSpikeFixed,
            ChipGIF: PyChipGIFFixed, ChipInput: PyChipInputFixed, DendriteSum: PyDendriteSumFixed,
            StepLog: PyStepLogFixed, PlaneEncoder: PyPlaneEncoderFixed})

    # --- ChipBackend
    def reset(self, program: HybridProgram, lead: tuple[int, ...]) -> None:
        """Lava Var shapes are fixed at build time: a new program or lead rebuilds (lazily, at each layer's first
        call, because Var.set needs a started runtime and the first input becomes the source's init); the same
        ones keep the networks and only mark their state for clearing."""
        lead = tuple(int(n) for n in lead)
        lava_weight_bits(program.target_spec)  # fail before any network is built
        if any(_lava_kind(la).stock_lif for la in program.layers):
            check_stock_lif(program.target_spec)
        if program is self.program and lead == self.lead:
            for net in self.nets.values():
                net.dirty = True
            return
        self.close()
        self.program, self.lead = program, lead

    def segment(self, layers: list[QChipLayer], inputs: dict[str, np.ndarray], call: int
                ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        outputs, payloads = {}, {}
        for la in layers:
            outputs[la.output], payloads[la.name] = self._call(la, np.asarray(inputs[la.input]), call)
        return outputs, payloads

    def saturations(self) -> dict[str, int]:
        """Per layer, as ReferenceChip counts them (bispike: |u| beyond the state; gif: negative charges). Stock LIF
        counts nothing (its u wraps and v saturates silently, as in the reference): 0."""
        out = {}
        for la in self.program.layers if self.program is not None else ():
            net = self.nets.get(la.name)
            out[la.name] = 0 if net is None or net.dirty else _lava_kind(la).saturations(net)
        return out

    def close(self) -> None:
        """Stop every runtime (each holds one OS process per Lava Process); errors from one do not keep the others
        running."""
        nets, self.nets = self.nets, {}
        errors = []
        for net in nets.values():
            try:
                net.source.stop()
            except Exception as exc:  # report after stopping the rest
                errors.append(exc)
        if errors:
            raise errors[0]

    # --- one layer
    def _call(self, la: QChipLayer, x: np.ndarray, call: int) -> tuple[np.ndarray, np.ndarray]:
        """(Chained layers: the runtime hands the source network's accumulators over, plus the bias; on the chip
        the source's synapses would land on these neurons directly — the integers are the same.)"""
        from ..hybrid.chip import chained_input

        x = chained_input(la, x)
        if x.shape != (*self.lead, la.width):
            raise ValueError(f"layer {la.name!r}: input shape {x.shape}, built for {(*self.lead, la.width)}")
        flat = x.reshape(-1).astype(np.int64)
        if np.abs(flat).max(initial=0) > np.iinfo(np.int32).max:
            raise ValueError(f"layer {la.name!r}: input beyond int32, the width of Lava's ports here")
        flat = _lava_kind(la).host_input(la, flat).astype(np.int32)
        net = self.nets.get(la.name)
        if net is None:
            net = self.nets[la.name] = self._build(la, flat, call)
        else:
            net.source.x.set(flat)
            self._prepare(net, call)
        net.source.run(condition=self._lava["RunSteps"](num_steps=net.steps), run_cfg=self._cfg)
        net.next_call = call + 1
        return self._read(net)

    def _prepare(self, net: _LayerNet, call: int) -> None:
        """Clear state left by a finished sequence and align the bi-spike's step index with the executor's call."""
        kind = _lava_kind(net.layer)
        if net.dirty:
            kind.clear(net)
            net.dirty = False
        kind.align(net, call)

    def _build(self, la: QChipLayer, x0: np.ndarray, call: int) -> _LayerNet:
        self._load()
        lv = self._lava
        positions = prod(self.lead)
        n = positions * la.width
        steps = call_steps(la)
        source = lv["ChipInput"](x=x0, steps=steps, name=f"{la.name}:in")
        neuron, log = _lava_kind(la).build(lv, la, source, n, steps, call, self.program.target_spec)
        if neuron is not source:
            source.s_out.connect(neuron.a_in)
        net = _LayerNet(layer=la, lead=self.lead, source=source, neuron=neuron, log=log)
        if la.projection is not None:
            p = la.projection
            axons = neuron.s_out
            if p.encoding != "graded":  # binary planes: an encoder stage, then one Sparse per plane weight
                encoder = lv["PlaneEncoder"](size=n, encoding=p.encoding, max_level=la.max_level,
                                             name=f"{p.name}:axons")
                neuron.s_out.connect(encoder.a_in)
                axons = encoder.s_out
            target = self.program.target_spec
            net.synapses = tuple(lv["Sparse"](weights=lw, num_message_bits=p.message_bits, weight_exp=lexp,
                                              num_weight_bits=bits, name=f"{p.name}:{exp}")
                                 for w, exp in projection_matrices(la, positions)
                                 for lw, lexp, bits in (lava_weights(w, exp, target),))
            for syn in net.synapses:
                axons.connect(syn.s_in)
            if steps > 1:
                net.dendrite = lv["DendriteSum"](size=positions * p.n_groups * p.size, steps=steps,
                                                 name=f"{p.name}:acc")
                for syn in net.synapses:  # several a_out into one port add up
                    syn.a_out.connect(net.dendrite.a_in)
        source.create_runtime(run_cfg=self._cfg)
        return net

    def _read(self, net: _LayerNet) -> tuple[np.ndarray, np.ndarray]:
        """(output for the host, payloads int64 [steps, *lead, width]) of the call just run."""
        la = net.layer
        rows = net.log.log if net.log is not None else net.neuron.payload
        payloads = _ints(rows.get()).reshape(net.steps, *net.lead, la.width)
        if la.projection is None:
            return kind_of(la).output(payloads), payloads
        acc = sum(_ints(syn.a_buff.get()) for syn in net.synapses)
        if net.dendrite is not None:
            acc = acc + _ints(net.dendrite.acc.get())
        return acc.reshape(*net.lead, la.projection.n_groups, la.projection.size), payloads


# ------------------------------------------------------------------------------------------ one class per kind
class _LavaKind:
    """How one chip kind (compiler/kinds/) runs as Lava processes; the defaults fit our ProcessModels
    (runtime/lava/procs/chip_*.py), which count saturations in a `saturations` Var."""

    stock_lif = False  # runs on Lava's stock LIF: the target's widths must be Lava's (`check_stock_lif`)

    def build(self, lv: dict[str, Any], la: QChipLayer, source: Any, n: int, steps: int, call: int,
              target: Target) -> tuple[Any, Any]:
        """(neuron process, StepLog or None) of a layer of n neurons, connected to nothing yet."""
        raise NotImplementedError(f"layer {la.name!r}: no Lava model for chip kind {la.kind!r}")

    def host_input(self, la: QChipLayer, flat: np.ndarray) -> np.ndarray:
        """The flat int64 input as the host hands it over."""
        return flat

    def clear(self, net: _LayerNet) -> None:
        """Clear the state a finished sequence left."""
        net.neuron.saturations.set(np.zeros(1, np.int32))

    def align(self, net: _LayerNet, call: int) -> None:
        """Align a call-indexed neuron with the executor's call before running it."""

    def saturations(self, net: _LayerNet) -> int:
        return int(net.neuron.saturations.get()[0])


class _LavaLIF(_LavaKind):
    """Lava's stock fixed_pt LIF; it keeps no spike history, so a StepLog records the payloads. It counts no
    saturations (u wraps and v saturates silently, as in the reference)."""

    stock_lif = True

    def build(self, lv, la, source, n, steps, call, target):
        neuron = lv["LIF"](shape=(n,), du=la.du, dv=la.dv, vth=la.vth, bias_mant=0, bias_exp=0, name=la.name)
        log = lv["StepLog"](size=n, steps=steps, name=f"{la.name}:log")
        neuron.s_out.connect(log.a_in)
        return neuron, log

    def clear(self, net):
        zeros = np.zeros(prod(net.lead) * net.layer.width, np.int32)
        net.neuron.u.set(zeros)
        net.neuron.v.set(zeros)

    def saturations(self, net):
        return 0


class _LavaBiSpike(_LavaKind):
    def build(self, lv, la, source, n, steps, call, target):
        return lv["ChipBiSpike"](size=n, thresholds=la.thresholds, carry=la.carry, carry_shift=la.carry_shift,
                                 levels=la.levels, amplitude=la.amplitude, period=la.period,
                                 state_max=target.state_max, first_call=call, name=la.name), None

    def align(self, net, call):
        if call != net.next_call:  # the step index is call mod T
            net.neuron.call.set(np.array([call], np.int32))


class _LavaGIF(_LavaKind):
    def build(self, lv, la, source, n, steps, call, target):
        return lv["ChipGIF"](size=n, steps=steps, levels=la.levels, name=la.name), None


class _LavaRelay(_LavaKind):
    """Host-injected graded events straight into the synapses: the source is the neuron, the log the trace."""

    def build(self, lv, la, source, n, steps, call, target):
        log = lv["StepLog"](size=n, steps=steps, name=f"{la.name}:log")
        source.s_out.connect(log.a_in)
        return source, log

    def host_input(self, la, flat):
        return np.clip(flat, -la.levels, la.levels)  # never more than the compiled bound (as the reference)

    def clear(self, net):
        pass  # no state

    def saturations(self, net):
        return 0


LAVA_KINDS: dict[str, _LavaKind] = {"lif": _LavaLIF(), "bispike": _LavaBiSpike(), "gif": _LavaGIF(),
                                    "relay": _LavaRelay()}


def _lava_kind(la: QChipLayer) -> _LavaKind:
    return LAVA_KINDS.get(la.kind, _LavaKind())  # an unknown kind fails in `build`, naming the layer


def _ints(a: np.ndarray) -> np.ndarray:
    """Var.get returns float64 (Lava's transport); values are integers below 2^31, so the cast is exact."""
    a = np.asarray(a)
    out = np.rint(a).astype(np.int64)
    if not np.array_equal(out, a):
        raise AssertionError("Lava returned a non-integer value from a fixed_pt Var")
    return out
