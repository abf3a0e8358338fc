"""The SpikeLLM network: a LLaMA-style causal decoder whose linear-layer inputs are GIF multi-level spikes.

Place in the picture (STYLE.md): a `models/` family in torch, exported later to NIR. Our own implementation
of REFERENCE.md §2 (SpikeLLM, ICLR 2025, arXiv 2407.04752): no upstream code is copied. Every `nn.Linear`
inside a decoder layer (q, k, v, o, gate, up, down) is a `SpikeLinear` (`spikellm_neurons` says how it codes
its input); `SpikeLLM.set_spiking(False)` gives the ANN twin: the same modules and weights with every
quantizer bypassed.

What stays real-valued (the compiler sends these to the host, REFERENCE.md §2.3): token embeddings, RMSNorm,
RoPE, the attention matmuls QKᵀ and PV and their softmax (kept float here; upstream quantizes K, V per
head/channel, not done yet), the SiLU gate product, residual additions, the final norm and the lm_head, plus
the per-token Δ, z and −z·ΣW work of every SpikeLinear. Weights stay float (upstream's 4-bit per-row weight
quantizer is not implemented).

Module names follow Hugging Face LLaMA so a LLaMA-format state dict loads directly (`load_llama_state_dict`);
RoPE uses HF's rotate-half layout, which HF's converted q/k weights assume. Checked once by hand against
transformers 5.20 `LlamaForCausalLM` (random 2-layer model, grouped-query and tied variants, float64): logits
agree to 4e-7, the float32 in which HF computes RoPE and RMSNorm; transformers is not a dependency, so that
check is not in the test suite.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikestack.errors import SpikestackError

from .spikellm_neurons import SpikeLinear, SpikeMode


class SpikeLLMError(SpikestackError, ValueError):
    """A SpikeLLM state dict, checkpoint or config that cannot be used; the message names the key or field."""


@dataclass(frozen=True)
class SpikeLLMConfig:
    """Sizes of the decoder and of its spike code. Defaults are the shipped char-level tiny model."""

    vocab_size: int = 95
    hidden_size: int = 64
    n_layers: int = 2
    n_heads: int = 4
    n_kv_heads: int | None = None  # None: = n_heads (no grouped-query attention)
    intermediate_size: int = 176  # ≈ 8/3 · hidden, LLaMA's SwiGLU ratio, rounded to a multiple of 16
    max_seq_len: int = 64
    rope_theta: float = 10000.0  # LLaMA default
    rms_norm_eps: float = 1e-5  # LLaMA-2 default
    tie_word_embeddings: bool = False
    act_bits: int = 4  # b, REFERENCE.md §2.1 (`abits`)
    add_bits: int = 1  # a: salient channels get b + a bits in K = 2^a steps (`addbit`)
    salient_fraction: float = 0.1  # arun.sh: low_p 0.9 with addbit 1 (REFERENCE.md §2.2)
    spiking: bool = True  # False: the ANN twin

    def __post_init__(self) -> None:
        kv = self.kv_heads
        checks = {
            "hidden_size must be divisible by n_heads": self.hidden_size % self.n_heads == 0,
            "n_heads must be divisible by n_kv_heads": self.n_heads % kv == 0,
            "head_dim must be even (RoPE rotates pairs)": (self.hidden_size // self.n_heads) % 2 == 0,
            "act_bits must be >= 1": self.act_bits >= 1,
            "add_bits must be >= 0": self.add_bits >= 0,
            "salient_fraction must be in [0, 1]": 0.0 <= self.salient_fraction <= 1.0,
        }
        for message, ok in checks.items():
            if not ok:
                raise SpikeLLMError(f"SpikeLLMConfig: {message} (got {self})")

    @property
    def kv_heads(self) -> int:
        return self.n_heads if self.n_kv_heads is None else self.n_kv_heads

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.n_heads


# ----------------------------------------------------------------------------------------------------
# Modules


class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x²) + eps) · weight (host op)."""

    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(seq_len: int, head_dim: int, theta: float, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """cos, sin [seq_len, head_dim] in HF's rotate-half layout: frequency i on dims i and i + head_dim/2."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float64), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class Attention(nn.Module):
    def __init__(self, cfg: SpikeLLMConfig) -> None:
        super().__init__()
        d, hd = cfg.hidden_size, cfg.head_dim
        kw = {"act_bits": cfg.act_bits, "add_bits": cfg.add_bits}
        self.cfg = cfg
        self.q_proj = SpikeLinear(d, cfg.n_heads * hd, **kw)
        self.k_proj = SpikeLinear(d, cfg.kv_heads * hd, **kw)
        self.v_proj = SpikeLinear(d, cfg.kv_heads * hd, **kw)
        self.o_proj = SpikeLinear(cfg.n_heads * hd, d, **kw)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        batch, seq, _ = x.shape
        cfg = self.cfg
        q = self.q_proj(x).view(batch, seq, cfg.n_heads, cfg.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(batch, seq, cfg.kv_heads, cfg.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(batch, seq, cfg.kv_heads, cfg.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cfg.kv_heads != cfg.n_heads:
            repeat = cfg.n_heads // cfg.kv_heads
            k, v = k.repeat_interleave(repeat, dim=1), v.repeat_interleave(repeat, dim=1)
        # QKᵀ, softmax and PV stay float: host work in this version (module docstring).
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o_proj(out.transpose(1, 2).reshape(batch, seq, cfg.n_heads * cfg.head_dim))


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) · up(x)); the product is host work, down_proj's input is spiked."""

    def __init__(self, cfg: SpikeLLMConfig) -> None:
        super().__init__()
        kw = {"act_bits": cfg.act_bits, "add_bits": cfg.add_bits}
        self.gate_proj = SpikeLinear(cfg.hidden_size, cfg.intermediate_size, **kw)
        self.up_proj = SpikeLinear(cfg.hidden_size, cfg.intermediate_size, **kw)
        self.down_proj = SpikeLinear(cfg.intermediate_size, cfg.hidden_size, **kw)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: SpikeLLMConfig) -> None:
        super().__init__()
        self.self_attn = Attention(cfg)
        self.mlp = MLP(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class DecoderBody(nn.Module):
    """HF's `model.*`: embeddings, layers, final norm."""

    def __init__(self, cfg: SpikeLLMConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class SpikeLLM(nn.Module):
    """The decoder: ids [batch, seq] → logits [batch, seq, vocab]. HF LLaMA module names."""

    def __init__(self, cfg: SpikeLLMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = DecoderBody(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.apply(_init_weights)
        self.set_spiking(cfg.spiking)

    def spike_linears(self) -> Iterable[tuple[str, SpikeLinear]]:
        return ((n, m) for n, m in self.named_modules() if isinstance(m, SpikeLinear))

    def set_spiking(self, enabled: bool) -> SpikeLLM:
        """True: every SpikeLinear codes its input; False: the ANN twin (same weights, no quantizer)."""
        for _, layer in self.spike_linears():
            layer.spiking = enabled
        return self

    def set_mode(self, mode: SpikeMode | str) -> SpikeLLM:
        """QUANT (fake-quant, trainable) or SPIKE (true GIF steps, inference)."""
        mode = SpikeMode(mode)
        for _, layer in self.spike_linears():
            layer.mode = mode
        return self

    def forward(self, ids: Tensor) -> Tensor:
        seq = ids.shape[1]
        if seq > self.cfg.max_seq_len:
            raise SpikeLLMError(f"sequence length {seq} > max_seq_len {self.cfg.max_seq_len}")
        x = self.model.embed_tokens(ids)
        cos, sin = rope_tables(seq, self.cfg.head_dim, self.cfg.rope_theta, x.dtype)
        for layer in self.model.layers:
            x = layer(x, cos, sin)
        return self.lm_head(self.model.norm(x))


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear | nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)  # LLaMA's initializer_range
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


def ann_twin(model: SpikeLLM) -> SpikeLLM:
    """A copy of `model` with every quantizer bypassed: the float network the spikes approximate."""
    twin = SpikeLLM(model.cfg)
    twin.load_state_dict(model.state_dict())
    return twin.set_spiking(False)
