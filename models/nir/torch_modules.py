"""One torch module per NIR node type (standard and spikestack), and the node map that builds them.

Place in the picture (STYLE.md): NIR → *torch*, the import side of models/nir. Each module follows its node's
docstring equations with the same floating-point operation order as the models/ code that exports it, so an
export → import round trip is bit-exact in float64 (tested). Conventions shared with `to_torch`:

- Tensors carry extra leading (batch) axes before a node's `shape`; `Flatten` works on the trailing axes only.
- Stateful modules have `stateful = True` and `forward(*inputs, state=None) -> (output, state)`, the signature
  nirtorch's `nir_to_torch` also recognises; `state=None` means a fresh start.
- Neurons are Euler-discretised with dt = 1 step (REFERENCE.md §3.7: SpikeGPT's LIF is exactly that), start
  from v = 0, and spike on v > v_threshold as NIR says, or v >= v_threshold when the node's metadata says
  `spikestack.threshold_test: ">="` (SpikeGPT).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import nir
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikestack.errors import NIRFormatError

from .neurons import GIF, Quantizer
from .nodes import BiSpike, Embedding
from .ops import (
    GELU,
    WKV,
    Attention,
    LayerNorm,
    PositionEmbedding,
    Product,
    ReLU2,
    RMSNorm,
    RoPE,
    Sigmoid,
    SiLU,
    StepMean,
)
from .torch_standard import (
    AffineModule,
    CubaLIFModule,
    FlattenModule,
    IFModule,
    IntegratorModule,
    LIFModule,
    LIModule,
    ScaleModule,
    ThresholdModule,
    _Stateful,
    _Stateless,
    _t,
)

WKV_P0 = -1e30  # initial log-scale P of the stable WKV state (REFERENCE.md §3.1)


# -------------------- spikestack nodes


class BiSpikeModule(_Stateful):
    """One step t of `BiSpike` per call; state (u, s, t) carries over the T steps of one token."""

    def __init__(self, node: BiSpike) -> None:
        super().__init__()
        self.register_buffer("alpha", _t(node.alpha))
        self.levels, self.reset_scale = node.levels, node.reset_scale

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor, int] | None = None) -> tuple[Tensor, Any]:
        if state is None:
            u, t = x, 0
        else:
            u_prev, s_prev, t_prev = state
            t = t_prev + 1
            if t >= self.alpha.numel():
                raise NIRFormatError(f"BiSpike: step {t} beyond its {self.alpha.numel()} alpha values; reset the "
                                     "state every token")
            factor = self.reset_scale * self.alpha[t - 1] * (1.0 - s_prev / self.levels)
            u = factor * u_prev + x
        alpha = self.alpha[t]
        s = torch.clamp(torch.round(u / alpha), -self.levels, self.levels)
        return alpha * s, (u, s, t)


class EmbeddingModule(_Stateless):
    def __init__(self, node: Embedding) -> None:
        super().__init__()
        self.weight = nn.Parameter(_t(node.weight))

    def forward(self, ids: Tensor) -> Tensor:
        return F.embedding(ids.long(), self.weight)


def token_code(x: Tensor, group: Tensor, n_steps: int, max_code: int, min_step: float
               ) -> tuple[Tensor, Tensor, Tensor]:
    """(codes, Δ, z) of the channels in `group` (models/spikellm_neurons.py `quantize_per_token`, same op order);
    the compiled host's GIF encoder (compiler/hybrid/host_ops.py) sends the codes to the chip."""
    lo = x.masked_fill(~group, float("inf")).amin(dim=-1, keepdim=True)
    hi = x.masked_fill(~group, float("-inf")).amax(dim=-1, keepdim=True)
    step = ((hi - lo) / n_steps).clamp_min(min_step)
    zero_point = torch.round(-lo / step)
    codes = torch.clamp(torch.round(x / step) + zero_point, 0, max_code)
    return codes, step, zero_point


def _code(x: Tensor, group: Tensor, n_steps: int, max_code: int, min_step: float) -> Tensor:
    """Δ (code - z): the dequantized `token_code`."""
    codes, step, zero_point = token_code(x, group, n_steps, max_code, min_step)
    return step * (codes - zero_point)


class GIFModule(_Stateless):
    """`GIF`'s output Δ(Σ_k s_k - z): equal to the dequantized code, so no step loop is needed here."""

    def __init__(self, node: GIF) -> None:
        super().__init__()
        self.register_buffer("salient", torch.from_numpy(node.salient.astype(bool)))
        self.groups = [(salient, n, m) for salient, _, n, m in
                       [(False, 1, 2**node.bits - 1, 2**node.bits - 1),
                        (True, node.steps, 2 ** (node.bits + node.addbit) - 1, node.steps * (node.levels - 1))]]
        self.min_step = node.min_step

    def forward(self, x: Tensor) -> Tensor:
        x_hat = x
        for salient, n_steps, max_code in self.groups:
            group = self.salient if salient else ~self.salient
            if bool(group.any()):
                x_hat = torch.where(group, _code(x, group, n_steps, max_code, self.min_step), x_hat)
        return x_hat


class QuantizerModule(_Stateless):
    def __init__(self, node: Quantizer) -> None:
        super().__init__()
        self.n, self.min_step = 2**node.bits - 1, node.min_step

    def forward(self, x: Tensor) -> Tensor:
        return _code(x, torch.ones(x.shape[-1], dtype=torch.bool, device=x.device), self.n, self.n, self.min_step)


class LayerNormModule(_Stateless):
    def __init__(self, node: LayerNorm) -> None:
        super().__init__()
        self.weight, self.bias = nn.Parameter(_t(node.weight)), nn.Parameter(_t(node.bias))
        self.epsilon = node.epsilon

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.epsilon)


class RMSNormModule(_Stateless):
    def __init__(self, node: RMSNorm) -> None:
        super().__init__()
        self.weight, self.epsilon = nn.Parameter(_t(node.weight)), node.epsilon

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.epsilon) * self.weight


class FunctionModule(_Stateless):
    def __init__(self, fn: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)


class ProductModule(_Stateless):
    multiplies = True  # the executor passes every input edge as an argument instead of summing them

    def forward(self, *xs: Tensor) -> Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out * x
        return out


class WKVModule(_Stateful):
    """One token of the stable WKV recurrence (models/spikegpt_wkv.py `wkv_step`, same op order); state (A, B, P)."""

    def __init__(self, node: WKV) -> None:
        super().__init__()
        self.register_buffer("time_decay", _t(node.time_decay))
        self.register_buffer("time_first", _t(node.time_first))
        self.operands = node.operands.split(",")

    def forward(self, k: Tensor, v: Tensor, state: tuple[Tensor, Tensor, Tensor] | None = None) -> tuple[Tensor, Any]:
        if state is None:
            state = (torch.zeros_like(k), torch.zeros_like(k), torch.full_like(k, WKV_P0))
        a, b, p = state
        w, u = -torch.exp(self.time_decay), self.time_first
        m = torch.maximum(p, u + k)
        e_state, e_now = torch.exp(p - m), torch.exp(u + k - m)
        wkv = (e_state * a + e_now * v) / (e_state * b + e_now)
        n = torch.maximum(p + w, k)
        e_decay, e_new = torch.exp(p + w - n), torch.exp(k - n)
        return wkv, (e_decay * a + e_new * v, e_decay * b + e_new, n)


class StepMeanModule(_Stateful):
    """The running mean over a token's calls (ops.py `StepMean`); state (sum, count), None at a token's start."""

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Any]:
        total, count = (x, torch.ones_like(x[..., :1])) if state is None else (state[0] + x, state[1] + 1)
        return total / count, (total, count)


def _heads(x: Tensor, n_heads: int) -> Tensor:
    """[..., L, H·d] → [..., H, L, d] (a view)."""
    return x.view(*x.shape[:-1], n_heads, x.shape[-1] // n_heads).transpose(-3, -2)


def _merge(x: Tensor) -> Tensor:
    """[..., H, L, d] → [..., L, H·d]."""
    x = x.transpose(-3, -2)
    return x.reshape(*x.shape[:-2], -1)


ATTENTION_KERNEL_KEY = "spikestack.kernel"


class AttentionModule(_Stateless):
    """`Attention` in the exporting model's float operation order (node metadata `spikestack.kernel`)."""

    def __init__(self, node: Attention) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.causal, self.scale = node.n_heads, node.n_kv_heads, node.causal, node.scale
        self.operands = node.operands.split(",")
        kernel = (node.metadata or {}).get(ATTENTION_KERNEL_KEY, "sdpa")
        self.kernel = kernel.decode() if isinstance(kernel, bytes) else str(kernel)
        if self.kernel not in ("sdpa", "explicit"):
            raise NIRFormatError(f"{node.type_name}: metadata {ATTENTION_KERNEL_KEY!r} must be 'sdpa' or 'explicit', "
                                 f"got {self.kernel!r}")

    def _explicit(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        d = q.shape[-1]
        scores = q @ k.transpose(-1, -2)
        scores = scores / math.sqrt(d) if self.scale == 1 / math.sqrt(d) else scores * self.scale
        if self.causal:
            length = q.shape[-2]
            future = torch.triu(torch.ones(length, length, dtype=torch.bool, device=q.device), diagonal=1)
            scores = scores.masked_fill(future, float("-inf"))
        return torch.softmax(scores, dim=-1) @ v

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        q, k, v = _heads(q, self.n_heads), _heads(k, self.n_kv_heads), _heads(v, self.n_kv_heads)
        if self.n_kv_heads != self.n_heads:
            repeat = self.n_heads // self.n_kv_heads
            k, v = k.repeat_interleave(repeat, dim=-3), v.repeat_interleave(repeat, dim=-3)
        if self.kernel == "explicit":
            return _merge(self._explicit(q, k, v))
        return _merge(F.scaled_dot_product_attention(q, k, v, is_causal=bool(self.causal), scale=self.scale))


class PositionEmbeddingModule(_Stateless):
    def __init__(self, node: PositionEmbedding) -> None:
        super().__init__()
        self.weight = nn.Parameter(_t(node.weight))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.weight[: x.shape[-2]]


class RoPEModule(_Stateless):
    def __init__(self, node: RoPE) -> None:
        super().__init__()
        self.n_heads, self.head_dim, self.theta = node.n_heads, node.head_dim, node.theta

    def forward(self, x: Tensor) -> Tensor:
        seq, d = x.shape[-2], self.head_dim
        inv_freq = 1.0 / self.theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
        angles = torch.outer(torch.arange(seq, dtype=torch.float64), inv_freq)
        angles = torch.cat([angles, angles], dim=-1)
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        heads = _heads(x, self.n_heads)
        rotated = torch.cat([-heads[..., d // 2:], heads[..., : d // 2]], dim=-1)
        return _merge(heads * cos + rotated * sin)


NodeMap = dict[type, Callable[[Any], nn.Module]]

NODE_MAP: NodeMap = {
    nir.Affine: lambda n: AffineModule(n.weight, n.bias),
    nir.Linear: lambda n: AffineModule(n.weight, None),
    nir.Scale: lambda n: ScaleModule(n.scale),
    nir.Flatten: FlattenModule,
    nir.Threshold: lambda n: ThresholdModule(n.threshold),
    nir.LIF: LIFModule,
    nir.IF: IFModule,
    nir.CubaLIF: CubaLIFModule,
    nir.LI: LIModule,
    nir.I: IntegratorModule,
    BiSpike: BiSpikeModule,
    Embedding: EmbeddingModule,
    GIF: GIFModule,
    Quantizer: QuantizerModule,
    LayerNorm: LayerNormModule,
    RMSNorm: RMSNormModule,
    Sigmoid: lambda n: FunctionModule(torch.sigmoid),
    ReLU2: lambda n: FunctionModule(lambda x: torch.relu(x) ** 2),
    SiLU: lambda n: FunctionModule(F.silu),
    GELU: lambda n: FunctionModule(F.gelu),
    Product: lambda n: ProductModule(),
    StepMean: lambda n: StepMeanModule(),
    WKV: WKVModule,
    Attention: AttentionModule,
    RoPE: RoPEModule,
    PositionEmbedding: PositionEmbeddingModule,
}
