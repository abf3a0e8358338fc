"""Runs a hybrid program (compiler/hybrid/ir.py) call by call: host stages in onnxruntime, chip segments on a
chip backend (numpy reference, torch or Lava), with explicit state.

The family's time axis decides what a call is (`run`): SpikeGPT streams one token per call and keeps every
state (LIF membranes, WKV, token shift) across tokens; SpikeLM runs T calls over the whole sequence and averages
the logits (its bi-spike membranes live for those T calls); SpikeLLM runs the whole sequence in one call (GIF
charges live for one call). The trace records every chip layer's payloads per call and step: the event stream
the simulator counts and the object that `verify` compares across backends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from spikestack.compiler.hybrid.ir import HybridProgram, QChipLayer
from spikestack.compiler.targets import Target

from ..host import _session
from ..trace import layer_events, layer_firing_rates
from .chip import LayerState, chip_call


class ChipBackend(Protocol):
    """`segment` returns (outputs by tensor name, payloads by layer name): arrays the executor keeps as they are
    when they already have its dtypes (int32 host tensors, int16 payloads), so never written afterwards."""

    name: str

    def reset(self, program: HybridProgram, lead: tuple[int, ...]) -> None: ...

    def segment(self, layers: list[QChipLayer], inputs: dict[str, np.ndarray], call: int
                ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]: ...

    def close(self) -> None: ...


class ReferenceChip:
    """The numpy definition (`chip.py`), one state per layer."""

    name = "reference"

    def __init__(self, lean: bool = False) -> None:
        """`lean`: big projections stay int16 between calls (chip.py `group_blocks`): for a few calls at most."""
        self.states: dict[str, LayerState] = {}
        self.target: Target | None = None
        self.lean = lean

    def reset(self, program: HybridProgram, lead: tuple[int, ...]) -> None:
        self.states = {la.name: LayerState(lean=self.lean) for la in program.layers}
        self.target = program.target_spec

    def segment(self, layers, inputs, call):
        outputs, payloads = {}, {}
        for la in layers:
            outputs[la.output], payloads[la.name] = chip_call(la, inputs[la.input], self.states[la.name], call,
                                                              self.target, narrow=True)  # int32, as env keeps
        return outputs, payloads

    def saturations(self) -> dict[str, int]:
        return {n: s.saturations for n, s in self.states.items()}

    def close(self) -> None:
        pass


@dataclass
class HybridTrace:
    """payloads[layer]: int [calls, steps, *lead, width]; logits float [B, L, vocab]."""

    logits: np.ndarray
    payloads: dict[str, np.ndarray] = field(default_factory=dict)
    host_tensors: dict[str, np.ndarray] = field(default_factory=dict)  # last call's chip → host tensors
    saturations: dict[str, int] = field(default_factory=dict)
    calls: int = 0

    def layers(self) -> dict[str, np.ndarray]:
        return self.payloads

    def events(self) -> int:
        return layer_events(self.payloads)

    def firing_rate(self) -> dict[str, float]:
        """Fraction of (call, step, position, neuron) slots with a non-zero payload, per chip layer."""
        return layer_firing_rates(self.payloads)


def check_ids(program: HybridProgram, ids: np.ndarray) -> np.ndarray:
    ids = np.asarray(ids, np.int64)
    if program.input_window and (ids.ndim != 2 or ids.shape[1] != program.input_window):
        raise ValueError(f"inputs must be token windows [tokens, {program.input_window}] ids, got shape {ids.shape}")
    if ids.ndim != 2 or ids.shape[1] < 1:
        raise ValueError(f"inputs must be token ids [sequences, positions], got shape {ids.shape}")
    if program.vocab_size and (ids.min() < 0 or ids.max() >= program.vocab_size):
        raise ValueError(f"token ids must be in [0, {program.vocab_size})")
    if program.time_axis != "tokens" and program.max_positions and ids.shape[1] > program.max_positions:
        raise ValueError(f"{ids.shape[1]} positions exceed the model's context of {program.max_positions}")
    return ids


def waves(layers: list[QChipLayer]) -> list[list[QChipLayer]]:
    """A segment's layers in dependency order: host-fed layers first, then each chained layer after its source."""
    out, done, pending = [], set(), list(layers)
    while pending:
        wave = [la for la in pending if la.source is None or la.source in done]
        if not wave:
            raise ValueError(f"chip layer {pending[0].name!r}: its source {pending[0].source!r} is not in the segment")
        out.append(wave)
        done |= {la.name for la in wave}
        pending = [la for la in pending if la not in wave]
    return out


def _runner(session) -> Callable[[list[str], dict[str, np.ndarray]], list[np.ndarray]]:
    """`session.run` through onnxruntime's own binding where the session has one: the public `run` first checks
    the feed's names against the model's inputs (Python property calls per input), about 20 µs of a 50-300 µs
    stage call, and the executor builds its feeds from the stage's declared inputs anyway (SpikeGPT makes 10
    stage calls per token; measured in bench/runtime_speed.py). The same call and outputs otherwise."""
    binding = getattr(session, "_sess", None)
    if binding is None:
        return session.run

    def run(names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            return binding.run(names, feeds, None)
        except TypeError:  # a private signature another onnxruntime changed: the public call, which also words
            return session.run(names, feeds)  # any error about the feeds as onnxruntime does

    return run


class HostRunner:
    """The host stages in onnxruntime, with what every call reuses built once: the sessions (cached across runs by
    `host._session`), each stage's output names and the chip layers of the segment after it."""

    def __init__(self, program: HybridProgram, decode: bool = False) -> None:
        """`decode`: the KV-cache program (`HybridProgram.decode_stages`), one new position per call."""
        self.program = program
        self.stages = program.decode_stages if decode else program.stages
        self.states = program.decode_states if decode else program.states
        self.sessions = [_session(stage.onnx) for stage in self.stages]
        self.runs = [_runner(sess) for sess in self.sessions]
        self.output_names = [list(stage.outputs) for stage in self.stages]
        self.segment_waves = [waves(program.segment_layers(k)) for k in range(len(self.stages))]

    def initial_states(self, lead: tuple[int, ...]) -> dict[str, np.ndarray]:
        return {s.name: np.full((*lead, *s.shape), s.init, np.float32) for s in self.states}

    def stage(self, k: int, env: dict[str, np.ndarray]) -> None:
        stage = self.stages[k]
        feeds = {n: env[n] for n in stage.inputs}
        for name, value in zip(stage.outputs, self.runs[k](self.output_names[k], feeds), strict=True):
            env[name] = value


Observer = Callable[[QChipLayer, dict[str, np.ndarray]], None]


def run_call(program: HybridProgram, host: HostRunner, chip: ChipBackend, env: dict[str, np.ndarray], call: int,
             record: dict[str, list[np.ndarray]], observer: Observer | None = None) -> np.ndarray:
    """One call of the graph: stage 0, segment 0, …, last stage; returns logits and rolls the states.
    `observer(layer, env)` sees every chip layer's output as soon as its segment ran (calibration reports)."""
    for k in range(len(host.stages)):
        host.stage(k, env)
        for layers in host.segment_waves[k]:  # chained layers run after their sources, on their accumulators
            outputs, payloads = chip.segment(layers, {la.input: env[la.input] for la in layers}, call)
            for la in layers:
                env[la.output] = np.asarray(outputs[la.output]).astype(np.int32, copy=False)  # fresh arrays
                # int16 payloads (the reference's bi-spike layers) are kept as they are: fresh arrays per call
                record.setdefault(la.name, []).append(payloads[la.name].astype(np.int16, copy=False))
                if observer is not None:
                    observer(la, env)
    for s in host.states:
        if f"{s.name}:next" in env:
            env[s.name] = env.pop(f"{s.name}:next")
    return env[program.output_name].astype(np.float64)


class _Discard(dict):
    """A record that keeps nothing: every layer's list is a fresh throwaway."""

    def setdefault(self, key, default=None):  # noqa: ARG002 - the dict protocol's signature
        return []


class Session:
    """A running program: host sessions, chip backend and states; `forward(ids)` for the family's time axis."""

    def __init__(self, program: HybridProgram, chip: ChipBackend | None = None, batch: int = 1,
                 observer: Observer | None = None, keep_trace: bool = True) -> None:
        """`keep_trace=False` (generation): no payload record, which would grow with every call."""
        self.program, self.chip, self.host = program, chip or ReferenceChip(), HostRunner(program)
        self.observer = observer
        self.record: dict[str, list[np.ndarray]] = {} if keep_trace else _Discard()
        self.env: dict[str, np.ndarray] = {}
        self.tokens_seen = 0
        self.batch = batch
        self.decoder: HostRunner | None = None
        self.step_caches: list[dict[str, np.ndarray]] = []
        if program.time_axis == "tokens":
            self._reset((batch,))

    def _reset(self, lead: tuple[int, ...]) -> None:
        self.chip.reset(self.program, lead)
        self.env = self.host.initial_states(lead)

    def step_token(self, ids: np.ndarray) -> np.ndarray:
        """SpikeGPT: one token per sequence [B] → logits [B, vocab]; every state carries on."""
        self.env[self.program.input_name] = np.asarray(ids, np.int64).reshape(-1, 1)
        out = run_call(self.program, self.host, self.chip, self.env, self.tokens_seen, self.record, self.observer)
        self.tokens_seen += 1
        return out

    def sequence(self, ids: np.ndarray) -> np.ndarray:
        """SpikeLM and SpikeLLM: the whole sequence [B, L] from fresh states → logits [B, L, vocab] (SpikeLM: the
        mean of its T calls' logits, or the last call's for a `last_step` readout)."""
        self._reset(ids.shape)
        self.env[self.program.input_name] = ids if self.program.input_window else ids[..., None]
        calls = self.program.steps_per_token if self.program.time_axis == "steps" else 1
        outputs = [run_call(self.program, self.host, self.chip, self.env, t, self.record, self.observer)
                   for t in range(calls)]
        if self.program.readout == "last_step":  # the graph averaged the hidden state itself (ir.py `readout`)
            return outputs[-1]
        return sum(outputs) / calls

    def decode_token(self, ids: np.ndarray) -> np.ndarray:
        """Whole-sequence models with a KV-cache program: one new position per sequence [B] → its logits
        [B, vocab]. The first call starts empty caches; each call appends the position's keys and values."""
        if not self.program.decode_stages:
            raise ValueError("this program has no KV-cache (decode) host program")
        ids = np.asarray(ids, np.int64).reshape(-1, 1, 1)
        calls = self.program.steps_per_token if self.program.time_axis == "steps" else 1
        names = [s.name for s in self.program.decode_states]
        if self.decoder is None:
            self.decoder = HostRunner(self.program, decode=True)
            self.chip.reset(self.program, ids.shape[:2])
            self.env = self.decoder.initial_states((ids.shape[0],))
            # SpikeLM: step t of the new position attends to step t of the earlier ones: one cache per step
            self.step_caches = [{n: self.env[n] for n in names} for _ in range(calls)]
        if self.program.max_positions and self.tokens_seen >= self.program.max_positions:
            raise ValueError(f"the KV cache is full: the model's context is {self.program.max_positions} positions")
        total = None
        for t in range(calls):
            self.env.update(self.step_caches[t])
            self.env[self.program.input_name] = ids
            out = run_call(self.program, self.decoder, self.chip, self.env, t, self.record, self.observer)
            total = out if total is None else total + out
            self.step_caches[t] = {n: self.env[n] for n in names}
        self.tokens_seen += 1
        return (total / calls)[:, -1]

    def forward(self, ids: np.ndarray) -> np.ndarray:
        ids = check_ids(self.program, ids)
        if self.program.time_axis == "tokens":
            return np.stack([self.step_token(ids[:, t]) for t in range(ids.shape[1])], axis=1)
        return np.asarray(self.sequence(ids))

    def trace(self, logits: np.ndarray) -> HybridTrace:
        chip_out = {la.output: self.env[la.output] for la in self.program.layers if la.output in self.env}
        sats = self.chip.saturations() if hasattr(self.chip, "saturations") else {}
        payloads = {name: np.stack(v) for name, v in self.record.items()}
        return HybridTrace(logits=logits, payloads=payloads, host_tensors=chip_out, saturations=sats,
                           calls=len(next(iter(self.record.values()), [])))

    def close(self) -> None:
        self.chip.close()


def run(program: HybridProgram, ids: np.ndarray, chip: ChipBackend | None = None) -> HybridTrace:
    """Token ids [B, L] → logits [B, L, vocab] and the chip trace, on `chip` (default: the numpy reference)."""
    ids = check_ids(program, ids)
    session = Session(program, chip, batch=ids.shape[0])
    try:
        return session.trace(session.forward(ids))
    finally:
        session.close()
