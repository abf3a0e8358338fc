"""The compiler's own typed IR: NIR is read once at the border (`from_nir`), everything inside is these nodes.

Two stages, each with its node types and a verifier (`compiler/verify.py`):

* float stage (`FloatGraph`): what the trained model says, real-valued; `fold_amplitudes` edits it.
* integer stage (`Program`): what the cores execute, integers only, plus a few host-side floats (the embedding
  unit, the readout unit and bias) that never enter the fixed-point path. `partition` and `place` fill in its
  cores. `Program` is also the artifact's content (`compiler/artifact.py` owns the file format).

Nodes are frozen, keyword-only dataclasses with read-only numpy payloads; passes build new ones with
`dataclasses.replace`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .targets import Target


def frozen_array(a: np.ndarray, dtype: type | np.dtype | None = None) -> np.ndarray:
    """A read-only copy so that no pass can edit another stage's payload in place."""
    out = np.array(a, dtype=dtype, copy=True)
    out.setflags(write=False)
    return out


def frozen_new(a: np.ndarray) -> np.ndarray:
    """`frozen_array` without the copy, for an array the caller has just made and holds the only reference to
    (a lowering's fresh mantissas): read-only in place. The 216M fold's copy was 0.83 GB (bench/compile_published)."""
    if a.base is not None or not a.flags.owndata:
        return frozen_array(a)
    a.setflags(write=False)
    return a


# ----------------------------------------------------------------------------------------------- float stage
@dataclass(frozen=True, slots=True, kw_only=True)
class HostEmbedding:
    """Token ids → concatenated embedding rows, on the host; feeds the first population every step."""

    name: str
    table: np.ndarray  # float [V, D]
    context: int  # ids per token position; the population sees context * D values

    @property
    def size(self) -> int:
        return self.context * int(self.table.shape[1])


@dataclass(frozen=True, slots=True, kw_only=True)
class SpikingPop:
    """Elastic bi-spiking neurons (REFERENCE.md §1.1), levels -K..K, one α per step."""

    name: str
    size: int
    alpha: np.ndarray  # float [T]
    levels: int
    reset_scale: float
    alpha_ref: float | None = None  # set by fold_amplitudes: the α folded into outgoing weights


@dataclass(frozen=True, slots=True, kw_only=True)
class HostSpikeInput:
    """Binary input events written by the host every step (foreign NIR graphs: Input → Affine → LIF …)."""

    name: str
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LIFPop:
    """NIR's LIF, CubaLIF and IF in one form (REFERENCE.md §4.1), spike when v > v_threshold, reset to v_reset:

        CubaLIF:   τ_syn dI/dt = -I + w_in·S;  τ_mem dv/dt = (v_leak - v) + R·I
        LIF:       no synaptic state (I = S, tau_syn = 0, w_in = 1)
        IF:        dv/dt = R·I (no leak: tau = inf, leak-free input gain 1 instead of 1/τ)
        LI:        a LIF that never spikes (v_threshold = inf); its output is v (a readout)
        Threshold: stateless z = [I > threshold] (v keeps nothing between steps)

    Discretised by forward Euler with step dt (the backend's choice in NIR; `compile_graph(dt=...)`)."""

    name: str
    kind: str  # "LIF", "CubaLIF", "IF", "LI" or "Threshold": the NIR node type
    size: int
    tau: np.ndarray  # [n], seconds; inf for IF
    r: np.ndarray  # [n]
    v_leak: np.ndarray  # [n]
    v_threshold: np.ndarray  # [n]
    v_reset: np.ndarray  # [n]
    tau_syn: np.ndarray  # [n], seconds; 0 = no synaptic current state
    w_in: np.ndarray  # [n]
    dt: float | None = None  # the node's own Euler step (NIR node metadata "dt"), seconds; None: the graph's dt


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadoutPop:
    """Non-spiking accumulators: sum of input over a token's T steps; the host divides by T and adds the bias."""

    name: str
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class FloatProjection:
    name: str
    src: str
    dst: str
    weight: np.ndarray  # float [n_dst, n_src]
    bias: np.ndarray  # float [n_dst]
    delay: np.ndarray | None = None  # int [n_dst, n_src]: extra steps from NIR Delay nodes (delayed timing only)


@dataclass(frozen=True, slots=True, kw_only=True)
class FloatGraph:
    """`timing`: "token" = T steps per token, layers see the same step (bi-spike nets; Lava runs them pipelined);
    "delayed" = a sample of `steps` steps in which every projection delays by one step (Loihi's and Lava's Dense
    semantics; used for foreign LIF graphs, which run on Lava's stock LIF)."""

    host_input: HostEmbedding | HostSpikeInput
    input_pop: str | None  # the population the host writes currents into (None: the host sends events)
    populations: tuple[SpikingPop | LIFPop | ReadoutPop, ...]  # topological order
    projections: tuple[FloatProjection, ...]
    steps: int  # T steps per token, or steps per sample
    timing: str = "token"
    dt: float = 1.0  # Euler step for LIF populations, seconds

    def pop(self, name: str) -> SpikingPop | LIFPop | ReadoutPop:
        return next(p for p in self.populations if p.name == name)


# --------------------------------------------------------------------------------------------- integer stage
@dataclass(frozen=True, slots=True, kw_only=True)
class QSpikingPop:
    """Integer bi-spike neurons; the step is defined once in `spikestack.runtime.neurons.bispike_step`.

    thresholds[t, k-1] = θ_{t,k} > 0: level k is reached when u > θ_{t,k} (and -k when u < -θ_{t,k}).
    carry[t, s + K]: membrane factor after emitting level s at step t, in units of 2^-carry_shift.
    amplitude[t]: the graded payload of a level-1 spike at step t (payload = s · amplitude[t]).
    """

    name: str
    size: int
    levels: int
    thresholds: np.ndarray  # int64 [T, K]
    carry: np.ndarray  # int64 [T, 2K+1]
    carry_shift: int
    amplitude: np.ndarray  # int64 [T]
    bias: np.ndarray  # int64 [n], added to the input every step
    state_unit: float  # real value of one state LSB (a power of two), for reports and the fake-quant model
    amplitude_unit: float  # 2^-p: one payload LSB in the folded frame (real spike = payload · unit · α_ref)


@dataclass(frozen=True, slots=True, kw_only=True)
class QLIFPop:
    """Lava's fixed_pt CUBA-LIF (`lava/proc/lif/models.py`, REFERENCE.md §5.4), the step in
    `spikestack.runtime.neurons.lif_step`; binary spikes out."""

    name: str
    size: int
    du: int  # current decay in the target's decay_bits (Lava 12); 2^bits − 1 makes u this step's input (NIR LIF)
    dv: int  # voltage decay, round(dt/τ · 2^decay_bits)
    vth: int  # threshold mantissa; effective threshold vth << activation_shift (Lava: 17 bits, << 6)
    bias_mant: np.ndarray  # int32 [n], 13-bit signed
    bias_exp: np.ndarray  # int32 [n], 0..7
    state_unit: float  # real value of one v LSB
    neuron: str = "LIF"  # the NIR node kind; "LI" never spikes and the program's output is its final v


@dataclass(frozen=True, slots=True, kw_only=True)
class QSpikeInput:
    name: str
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class QReadoutPop:
    name: str
    size: int
    state_unit: float  # real value of one accumulator LSB
    host_bias: np.ndarray  # float [n]: logits = acc * state_unit / T + host_bias (host side)


@dataclass(frozen=True, slots=True, kw_only=True)
class QProjection:
    """Dense synapses; weight holds Lava-exact mantissas (even, |w| <= 254, so Lava's truncation is a no-op)."""

    name: str
    src: str
    dst: str
    weight: np.ndarray  # int16 [n_dst, n_src]
    weight_exp: int  # Lava Dense weight_exp (we keep 0 and fold the exponent into the destination's unit)
    message_bits: int  # graded payload width; 0 for binary events
    encoding: str = "graded"  # compiler/encodings.py: graded, unary or bitserial (binary sources: graded, 0 bits)
    delay: np.ndarray | None = None  # int [n_dst, n_src] extra steps (Lava DelayDense), delayed timing only
    gain: np.ndarray | None = None  # int64 [T]: per-step input gain at the destination (binary encodings)


@dataclass(frozen=True, slots=True, kw_only=True)
class QHostInput:
    name: str
    table: np.ndarray  # int32 [V, D]: embedding rows already in the input population's state units
    context: int
    unit: float  # real value of one LSB

    @property
    def size(self) -> int:
        return self.context * int(self.table.shape[1])


@dataclass(frozen=True, slots=True, kw_only=True)
class Core:
    """A slice [lo, hi) of one population on one core at mesh position (chip, x, y), slot within the tile.

    [in_lo, in_hi) is the input chunk whose synapses the core holds (`compiler/passes/partition.py` splits a
    host-read fan-in over the input axons per core): indices into the population's concatenated inputs, its
    accumulators partial sums the host adds up. The default in_hi = -1 means all inputs (every unsplit core)."""

    index: int
    pop: str
    lo: int
    hi: int
    synaptic_memory_bits: int
    axons_in: int
    chip: int = -1
    x: int = -1
    y: int = -1
    slot: int = -1
    in_lo: int = 0
    in_hi: int = -1

    @property
    def split(self) -> bool:
        """The core holds one input chunk, not every input."""
        return self.in_hi >= 0

    def inputs(self, n_inputs: int) -> tuple[int, int]:
        """The core's input range [lo, hi) among a population's `n_inputs` concatenated inputs."""
        return (self.in_lo, self.in_hi) if self.in_hi >= 0 else (0, n_inputs)


@dataclass(frozen=True, slots=True, kw_only=True)
class HostProgram:
    """One host stage as a serialised ONNX model (see `compiler/passes/cut_host.py`)."""

    name: str  # "encode" (ids → input currents) or "decode" (readout → logits)
    onnx: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Program:
    target: str  # the target's name (reports, messages)
    target_spec: Target  # the whole target compiled for: its widths and shifts define the integer semantics
    steps: int
    host_input: QHostInput | QSpikeInput
    input_pop: str | None
    populations: tuple[QSpikingPop | QLIFPop | QReadoutPop, ...]
    projections: tuple[QProjection, ...]
    cores: tuple[Core, ...] = ()
    host_programs: tuple[HostProgram, ...] = ()
    report: dict = field(default_factory=dict)  # quantisation error summary, encodings, host traffic
    timing: str = "token"  # see FloatGraph

    def pop(self, name: str) -> QSpikingPop | QLIFPop | QReadoutPop:
        return next(p for p in self.populations if p.name == name)

    @property
    def family(self) -> str:
        """What every report names the program by (a hybrid program carries its family from its graph): the bi-spike
        spine for token timing, a foreign LIF network for delayed timing."""
        return "bispike-mlp" if self.timing == "token" else "nir-lif"

    def host_program(self, name: str) -> bytes:
        return next(h.onnx for h in self.host_programs if h.name == name)

    def incoming(self, pop: str) -> QProjection | None:
        return next((p for p in self.projections if p.dst == pop), None)

    @property
    def state_bits(self) -> int:
        return self.target_spec.state_bits

    @property
    def state_max(self) -> int:
        return self.target_spec.state_max
