"""Host-side torch modules of hybrid programs that no NIR node maps to directly: the GIF encoder (per-token code),
RoPE with precomputed tables, and the dequantizer of folded Linears. `host_stages.py` composes them with the NIR
node modules into one ONNX model per stage.
"""

from __future__ import annotations

import nir
import numpy as np
import torch
from spikestack.models.nir.neurons import GIF
from spikestack.models.nir.ops import Attention, PositionEmbedding, RoPE
from spikestack.models.nir.torch_modules import NODE_MAP, AttentionModule, _heads, _merge, token_code
from torch import Tensor, nn

from .cut import CutPlan
from .fold import Fold
from .ir import QChipLayer
from .quantize import gif_groups


class GIFEncode(nn.Module):
    """The host half of a GIF layer: per-token, per-group scale Δ, zero point z and the integer charge (codes)."""

    def __init__(self, node: GIF, min_step: float) -> None:
        super().__init__()
        groups = gif_groups(node)
        self.register_buffer("masks", torch.from_numpy(np.stack([m for m, _, _ in groups])))
        self.intervals = [n for _, n, _ in groups]
        self.max_codes = [c for _, _, c in groups]
        self.min_step = min_step

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        codes, scales, zeros = torch.zeros_like(x), [], []
        for g in range(len(self.intervals)):
            group = self.masks[g]
            group_codes, step, zero = token_code(x, group, self.intervals[g], self.max_codes[g], self.min_step)
            codes = torch.where(group, group_codes, codes)
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

    def forward(self, x: Tensor, offset: Tensor | int = 0) -> Tensor:
        """`offset`: the absolute position of x's first row (decode: the number of cached positions)."""
        seq, d = x.shape[-2], self.head_dim
        heads = _heads(x, self.n_heads)
        rotated = torch.cat([-heads[..., d // 2:], heads[..., : d // 2]], dim=-1)
        cos, sin = self.cos[offset: offset + seq], self.sin[offset: offset + seq]
        return _merge(heads * cos + rotated * sin)


class CachedAttention(nn.Module):
    """Decode: the new position's query against the cached keys and values plus its own (KV cache). With one new
    position nothing is in its future, so no mask: `AttentionModule` with `causal` off, on [cache; new]."""

    def __init__(self, node: Attention) -> None:
        super().__init__()
        self.inner = AttentionModule(node)
        self.inner.causal = 0
        self.operands = self.inner.operands

    def forward(self, q: Tensor, k: Tensor, v: Tensor, k_cache: Tensor, v_cache: Tensor
                ) -> tuple[Tensor, Tensor, Tensor]:
        k_all, v_all = torch.cat([k_cache, k], -2), torch.cat([v_cache, v], -2)
        return self.inner(q, k_all, v_all), k_all, v_all


class OffsetPositionEmbedding(nn.Module):
    """`PositionEmbeddingModule` at an offset: decode adds the rows of the new positions, not rows 0…"""

    def __init__(self, node: PositionEmbedding) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.from_numpy(np.asarray(node.weight, np.float32)))

    def forward(self, x: Tensor, offset: Tensor | int = 0) -> Tensor:
        return x + self.weight[offset: offset + x.shape[-2]]


def host_module(node: nir.NIRNode, positions: int, decode: bool = False) -> nn.Module:
    if decode and isinstance(node, Attention):
        return CachedAttention(node)
    if decode and isinstance(node, PositionEmbedding):
        return OffsetPositionEmbedding(node)
    if isinstance(node, RoPE):
        return HostRoPE(node, positions)
    return NODE_MAP[type(node)](node)


def _stats(x: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """Mean and sqrt(biased variance + eps) over channels, as LayerNorm computes them."""
    mean = x.mean(-1, keepdim=True)
    return mean, torch.sqrt(((x - mean) ** 2).mean(-1, keepdim=True) + eps)


def embed_input(stage, fold: Fold, env: dict[str, Tensor]) -> Tensor:
    """The e column group's payload of a relay: e itself (integer embedding), or for a real embedding the
    quantized LN0 output u = round(LN0(e)/δ) − o, clamped to [0, L] (fold.py). δ is a power of two, so the division
    is exact in float32; the clamp only catches float32 LN0 values that round one step past the float64 range."""
    if not fold.real_embedding:
        return stage.summed(fold.embed, env)
    offset = torch.from_numpy(np.asarray(fold.embed_offset, np.float32))
    u = torch.round(stage.value(fold.normed, env) / fold.embed_step) - offset
    return torch.clamp(u, 0.0, float(fold.bound_e))


class FoldDequant(nn.Module):
    """The host half of a folded Linear (fold.py): per-token scalars applied to the chip's accumulators.

    For each branch b (current token; token-shifted), with Wq_e, Wq_s the compiled weight blocks (real units):
        z_b = (acc_e − m_e·Wq_e 1)/σ_e + Wq_s β0 − m_x·Wq_s 1 + acc_s      (e terms only with LN0, s only with S)
        y_b = z_b/σ_x + W (c_b ⊙ β)
    A real embedding's group holds u (fold.py), so its term is δ·(acc_u + Wq_u o) in place of the e terms and
    Wq_s β0 (β0 is inside LN0(e)), and m_x multiplies the row sums of whichever block exists (both are W diag(cγ)).
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
        self.real = fold.real_embedding
        self.step = float(fold.embed_step)
        rs_e, rs_s, k_s, k_beta = [], [], [], []
        for b, coef in enumerate((fold.now, *(() if fold.prev is None else (fold.prev,)))):
            rows = mant[b * out:(b + 1) * out]
            k_beta.append(w @ (coef * np.asarray(norm.bias, np.float64)))
            if self.real:  # rs_e: Wq_u o; rs_s: the row sums m_x multiplies; no β0 term
                u_block = rows[:, :width]
                # Σ|m·o| < 768·254·2^9 ≪ 2^53: exact in float64, and a BLAS product (the head is 50,277 × 768)
                rs_e.append((u_block.astype(np.float64) @ np.asarray(fold.embed_offset, np.float64)) * p.unit)
                rs_s.append(u_block.sum(1, dtype=exact) * p.unit)
                k_s.append(np.zeros(out))
                continue
            # row sums of integer mantissas are exact, and so is their product with the power-of-two unit; only
            # the S block is made real (float64, one branch at a time: the 216M head is 50,277 × 768)
            rs_e.append(rows[:, :width].sum(1, dtype=exact) * p.unit if self.has_e else np.zeros(out))
            s_block = (rows[:, -width:].astype(np.float64) * p.unit if self.has_s
                       else w * (coef * gamma)[None, :])  # no S: the float weights
            rs_s.append(s_block.sum(1))
            k_s.append(s_block @ beta0)
        for name, value in (("rs_e", rs_e), ("rs_s", rs_s), ("k_s", k_s), ("k_beta", k_beta)):
            self.register_buffer(name, torch.from_numpy(np.stack(value)).float())  # [branches, out]
        bias = getattr(g.nodes[fold.linear], "bias", None)
        self.register_buffer("bias", torch.from_numpy(np.zeros(out) if bias is None else np.asarray(bias)).float())
        self.unit = float(p.unit)

    def forward(self, raw: Tensor, x: Tensor, e: Tensor | None, shifted: Tensor | None
                ) -> tuple[Tensor, Tensor | None]:
        acc = raw.float() * self.unit  # [..., groups, branches·out]
        m_x, s_x = _stats(x, self.eps)
        if self.has_e and not self.real:
            m_e, s_e = _stats(e, self.eps0)
        ys = []
        for b in range(self.branches):
            cols = slice(b * self.out, (b + 1) * self.out)
            z = self.k_s[b] - m_x * self.rs_s[b]
            if self.real:
                z = z + (acc[..., 0, cols] + self.rs_e[b]) * self.step
            elif self.has_e:
                z = z + (acc[..., 0, cols] - m_e * self.rs_e[b]) / s_e
            if self.has_s:
                z = z + acc[..., -1, cols]
            ys.append(z / s_x + self.k_beta[b])
        y = ys[0] + self.bias
        if self.branches == 1:
            return y, None
        return y + shifted, ys[1]
