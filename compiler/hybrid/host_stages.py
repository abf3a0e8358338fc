"""Host stages of a hybrid program as torch modules, exported to ONNX (one model per stage).

Why torch → ONNX and not hand-written ONNX: every NIR node already has a torch module whose float operation order
is tested against the exporting model (`models/nir/torch_modules.py`); tracing those modules gives ONNX graphs
with the same math, so the host program matches the float model by construction (tested in float32).

A stage computes, in order: the dequantization of the chip outputs it receives, its host NIR nodes in topological
order, the next values of the states whose inputs it completes (`Delay`, WKV), and the quantized inputs of the
chip layers that run after it. Its inputs and outputs are env tensors by name (compiler/hybrid/ir.py).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable

import nir
import numpy as np
import torch
from spikestack.models.nir.neurons import GIF
from spikestack.models.nir.ops import WKV, RoPE
from spikestack.models.nir.torch_modules import NODE_MAP, WKV_P0, _heads, _merge
from torch import Tensor, nn

from spikestack.errors import CompileError

from .cut import CutPlan
from .ir import STATE_MAX, QChipLayer, StateSpec
from .quantize import LIF_INPUT_MAX, gif_groups

OPSET = 17  # LayerNormalization needs 17 (onnx operator docs)


def state_name(node: str, part: str = "") -> str:
    return f"state:{node}" + (f":{part}" if part else "")


def next_name(state: str) -> str:
    return f"{state}:next"


def gif_scale_name(layer: str) -> str:
    return f"gif_scale:{layer}"


def gif_zero_name(layer: str) -> str:
    return f"gif_zero:{layer}"


class GIFEncode(nn.Module):
    """The host half of a GIF layer: per-token, per-group scale Δ, zero point z and the integer charge (codes)."""

    def __init__(self, node: GIF, min_step: float) -> None:
        super().__init__()
        groups = gif_groups(node.salient, node.bits, node.addbit)
        self.register_buffer("masks", torch.from_numpy(np.stack([m for m, _, _ in groups])))
        self.intervals = [n for _, n, _ in groups]
        self.max_codes = [c for _, _, c in groups]
        self.min_step = min_step

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        codes, scales, zeros = torch.zeros_like(x), [], []
        for g in range(len(self.intervals)):
            group = self.masks[g]
            lo = x.masked_fill(~group, float("inf")).amin(dim=-1, keepdim=True)
            hi = x.masked_fill(~group, float("-inf")).amax(dim=-1, keepdim=True)
            step = ((hi - lo) / self.intervals[g]).clamp_min(self.min_step)
            zero = torch.round(-lo / step)
            codes = torch.where(group, torch.clamp(torch.round(x / step) + zero, 0, self.max_codes[g]), codes)
            scales.append(step)
            zeros.append(zero)
        return codes.to(torch.int32), torch.cat(scales, -1), torch.cat(zeros, -1)


class HostRoPE(nn.Module):
    """`RoPEModule` with its cos/sin tables precomputed (float64, then cast) for `positions` positions: the same
    values, without the float64 Cos/Sin that onnxruntime's CPU provider lacks."""

    def __init__(self, node: RoPE, positions: int) -> None:
        super().__init__()
        d = node.head_dim
        self.n_heads, self.head_dim = node.n_heads, d
        inv_freq = 1.0 / node.theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
        angles = torch.outer(torch.arange(positions, dtype=torch.float64), inv_freq)
        angles = torch.cat([angles, angles], dim=-1)
        self.register_buffer("cos", angles.cos().float())
        self.register_buffer("sin", angles.sin().float())

    def forward(self, x: Tensor) -> Tensor:
        seq, d = x.shape[-2], self.head_dim
        heads = _heads(x, self.n_heads)
        rotated = torch.cat([-heads[..., d // 2:], heads[..., : d // 2]], dim=-1)
        return _merge(heads * self.cos[:seq] + rotated * self.sin[:seq])


def host_module(node: nir.NIRNode, positions: int) -> nn.Module:
    if isinstance(node, RoPE):
        return HostRoPE(node, positions)
    return NODE_MAP[type(node)](node)


def _stats(x: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """Mean and sqrt(biased variance + eps) over channels, as LayerNorm computes them."""
    mean = x.mean(-1, keepdim=True)
    return mean, torch.sqrt(((x - mean) ** 2).mean(-1, keepdim=True) + eps)


class FoldDequant(nn.Module):
    """The host half of a folded Linear (fold.py): per-token scalars applied to the chip's accumulators.

    For each branch b (current token; token-shifted), with Wq_e, Wq_s the compiled weight blocks (real units):
        z_b = (acc_e − m_e·Wq_e 1)/σ_e + Wq_s β0 − m_x·Wq_s 1 + acc_s      (e terms only with LN0, s only with S)
        y_b = z_b/σ_x + W (c_b ⊙ β)
    y = y_now + (last call's y_shift), and y_shift of this call is handed on as state."""

    def __init__(self, plan: CutPlan, la: QChipLayer) -> None:
        super().__init__()
        fold = plan.layers[[pl.neuron for pl in plan.layers].index(la.name)].fold
        g = plan.graph
        norm = g.nodes[fold.norm]
        w = np.asarray(g.nodes[fold.linear].weight, np.float64)
        out, width = w.shape
        p = la.projection
        mant = np.asarray(p.weight)  # int16 [branches·out, parts·width]; real weights mant·unit
        exact = np.int64 if np.issubdtype(mant.dtype, np.integer) else np.float64  # row sums of mantissas
        self.has_e, self.has_s = fold.normed is not None, bool(fold.spikes)
        self.branches = 1 + int(fold.prev is not None)
        self.out, self.width = out, width
        self.eps = float(norm.epsilon)
        self.eps0 = float(g.nodes[fold.normed].epsilon) if self.has_e else 0.0
        beta0 = np.asarray(g.nodes[fold.normed].bias, np.float64) if self.has_e else np.zeros(width)
        gamma = np.asarray(norm.weight, np.float64)
        rs_e, rs_s, k_s, k_beta = [], [], [], []
        for b, coef in enumerate((fold.now, *(() if fold.prev is None else (fold.prev,)))):
            rows = mant[b * out:(b + 1) * out]
            # row sums of integer mantissas are exact, and so is their product with the power-of-two unit; only
            # the S block is made real (float64, one branch at a time: the 216M head is 50,277 × 768)
            rs_e.append(rows[:, :width].sum(1, dtype=exact) * p.unit if self.has_e else np.zeros(out))
            s_block = (rows[:, -width:].astype(np.float64) * p.unit if self.has_s
                       else w * (coef * gamma)[None, :])  # no S: the float weights
            rs_s.append(s_block.sum(1))
            k_s.append(s_block @ beta0)
            k_beta.append(w @ (coef * np.asarray(norm.bias, np.float64)))
        for name, value in (("rs_e", rs_e), ("rs_s", rs_s), ("k_s", k_s), ("k_beta", k_beta)):
            self.register_buffer(name, torch.from_numpy(np.stack(value)).float())  # [branches, out]
        bias = getattr(g.nodes[fold.linear], "bias", None)
        self.register_buffer("bias", torch.from_numpy(np.zeros(out) if bias is None else np.asarray(bias)).float())
        self.unit = float(p.unit)

    def forward(self, raw: Tensor, x: Tensor, e: Tensor | None, shifted: Tensor | None
                ) -> tuple[Tensor, Tensor | None]:
        acc = raw.float() * self.unit  # [..., groups, branches·out]
        m_x, s_x = _stats(x, self.eps)
        if self.has_e:
            m_e, s_e = _stats(e, self.eps0)
        ys = []
        for b in range(self.branches):
            cols = slice(b * self.out, (b + 1) * self.out)
            z = self.k_s[b] - m_x * self.rs_s[b]
            if self.has_e:
                z = z + (acc[..., 0, cols] - m_e * self.rs_e[b]) / s_e
            if self.has_s:
                z = z + acc[..., -1, cols]
            ys.append(z / s_x + self.k_beta[b])
        y = ys[0] + self.bias
        if self.branches == 1:
            return y, None
        return y + shifted, ys[1]


class StageModule(nn.Module):
    """forward(*inputs) → outputs, all env tensors by name (`self.inputs`, `self.outputs`)."""

    def __init__(self, plan: CutPlan, stage: int, layers: list[QChipLayer], positions: int) -> None:
        super().__init__()
        self.plan, self.stage = plan, stage
        g = plan.graph
        self.recv = [la for la in layers if la.segment == stage - 1]
        self.send = [la for la in layers if la.segment == stage]
        self.nodes = [n for n in plan.order if plan.level[n] == stage]
        self.delays = [d for d, s in plan.delays.items() if s == stage]
        self.layer_inputs = {pl.neuron: pl.inputs for pl in plan.layers}
        self.mods = nn.ModuleDict({_key(n): host_module(g.nodes[n], positions) for n in self.nodes
                                   if type(g.nodes[n]) in NODE_MAP})
        missing = [n for n in self.nodes if type(g.nodes[n]) not in NODE_MAP]
        if missing:
            raise CompileError(f"node {missing[0]!r}: type {type(g.nodes[missing[0]]).__name__} has no host "
                               "implementation")
        self.folds = nn.ModuleDict()
        self.fold_of = {pl.neuron: pl.fold for pl in plan.layers if pl.fold is not None}
        self.encoders = nn.ModuleDict({_key(la.name): GIFEncode(g.nodes[la.name], float(g.nodes[la.name].min_step))
                                       for la in self.send if la.kind == "gif"})
        for la in self.recv:
            p = la.projection
            if la.kind == "relay":
                self.folds[_key(la.name)] = FoldDequant(plan, la)
            elif p is not None:
                self.register_buffer(f"w_{_key(la.name)}", torch.from_numpy(_group_colsums(la)).float())
        self.inputs: list[str] = []
        self.outputs: list[str] = []

    # ------------------------------------------------------------------ the math
    def _dequant(self, la: QChipLayer, raw: Tensor, env: dict[str, Tensor]) -> Tensor:
        p = la.projection
        if la.kind == "gif":
            scale, zero = env[gif_scale_name(la.name)], env[gif_zero_name(la.name)]
            if p is None:  # per channel: Δ_g (code − z_g) of the channel's group
                group = torch.from_numpy(np.asarray(_gif_group_of(self.plan, la), np.int64))
                return scale[..., group] * (raw.float() - zero[..., group])
            colsum = getattr(self, f"w_{_key(la.name)}")  # [G, out] Σ_{i∈g} m_oi
            acc = raw.float() * p.unit - zero[..., None] * colsum * p.unit
            y = (scale[..., None] * acc).sum(-2)
        elif p is None:
            return raw.float() * la.payload_unit
        else:
            y = raw[..., 0, :].float() * p.unit
        if p.bias is not None:
            y = y + torch.from_numpy(np.asarray(p.bias, np.float32))
        return y

    def _quant(self, la: QChipLayer, x: Tensor | None, env: dict[str, Tensor]) -> None:
        if la.kind == "relay":  # [e ; S]: integer vectors, exact in float32 below 2^24
            fold = self.fold_of[la.name]
            parts = [self._summed(fold.embed, env)] if fold.normed else []
            parts += [self._summed(fold.spikes, env)] if fold.spikes else []
            env[la.input] = torch.round(torch.cat(parts, -1)).to(torch.int32)
            return
        if la.kind == "gif":
            codes, scale, zero = self.encoders[_key(la.name)](x)
            env[la.input], env[gif_scale_name(la.name)], env[gif_zero_name(la.name)] = codes, scale, zero
            return
        limit = STATE_MAX if la.kind == "bispike" else LIF_INPUT_MAX
        env[la.input] = torch.clamp(torch.round(x / la.in_unit), -limit, limit).to(torch.int32)

    def _get(self, name: str, env: dict[str, Tensor]) -> Tensor:
        """A node's value; a Delay's value is its state (last call's input)."""
        return env[state_name(name)] if name in self.plan.delays else env[name]

    def _summed(self, names: list[str] | tuple[str, ...], env: dict[str, Tensor]) -> Tensor:
        total = self._get(names[0], env)
        for n in names[1:]:
            total = total + self._get(n, env)
        return total

    def compute(self, env: dict[str, Tensor]) -> None:
        g = self.plan.graph
        for la in self.recv:
            if la.kind == "relay":
                fold = self.fold_of[la.name]
                e = self._summed(fold.embed, env) if fold.normed else None
                x = self._summed(((fold.normed,) if fold.normed else ()) + fold.spikes, env)
                state = state_name(f"fold:{la.name}")
                env[la.name], shifted = self.folds[_key(la.name)](env[la.output], x, e,
                                                                  env[state] if fold.prev is not None else None)
                if shifted is not None:
                    env[next_name(state)] = shifted
                continue
            env[la.projection.name if la.projection else la.name] = self._dequant(la, env[la.output], env)
        for name in self.nodes:
            node, preds = g.nodes[name], self.plan.preds[name]
            module = self.mods[_key(name)]
            if isinstance(node, WKV):
                k, v = (self._get(o, env) for o in node.operands.split(","))
                state = tuple(env[state_name(name, part)] for part in "abp")
                env[name], new = module(k, v, state=state)
                for part, value in zip("abp", new, strict=True):
                    env[next_name(state_name(name, part))] = value
            elif getattr(module, "operands", None) is not None:
                env[name] = module(*(self._get(o, env) for o in module.operands))
            elif getattr(module, "multiplies", False):
                env[name] = module(*(self._get(p, env) for p in preds))
            elif isinstance(node, nir.Input | nir.Output):
                env[name] = self._summed(preds, env)
            else:
                env[name] = module(self._summed(preds, env))
        for d in self.delays:
            env[next_name(state_name(d))] = self._summed(self.plan.preds[d], env)
        for la in self.send:
            self._quant(la, None if la.kind == "relay" else self._summed(self.layer_inputs[la.name], env), env)
        if self.stage == self.plan.stages - 1:
            env["logits"] = self._summed(self.plan.preds[self.plan.output_name], env)

    def forward(self, *args: Tensor) -> tuple[Tensor, ...]:
        env = dict(zip(self.inputs, args, strict=True))
        self.compute(env)
        return tuple(env[o] for o in self.outputs)


def _key(name: str) -> str:
    return name.replace(".", "\u00b7")


def _gif_group_of(plan: CutPlan, la: QChipLayer) -> np.ndarray:
    node = plan.graph.nodes[la.name]
    out = np.zeros(node.salient.size, np.int64)
    for g, (mask, _, _) in enumerate(gif_groups(node.salient, node.bits, node.addbit)):
        out[mask] = g
    return out


def _group_colsums(la: QChipLayer) -> np.ndarray:
    p = la.projection
    w = np.asarray(p.weight, np.float64)
    return np.stack([w[:, np.asarray(p.groups) == g].sum(1) for g in range(p.n_groups)])


def host_states(plan: CutPlan) -> list[StateSpec]:
    """Every host state tensor: Delay values, WKV's (a, b, p) and folded token shifts, per-position shapes."""
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
    return specs


def _trace_names(stages: list[StageModule], example: dict[str, Tensor],
                 chip_example: Callable[[QChipLayer, Tensor], Tensor]) -> None:
    """Dry-run the stages in order to learn which env tensors each one reads and must hand on."""
    env = dict(example)
    produced_by: dict[str, int] = {n: -1 for n in env}
    reads: list[set[str]] = []
    for k, stage in enumerate(stages):
        tracker = _Tracking(env)
        stage.compute(tracker)
        env = dict(tracker)
        reads.append(set(tracker.read))
        for n in tracker.written:
            produced_by[n] = k
        for la in stage.send:
            env[la.output] = chip_example(la, env[la.input])
            produced_by[la.output] = k
    later_reads: set[str] = {"logits"} | {la.input for st in stages for la in st.send} | {
        gif_scale_name(la.name) for st in stages for la in st.send if la.kind == "gif"} | {
        gif_zero_name(la.name) for st in stages for la in st.send if la.kind == "gif"}
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

    def __getitem__(self, key: str) -> Tensor:
        if key not in self.written:
            self.read.add(key)
        return super().__getitem__(key)

    def __setitem__(self, key: str, value: Tensor) -> None:
        self.written.add(key)
        super().__setitem__(key, value)


def build_stages(plan: CutPlan, layers: list[QChipLayer], example: dict[str, Tensor],
                 chip_example: Callable[[QChipLayer, Tensor], Tensor], positions: int) -> list[StageModule]:
    stages = [StageModule(plan, k, layers, positions).float().eval() for k in range(plan.stages)]
    with torch.no_grad():
        _trace_names(stages, example, chip_example)
    return stages


def export_onnx(stage: StageModule, example: dict[str, Tensor], accumulators: set[str]) -> bytes:
    """The stage as ONNX bytes; every axis but the per-position ones (last, or last two for accumulators) dynamic."""
    args = tuple(example[n] for n in stage.inputs)

    def dynamic(name: str, t: Tensor) -> dict[int, str]:
        fixed = 2 if name in accumulators else 1
        return {i: f"{_safe(name)}_d{i}" for i in range(max(t.ndim - fixed, 0))}

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
