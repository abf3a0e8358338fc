"""Host stages of a hybrid program as torch modules, exported to ONNX (one model per stage).

Why torch → ONNX and not hand-written ONNX: every NIR node already has a torch module whose float operation order
is tested against the exporting model (`models/nir/torch_modules.py`); tracing those modules gives ONNX graphs
with the same math, so the host program matches the float model by construction (tested in float32).

A stage computes, in order: the dequantization of the chip outputs it receives, its host NIR nodes in topological
order, the next values of the states whose inputs it completes (`Delay`, WKV, StepMean's sum and count), and the
quantized inputs of the chip layers that run after it. Its inputs and outputs are env tensors by name
(compiler/hybrid/ir.py).

What a neuron kind does on the host (its quantizer, its dequantizer, the modules they need) is that kind's
`host_*` hooks (compiler/kinds/base.py `ChipKind`); this module only walks the stage and calls them.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import nir
import numpy as np
import torch
from spikestack.models.nir.ops import WKV, Attention, PositionEmbedding, RoPE, StepMean
from spikestack.models.nir.torch_modules import NODE_MAP, WKV_P0
from torch import Tensor, nn

from spikestack.errors import CompileError

from ..kinds import kind_of
from ..targets import Target
from .cut import CutPlan
from .host_ops import host_module
from .ir import QChipLayer, StateSpec

OPSET = 17  # LayerNormalization needs 17 (onnx operator docs)


def state_name(node: str, part: str = "") -> str:
    return f"state:{node}" + (f":{part}" if part else "")


def next_name(state: str) -> str:
    return f"{state}:next"


class StageModule(nn.Module):
    """forward(*inputs) → outputs, all env tensors by name (`self.inputs`, `self.outputs`)."""

    def __init__(self, plan: CutPlan, stage: int, layers: list[QChipLayer], positions: int,
                 decode: bool = False, *, target: Target) -> None:
        super().__init__()
        self.plan, self.stage = plan, stage
        self.target = target
        g = plan.graph
        self.recv = [la for la in layers if la.segment == stage - 1]
        self.send = [la for la in layers if la.segment == stage]
        self.nodes = [n for n in plan.order if plan.level[n] == stage]
        self.delays = [d for d, s in plan.delays.items() if s == stage]
        self.layer_inputs = {pl.neuron: pl.inputs for pl in plan.layers}
        self.chip_only = {la.source for la in layers if la.source is not None}
        self.decode = decode
        # decode: each RoPE rotates at the position its attention's key cache has reached
        self.rope_cache = {o: state_name(a, "k") for a in plan.order if isinstance(g.nodes[a], Attention)
                           for o in g.nodes[a].operands.split(",") if isinstance(g.nodes[o], RoPE)} if decode else {}
        first_attention = next((a for a in plan.order if isinstance(g.nodes[a], Attention)), None)
        if decode:  # absolute position tables add the row of the cache's length
            self.rope_cache.update({n: state_name(first_attention, "k") for n in plan.order
                                    if isinstance(g.nodes[n], PositionEmbedding)})
        self.mods = nn.ModuleDict({_key(n): host_module(g.nodes[n], positions, decode) for n in self.nodes
                                   if type(g.nodes[n]) in NODE_MAP})
        missing = [n for n in self.nodes if type(g.nodes[n]) not in NODE_MAP]
        if missing:
            raise CompileError(f"node {missing[0]!r}: type {type(g.nodes[missing[0]]).__name__} has no host "
                               "implementation")
        self.folds = nn.ModuleDict()
        self.fold_of = {pl.neuron: pl.fold for pl in plan.layers if pl.fold is not None}
        self.encoders = nn.ModuleDict()
        for la in self.send:  # each kind registers its own host lowering (compiler/kinds: host_setup)
            kind_of(la).host_setup(self, la, sends=True)
        for la in self.recv:
            kind_of(la).host_setup(self, la, sends=False)
        self.inputs: list[str] = []
        self.outputs: list[str] = []

    def value(self, name: str, env: dict[str, Tensor]) -> Tensor:
        """A node's value; a Delay's value is its state (last call's input)."""
        return env[state_name(name)] if name in self.plan.delays else env[name]

    def summed(self, names: list[str] | tuple[str, ...], env: dict[str, Tensor]) -> Tensor:
        """The sum of the named values, in order (the float model's order: NIR edges into one node add)."""
        total = self.value(names[0], env)
        for n in names[1:]:
            total = total + self.value(n, env)
        return total

    def compute(self, env: dict[str, Tensor]) -> None:
        g = self.plan.graph
        for la in self.recv:
            if la.name in self.chip_only:
                continue  # its accumulators feed a chained layer on the chip, not the host
            kind_of(la).host_receive(self, la, env)
        for name in self.nodes:
            node, preds = g.nodes[name], self.plan.preds[name]
            module = self.mods[_key(name)]
            if isinstance(node, WKV):
                k, v = (self.value(o, env) for o in node.operands.split(","))
                state = tuple(env[state_name(name, part)] for part in "abp")
                env[name], new = module(k, v, state=state)
                for part, value in zip("abp", new, strict=True):
                    env[next_name(state_name(name, part))] = value
            elif isinstance(node, StepMean):  # the running mean over the token's calls (ops.py)
                total = env[state_name(name, "sum")] + self.summed(preds, env)
                count = env[state_name(name, "count")] + 1.0
                env[name] = total / count
                env[next_name(state_name(name, "sum"))], env[next_name(state_name(name, "count"))] = total, count
            elif self.decode and isinstance(node, Attention):
                caches = (env[state_name(name, "k")], env[state_name(name, "v")])
                env[name], k_all, v_all = module(*(self.value(o, env) for o in module.operands), *caches)
                env[next_name(state_name(name, "k"))], env[next_name(state_name(name, "v"))] = k_all, v_all
            elif name in self.rope_cache:
                env[name] = module(self.summed(preds, env), env[self.rope_cache[name]].shape[-2])
            elif getattr(module, "operands", None) is not None:
                env[name] = module(*(self.value(o, env) for o in module.operands))
            elif getattr(module, "multiplies", False):
                env[name] = module(*(self.value(p, env) for p in preds))
            elif isinstance(node, nir.Input | nir.Output):
                env[name] = self.summed(preds, env)
            else:
                env[name] = module(self.summed(preds, env))
        for d in self.delays:
            env[next_name(state_name(d))] = self.summed(self.plan.preds[d], env)
        for la in self.send:
            if la.source is None:  # chained layers take their input on the chip
                kind_of(la).host_quantize(self, la, env)
        if self.stage == self.plan.stages - 1:
            env["logits"] = self.summed(self.plan.preds[self.plan.output_name], env)

    def forward(self, *args: Tensor) -> tuple[Tensor, ...]:
        env = dict(zip(self.inputs, args, strict=True))
        self.compute(env)
        return tuple(env[o] for o in self.outputs)


def _key(name: str) -> str:
    return name.replace(".", "\u00b7")


def decode_supported(plan: CutPlan) -> bool:
    """A KV-cache decode program exists for graphs over the whole sequence with causal attention (SpikeLLM; SpikeLM's
    decoder, whose T step calls each keep their own cache): one new position per call, its attention reading the
    cached keys and values, positions (RoPE, position tables) at the cache's length."""
    nodes = [plan.graph.nodes[n] for n in plan.order]
    time_axis = (plan.graph.metadata or {}).get("spikestack.time_axis", "")
    time_axis = time_axis.decode() if isinstance(time_axis, bytes) else str(time_axis)
    attention = [n for n in nodes if isinstance(n, Attention)]
    return (time_axis in ("sequence", "steps") and bool(attention) and all(int(n.causal) for n in attention)
            and not plan.delays and not any(isinstance(n, StepMean) for n in nodes))


def cache_states(plan: CutPlan) -> list[StateSpec]:
    """The KV cache of every attention node: [0, kv channels] per sequence at the start (it grows by one row per
    call)."""
    specs = []
    for n in plan.order:
        node = plan.graph.nodes[n]
        if isinstance(node, Attention):
            width = node.n_kv_heads * node.head_dim
            specs += [StateSpec(name=state_name(n, part), shape=(0, width), init=0.0) for part in "kv"]
    return specs


def host_states(plan: CutPlan) -> list[StateSpec]:
    """Every host state tensor: Delay values, WKV's (a, b, p), StepMean's (sum, count) and folded token shifts,
    per-position shapes."""
    specs = []
    for pl in plan.layers:
        if pl.fold is not None and pl.fold.prev is not None:
            out = int(np.asarray(plan.graph.nodes[pl.fold.linear].weight).shape[0])
            specs.append(StateSpec(name=state_name(f"fold:{pl.neuron}"), shape=(out,), init=0.0))
    for d in sorted(plan.delays):
        specs.append(StateSpec(name=state_name(d), shape=tuple(int(s) for s in np.shape(plan.graph.nodes[d].delay)),
                               init=0.0))
    for n in plan.order:
        node = plan.graph.nodes[n]
        if isinstance(node, WKV):
            shape = (int(node.time_decay.size),)
            specs += [StateSpec(name=state_name(n, "a"), shape=shape, init=0.0),
                      StateSpec(name=state_name(n, "b"), shape=shape, init=0.0),
                      StateSpec(name=state_name(n, "p"), shape=shape, init=WKV_P0)]
        elif isinstance(node, StepMean):  # fresh for every token: the executor's states start each sequence
            specs += [StateSpec(name=state_name(n, "sum"), shape=tuple(int(s) for s in node.shape), init=0.0),
                      StateSpec(name=state_name(n, "count"), shape=(1,), init=0.0)]
    return specs


def _trace_names(stages: list[StageModule], example: dict[str, Tensor],
                 chip_example: Callable[[QChipLayer, Tensor], Tensor], traced: list[TracedStage] | None) -> None:
    """Dry-run the stages in order to learn which env tensors each one reads and must hand on (and, with
    `traced`, what each one read and wrote)."""
    env = dict(example)
    produced_by: dict[str, int] = {n: -1 for n in env}
    reads: list[set[str]] = []
    for k, stage in enumerate(stages):
        tracker = _Tracking(env)
        stage.compute(tracker)
        env = dict(tracker)
        reads.append(set(tracker.read))
        if traced is not None:
            traced.append(TracedStage(read={n: tracker.seen[n] for n in tracker.read},
                                      wrote={n: env[n] for n in tracker.written}))
        for n in tracker.written:
            produced_by[n] = k
        for la in stage.send:
            env[la.output] = chip_example(la, env[la.input])
            produced_by[la.output] = k
    later_reads: set[str] = {"logits"} | {la.input for st in stages for la in st.send} | {
        name for st in stages for la in st.send for name in kind_of(la).host_aux_outputs(la)}
    for k, stage in enumerate(stages):
        stage.inputs = sorted(reads[k])
    for k, stage in enumerate(stages):
        needed = set(later_reads)
        for j in range(k + 1, len(stages)):
            needed |= reads[j]
        mine = [n for n, s in produced_by.items() if s == k and n in env]
        states = [n for n in mine if n.startswith("state:") and n.endswith(":next")]
        stage.outputs = sorted({n for n in mine if n in needed and not n.startswith("chip_out:")} | set(states))


class _Tracking(dict):
    """An env that records which names a stage reads before writing them, and which it writes."""

    def __init__(self, base: dict[str, Tensor]) -> None:
        super().__init__(base)
        self.read: set[str] = set()
        self.written: set[str] = set()
        self.seen: dict[str, Tensor] = {}  # the value of each name read, as it was when read

    def __getitem__(self, key: str) -> Tensor:
        value = super().__getitem__(key)
        if key not in self.written:
            self.read.add(key)
            self.seen.setdefault(key, value)
        return value

    def __setitem__(self, key: str, value: Tensor) -> None:
        self.written.add(key)
        super().__setitem__(key, value)


@dataclass(frozen=True)
class TracedStage:
    """What one stage read (each name's value when read) and wrote in `build_stages`' dry run."""

    read: dict[str, Tensor]
    wrote: dict[str, Tensor]

    def outputs(self, stage: StageModule, args: tuple[Tensor, ...]) -> tuple[Tensor, ...] | None:
        """`stage(*args)` without running it again, when `args` are exactly the values the dry run read (same
        module, same inputs: the same outputs); None otherwise."""
        same = all(name in self.read and _identical(self.read[name], value)
                   for name, value in zip(stage.inputs, args, strict=True))
        if not same or len(self.read) != len(args) or not all(n in self.wrote for n in stage.outputs):
            return None
        return tuple(self.wrote[n] for n in stage.outputs)


def _identical(a: Tensor, b: Tensor) -> bool:
    return a is b or (a.dtype == b.dtype and a.shape == b.shape and bool(torch.equal(a, b)))


def build_stages(plan: CutPlan, layers: list[QChipLayer], example: dict[str, Tensor],
                 chip_example: Callable[[QChipLayer, Tensor], Tensor], positions: int,
                 decode: bool = False, *, target: Target, traced: list[TracedStage] | None = None
                 ) -> list[StageModule]:
    """The stages as modules, their inputs and outputs named by a dry run over `example`; `traced` (a list)
    receives each stage's `TracedStage` of that run, so that the export need not run the stages once more."""
    stages = [StageModule(plan, k, layers, positions, decode, target=target).float().eval()
              for k in range(plan.stages)]
    with torch.no_grad():
        _trace_names(stages, example, chip_example, traced)
    return stages


def export_onnx(stage: StageModule, example: dict[str, Tensor], accumulators: set[str],
                outs: tuple[Tensor, ...] | None = None) -> bytes:
    """The stage as ONNX bytes; every axis but the per-position ones (last, or last two for accumulators) dynamic.
    `outs`: the stage's outputs on `example` when the caller has them (one forward less per stage)."""
    args = tuple(example[n] for n in stage.inputs)

    def dynamic(name: str, t: Tensor) -> dict[int, str]:
        fixed = 2 if name in accumulators else 1
        return {i: f"{_safe(name)}_d{i}" for i in range(max(t.ndim - fixed, 0))}

    if outs is None:
        with torch.no_grad():
            outs = stage(*args)
    axes = {n: dynamic(n, t) for n, t in zip(stage.inputs, args, strict=True)}
    axes.update({n: dynamic(n, t) for n, t in zip(stage.outputs, outs, strict=True)})
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(stage, args, buf, input_names=stage.inputs, output_names=stage.outputs,
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False, do_constant_folding=True)
    return buf.getvalue()


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)
