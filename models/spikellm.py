"""SpikeLLM: a LLaMA-style causal decoder whose linear-layer inputs are GIF multi-level spikes.

Place in the picture (STYLE.md): a `models/` family in torch, exported later to NIR. Our own implementation
of REFERENCE.md §2 (SpikeLLM, ICLR 2025, arXiv 2407.04752): no upstream code is copied.

What spikes. Every `nn.Linear` inside a decoder layer (q, k, v, o, gate, up, down) is a `SpikeLinear`: its
input is coded per token (REFERENCE.md §2.1) in two channel groups fixed by a static `salient_mask` buffer:

- non-salient channels: asymmetric b-bit code, Δ_lo = (max − min)/(2^b − 1), z_lo = round(−min/Δ_lo), u =
  clip(round(x/Δ_lo) + z_lo, 0, 2^b − 1): one graded spike of up to L − 1 = 2^b − 1;
- salient channels: b + a bits, Δ_hi = (max − min)/(2^(b+a) − 1), z_hi = round(−min/Δ_hi), u the unsigned
  charge, sent as K = 2^a steps of a GIF neuron with L = 2^b levels: s_k = min(u, L − 1); u ← u − s_k
  (subtractive reset, no leak);
- y = Σ_g Δ_g·(Σ_k W s_k^g − z_g·Σ_{j∈g} W[:, j]) + bias, g ∈ {lo, hi}.

Choices where upstream is silent or wrong (documented here, tested in tests/models/test_spikellm.py):

- Top-code clipping: K steps carry at most K(L − 1) = 2^(b+a) − 2^a, so the 2^a − 1 top codes of the
  (2^(b+a) − 1)-step grid cannot be sent (31 → 30 for b = 4, a = 1). We keep REFERENCE.md's Δ_hi and clip
  the code to K(L − 1) in *both* paths, so the spiking path represents the quantized path exactly
  (REFERENCE.md §2.1 infers that upstream's fake-quant training does not clip while its GIF path would, so
  upstream's two paths disagree on those codes).
- Zero point: upstream subtracts z·ΣW over all input channels; each group's z is subtracted only over its
  own channels here (the equation above), which is what the code stands for.
- Δ is clamped to ≥ MIN_STEP so a constant token (or a one-channel group) does not divide by zero.
- Rounding is round-half-to-even (`torch.round`).

Two paths of one layer, switched by `SpikeMode`: QUANT (fake quantization: integer code × Δ into a dense
linear, with a straight-through gradient for training) and SPIKE (the K GIF steps accumulated through the
weights, inference only). They are equal up to float rounding (≤ 1e-12 in float64, tested).
`set_spiking(False)` gives the ANN twin: the same modules and weights with every quantizer bypassed.

What stays real-valued (the compiler sends these to the host, REFERENCE.md §2.3): token embeddings, RMSNorm,
RoPE, the attention matmuls QKᵀ and PV and their softmax (kept float here; upstream quantizes K, V per
head/channel, not done yet), the SiLU gate product, residual additions, the final norm and the lm_head, plus
the per-token Δ, z and −z·ΣW work of every SpikeLinear. Weights stay float (upstream's 4-bit per-row weight
quantizer is not implemented).

Optimal Brain Spiking (§2.2): `calibrate_saliency` scores input channel j of each SpikeLinear by the mean
over tokens of [(x WᵀW) ⊙ x]_j on float (ANN-path) activations and marks the top fraction salient; masks are
buffers and save in the state dict. q, k and v read the same normed input but have their own masks (their W
differ), so a compiler sees that input coded three times, once per mask.

Module names follow Hugging Face LLaMA so a LLaMA-format state dict loads directly (`load_llama_state_dict`);
RoPE uses HF's rotate-half layout, which HF's converted q/k weights assume. Checked once by hand against
transformers 5.20 `LlamaForCausalLM` (random 2-layer model, grouped-query and tied variants, float64): logits
agree to 4e-7, the float32 in which HF computes RoPE and RMSNorm; transformers is not a dependency, so that
check is not in the test suite.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from spikestack.models.threads import one_torch_thread
from torch import Tensor, nn

from spikestack.errors import SpikestackError

MIN_STEP = 1e-5  # smallest Δ; the same floor as upstream's CLIPMIN (REFERENCE.md §2 code)
LN2 = math.log(2.0)


class SpikeLLMError(SpikestackError, ValueError):
    """A SpikeLLM state dict, checkpoint or config that cannot be used; the message names the key or field."""


class SpikeMode(str, Enum):
    """How a SpikeLinear evaluates its coded input."""

    QUANT = "quant"  # integer code × Δ, dense matmul (fake quantization; straight-through gradients)
    SPIKE = "spike"  # K GIF steps of graded spikes through the weights (what the hardware does)


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
# The neuron and the per-token code: pure functions, the definition every backend is tested against.


def gif_step(charge: Tensor, levels: int) -> tuple[Tensor, Tensor]:
    """One GIF step: emit s = min(u, L − 1) and subtract it from the charge u (no leak): (spike, new u)."""
    spike = torch.clamp(charge, max=levels - 1)
    return spike, charge - spike


def gif_steps(charge: Tensor, levels: int, steps: int) -> Tensor:
    """`steps` GIF steps of an unsigned integer-valued charge; returns the spikes stacked on a new dim 0.

    Charge left after the last step is dropped: a charge above steps·(L − 1) is clipped (u = 7, L = 4, K = 2 →
    [3, 3]).
    """
    spikes = []
    for _ in range(steps):
        spike, charge = gif_step(charge, levels)
        spikes.append(spike)
    return torch.stack(spikes)


@dataclass(frozen=True)
class TokenCode:
    """A per-token asymmetric code of one channel group: x ≈ step · (codes − zero_point)."""

    codes: Tensor  # integer-valued, x.shape
    step: Tensor  # Δ, x.shape[:-1] + (1,)
    zero_point: Tensor  # z, x.shape[:-1] + (1,)


def quantize_per_token(x: Tensor, n_steps: int, max_code: int, channels: Tensor | None = None) -> TokenCode:
    """Code each token (last dim = its channels) on `n_steps` intervals between its min and max.

    Δ = (max − min)/n_steps, z = round(−min/Δ), code = clip(round(x/Δ) + z, 0, max_code). REFERENCE.md §2.1
    has n_steps = 2^bits − 1; max_code < n_steps clips the top codes that K GIF steps cannot carry.
    `channels` (bool [n]): Δ and z from that group's min and max only; codes of other channels are then their
    values on this group's grid, for the caller to drop (masks, not gathers: 3x faster on CPU here).
    """
    if channels is None:
        lo, hi = x.amin(dim=-1, keepdim=True), x.amax(dim=-1, keepdim=True)
    else:
        lo = x.masked_fill(~channels, math.inf).amin(dim=-1, keepdim=True)
        hi = x.masked_fill(~channels, -math.inf).amax(dim=-1, keepdim=True)
    step = ((hi - lo) / n_steps).clamp_min(MIN_STEP)
    zero_point = torch.round(-lo / step)
    codes = torch.clamp(torch.round(x / step) + zero_point, 0, max_code)
    return TokenCode(codes=codes, step=step, zero_point=zero_point)


def dequantize(code: TokenCode) -> Tensor:
    return code.step * (code.codes - code.zero_point)


# ----------------------------------------------------------------------------------------------------
# Modules


@dataclass
class SpikeStats:
    """Running sums of one SpikeLinear's spike traffic; filled in SPIKE mode while set as `layer.stats`."""

    tokens: int = 0
    channels: int = 0
    salient_channels: int = 0
    slots_per_token: int = 0  # channel-steps a token could fire in: n_lo · 1 + n_hi · K
    events: float = 0.0  # nonzero GIF steps (graded spike events) on all channels
    salient_events: float = 0.0  # nonzero GIF steps on salient channels
    salient_binary_spikes: float = 0.0  # Σ s_k on salient channels (level n = n binary spikes, §2.1)

    def record(self, spikes: Tensor, salient: bool) -> None:
        events = float((spikes > 0).sum())
        self.events += events
        if salient:
            self.salient_events += events
            self.salient_binary_spikes += float(spikes.sum())

    def add_tokens(self, tokens: int, channels: int, salient_channels: int, steps: int) -> None:
        self.tokens += tokens
        self.channels = channels
        self.salient_channels = salient_channels
        self.slots_per_token = channels - salient_channels + steps * salient_channels

    def summary(self) -> dict[str, float]:
        """Per token: events, binary spikes per salient channel; firing rate = events / channel-step slots."""
        per_salient = max(self.tokens * self.salient_channels, 1)
        return {
            "salient_events_per_channel": self.salient_events / per_salient,
            "salient_binary_spikes_per_channel": self.salient_binary_spikes / per_salient,
            "firing_rate": self.events / max(self.tokens * self.slots_per_token, 1),
        }


class SpikeLinear(nn.Linear):
    """A Linear whose input is the two-group per-token GIF code of REFERENCE.md §2.1 (module docstring)."""

    def __init__(self, in_features: int, out_features: int, *, act_bits: int = 4, add_bits: int = 1,
                 bias: bool = False) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.act_bits = act_bits
        self.add_bits = add_bits
        self.spiking = True
        self.mode = SpikeMode.QUANT
        self.stats: SpikeStats | None = None
        self.register_buffer("salient_mask", torch.zeros(in_features, dtype=torch.bool))

    @property
    def levels(self) -> int:
        """L = 2^b levels per GIF step."""
        return 2**self.act_bits

    @property
    def steps(self) -> int:
        """K = 2^a GIF steps on salient channels."""
        return 2**self.add_bits

    def group_codes(self, x: Tensor) -> list[tuple[bool, Tensor, int, TokenCode]]:
        """(is salient, channel mask, GIF steps, code) per non-empty group; codes valid on the group only."""
        mask = self.salient_mask
        b, a = self.act_bits, self.add_bits
        groups = [
            (False, ~mask, 1, 2**b - 1, 2**b - 1),  # b bits in one step of L levels
            (True, mask, self.steps, 2 ** (b + a) - 1, self.steps * (self.levels - 1)),  # top codes clipped
        ]
        out = []
        for salient, group, steps, n_steps, max_code in groups:
            if not bool(group.any()):
                continue
            out.append((salient, group, steps, quantize_per_token(x, n_steps, max_code, group)))
        return out

    def forward(self, x: Tensor) -> Tensor:
        if not self.spiking:
            return super().forward(x)
        if self.mode is SpikeMode.SPIKE:
            return self._spike_forward(x)
        x_hat = x
        for _, group, _, code in self.group_codes(x):
            x_hat = torch.where(group, dequantize(code), x_hat)
        if x.requires_grad:  # straight-through estimator: forward the code, backward the identity
            x_hat = x + (x_hat - x).detach()
        return F.linear(x_hat, self.weight, self.bias)

    def _spike_forward(self, x: Tensor) -> Tensor:
        out_shape = x.shape[:-1] + (self.out_features,)
        y = x.new_zeros(out_shape) if self.bias is None else self.bias.expand(out_shape).clone()
        for salient, group, steps, code in self.group_codes(x):
            columns = group.nonzero().squeeze(1)  # the group's synapses only
            weight = self.weight.index_select(1, columns)
            spikes = gif_steps(code.codes.index_select(-1, columns), self.levels, steps)  # [steps, ..., n_g]
            synaptic = sum(F.linear(s, weight) for s in spikes)
            y = y + code.step * (synaptic - code.zero_point * weight.sum(1))  # −z·Σ_{j in group} W[:, j]
            if self.stats is not None:
                self.stats.record(spikes, salient)
        if self.stats is not None:
            n_salient = int(self.salient_mask.sum())
            self.stats.add_tokens(x.numel() // self.in_features, self.in_features, n_salient, self.steps)
        return y


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


# ----------------------------------------------------------------------------------------------------
# Optimal Brain Spiking


@torch.no_grad()
def calibrate_saliency(model: SpikeLLM, sample_ids: Tensor, salient_fraction: float) -> dict[str, Tensor]:
    """Mark the top `salient_fraction` input channels of every SpikeLinear salient (REFERENCE.md §2.2).

    Score of channel j = mean over samples and tokens of [(x WᵀW) ⊙ x]_j, the gradient of ½‖xWᵀ‖² times the
    input, on float activations (quantizers off, so the score does not depend on the masks being chosen).
    Ranked by the signed mean, as in the reference; ties broken by channel index. Returns the scores by layer
    name and writes `salient_mask` buffers (round(fraction · in_features) channels each).
    """
    if not 0.0 <= salient_fraction <= 1.0:
        raise SpikeLLMError(f"salient_fraction must be in [0, 1], got {salient_fraction}")
    sums: dict[str, Tensor] = {}
    counts: dict[str, int] = {}

    def hook(name: str, layer: SpikeLinear):
        def record(_module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
            x = inputs[0].reshape(-1, layer.in_features)
            score = ((x @ layer.weight.T) @ layer.weight * x).sum(0)
            sums[name] = sums.get(name, 0) + score.double()
            counts[name] = counts.get(name, 0) + x.shape[0]
        return record

    spiking = {name: layer.spiking for name, layer in model.spike_linears()}
    handles = [layer.register_forward_pre_hook(hook(name, layer)) for name, layer in model.spike_linears()]
    try:
        model.set_spiking(False)
        model(sample_ids)
    finally:
        for handle in handles:
            handle.remove()
        for name, layer in model.spike_linears():
            layer.spiking = spiking[name]
    scores = {name: sums[name] / counts[name] for name in sums}
    for name, layer in model.spike_linears():
        n_salient = round(salient_fraction * layer.in_features)
        order = torch.argsort(-scores[name], stable=True)
        mask = torch.zeros(layer.in_features, dtype=torch.bool)
        mask[order[:n_salient]] = True
        layer.salient_mask.copy_(mask)
    return scores


# ----------------------------------------------------------------------------------------------------
# LLaMA-format state dicts


IGNORED_KEY_SUFFIXES = ("rotary_emb.inv_freq",)  # old HF checkpoints save this non-weight buffer


def _require(sd: Mapping[str, Tensor], key: str) -> Tensor:
    if key not in sd:
        raise SpikeLLMError(f"LLaMA state dict: missing key {key!r}")
    return sd[key]


def infer_config(sd: Mapping[str, Tensor], *, n_heads: int | None = None, **overrides: Any) -> SpikeLLMConfig:
    """Sizes from HF key shapes. The head count has no shape of its own: `n_heads`, else head_dim 64 is
    assumed (TinyLlama's; LLaMA-7B's is 128, so pass n_heads for it). `overrides` set other config fields.
    """
    vocab, hidden = _require(sd, "model.embed_tokens.weight").shape
    n_layers = 0
    while f"model.layers.{n_layers}.input_layernorm.weight" in sd:
        n_layers += 1
    if n_layers == 0:
        raise SpikeLLMError("LLaMA state dict: missing key 'model.layers.0.input_layernorm.weight'")
    intermediate = _require(sd, "model.layers.0.mlp.gate_proj.weight").shape[0]
    if n_heads is None:
        if hidden % 64:
            raise SpikeLLMError(f"cannot infer n_heads for hidden_size {hidden}: pass n_heads or a config")
        n_heads = hidden // 64
    head_dim = hidden // n_heads
    kv_dim = _require(sd, "model.layers.0.self_attn.k_proj.weight").shape[0]
    if hidden % n_heads or kv_dim % head_dim:
        raise SpikeLLMError(f"n_heads {n_heads} does not fit hidden_size {hidden} and k_proj rows {kv_dim}")
    fields: dict[str, Any] = {
        "vocab_size": int(vocab), "hidden_size": int(hidden), "n_layers": n_layers, "n_heads": n_heads,
        "n_kv_heads": kv_dim // head_dim, "intermediate_size": int(intermediate),
        "tie_word_embeddings": "lm_head.weight" not in sd,
    }
    fields.update(overrides)
    return SpikeLLMConfig(**fields)


def load_llama_state_dict(sd: Mapping[str, Tensor], config: SpikeLLMConfig | None = None, *,
                          n_heads: int | None = None) -> SpikeLLM:
    """Build a SpikeLLM from a LLaMA state dict with HF key names (shapes checked, missing keys named).

    `config` None: sizes inferred from shapes (`infer_config`). Salient masks absent from `sd` stay all-False
    (every channel b-bit) until `calibrate_saliency` is run.
    """
    cfg = config if config is not None else infer_config(sd, n_heads=n_heads)
    model = SpikeLLM(cfg)
    expected = model.state_dict()
    weights = {k: v for k, v in sd.items() if not k.endswith(IGNORED_KEY_SUFFIXES)}
    if cfg.tie_word_embeddings:
        weights.setdefault("lm_head.weight", _require(sd, "model.embed_tokens.weight"))
    for key, target in expected.items():
        if key.endswith("salient_mask"):
            continue
        value = _require(weights, key)
        if tuple(value.shape) != tuple(target.shape):
            raise SpikeLLMError(f"LLaMA state dict: {key!r} has shape {tuple(value.shape)}, "
                                f"config expects {tuple(target.shape)}")
    unexpected = sorted(set(weights) - set(expected))
    if unexpected:
        raise SpikeLLMError(f"LLaMA state dict: unexpected keys {unexpected[:5]}")
    with torch.no_grad():
        for key, value in weights.items():
            expected[key].copy_(value.to(expected[key].dtype))
    return model


# ----------------------------------------------------------------------------------------------------
# Training, evaluation, generation (wired to `spikestack train spikellm` / `spikestack generate`)


@dataclass(frozen=True)
class TrainSettings:
    """Optimizer and schedule of `train`; the numbers were picked by hand for ≤ 3 min on one CPU thread."""

    batch_size: int = 32
    learning_rate: float = 3e-3  # AdamW peak, cosine decay to 10 %
    weight_decay: float = 0.01
    warmup_steps: int = 50
    float_fraction: float = 0.5  # first half float (ANN), then saliency calibration, then quantization-aware
    calibration_windows: int = 32
    grad_clip: float = 1.0


def _lr_factor(step: int, steps: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(steps - warmup, 1)
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))


def train(out_path: Path, *, steps: int, seed: int = 0, spiking: bool = True, progress: bool = True,
          config: SpikeLLMConfig | None = None, settings: TrainSettings | None = None) -> dict[str, Any]:
    """Train the char-level SpikeLLM on `load_corpus()` and save a checkpoint; returns its metrics.

    Schedule (our choice): the first `float_fraction` of steps train the ANN path; saliency is then calibrated
    on training windows (masks frozen from there on) and the remaining steps train the spiking path (QUANT
    mode, straight-through gradients) so the weights adapt to the 4-bit code. `spiking=False` trains the ANN
    only (masks still calibrated at the end so the checkpoint can be run spiking, post-training). Runs on one
    torch thread (restored afterwards) so a seed gives the same checkpoint bit for bit.
    """
    from spikestack.models.data import load_corpus

    settings = settings or TrainSettings()
    corpus = load_corpus()
    cfg = SpikeLLMConfig(**{**asdict(config or SpikeLLMConfig()), "vocab_size": corpus.vocab_size,
                            "spiking": spiking})
    with one_torch_thread():
        start, cpu_start = time.perf_counter(), time.process_time()
        model, final_loss = _train_loop(cfg, settings, corpus.train_ids, steps, seed, progress)
        metrics: dict[str, Any] = {
            "train_steps": steps, "seed": seed, "final_train_bpc": final_loss / LN2,
            "train_wall_s": time.perf_counter() - start, "train_cpu_s": time.process_time() - cpu_start,
        }
        checkpoint = {"family": "spikellm", "config": asdict(cfg), "state_dict": model.state_dict(),
                      "vocab": corpus.vocab, "metrics": metrics}
        out_path = Path(out_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(checkpoint, out_path)
        metrics.update(evaluate(out_path))
        torch.save(checkpoint, out_path)  # again, now carrying its validation metrics
    return metrics


def _train_loop(cfg: SpikeLLMConfig, settings: TrainSettings, train_ids: np.ndarray, steps: int, seed: int,
                progress: bool) -> tuple[SpikeLLM, float]:
    from spikestack.models.data import random_windows
    from tqdm import tqdm

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = SpikeLLM(cfg).set_spiking(False).set_mode(SpikeMode.QUANT)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate,
                                  weight_decay=settings.weight_decay, betas=(0.9, 0.95))
    switch_step = int(steps * settings.float_fraction) if cfg.spiking else steps
    bar = tqdm(range(steps), desc="train spikellm", disable=not progress)
    loss_value = float("nan")
    for step in bar:
        if step == switch_step:
            _calibrate_on_train(model, train_ids, cfg, settings, rng)
            model.set_spiking(True)
        for group in optimizer.param_groups:
            group["lr"] = settings.learning_rate * _lr_factor(step, steps, settings.warmup_steps)
        batch = torch.from_numpy(random_windows(train_ids, cfg.max_seq_len, settings.batch_size, rng))
        logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, cfg.vocab_size), batch[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        optimizer.step()
        loss_value = loss.item()
        bar.set_postfix(bpc=f"{loss_value / LN2:.3f}", path="spike" if step >= switch_step else "float")
    if switch_step >= steps:
        _calibrate_on_train(model, train_ids, cfg, settings, rng)
    return model.set_spiking(cfg.spiking), loss_value


def _calibrate_on_train(model: SpikeLLM, train_ids: np.ndarray, cfg: SpikeLLMConfig, settings: TrainSettings,
                        rng: np.random.Generator) -> None:
    from spikestack.models.data import random_windows

    windows = random_windows(train_ids, cfg.max_seq_len, settings.calibration_windows, rng)
    calibrate_saliency(model, torch.from_numpy(windows[:, :-1]), cfg.salient_fraction)


def load_checkpoint(path: Path) -> tuple[SpikeLLM, str]:
    """(model in eval mode, on its checkpoint's spiking setting, QUANT mode; vocabulary string)."""
    checkpoint = torch.load(Path(path), map_location="cpu", weights_only=True)
    if checkpoint.get("family") != "spikellm":
        raise SpikeLLMError(f"{path}: family {checkpoint.get('family')!r}, expected 'spikellm'")
    model = SpikeLLM(SpikeLLMConfig(**checkpoint["config"]))
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval(), checkpoint["vocab"]


@torch.no_grad()
def _bits_per_char(model: SpikeLLM, ids: Tensor, batch_size: int = 64) -> float:
    total_nats = 0.0
    for start in range(0, ids.shape[0], batch_size):
        chunk = ids[start:start + batch_size]
        logits = model(chunk[:, :-1])
        total_nats += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), chunk[:, 1:].reshape(-1),
                                      reduction="sum").item()
    return total_nats / (ids.shape[0] * (ids.shape[1] - 1)) / LN2


def validation_windows(n_chars: int, seq_len: int) -> Tensor:
    """Consecutive non-overlapping windows over the first n_chars of validation text, [n, seq_len + 1]."""
    from spikestack.models.data import load_corpus

    val = torch.from_numpy(load_corpus().val_ids)
    n_windows = min(n_chars, len(val) - 1) // seq_len
    if n_windows == 0:
        raise SpikeLLMError(f"n_chars {n_chars} is shorter than one window of {seq_len} characters")
    starts = torch.arange(n_windows) * seq_len
    return torch.stack([val[s:s + seq_len + 1] for s in starts.tolist()])


def evaluate(path: Path, *, n_chars: int = 20000) -> dict[str, Any]:
    """Validation bits per character of the spiking path (SPIKE mode) and the ANN twin, plus spike traffic.

    Windows: non-overlapping, `max_seq_len` characters each, from the start of the validation split; each
    scores its `max_seq_len` next characters, so `val_chars` = n_windows · max_seq_len.
    """
    model, _ = load_checkpoint(path)
    windows = validation_windows(n_chars, model.cfg.max_seq_len)
    model.set_spiking(True).set_mode(SpikeMode.SPIKE)
    layers = dict(model.spike_linears())
    for layer in layers.values():
        layer.stats = SpikeStats()
    spiking_bpc = _bits_per_char(model, windows)
    stats = {name: layer.stats for name, layer in layers.items() if layer.stats is not None}
    for layer in layers.values():
        layer.stats = None
    ann_bpc = _bits_per_char(model.set_spiking(False), windows)
    salient_slots = max(sum(st.tokens * st.salient_channels for st in stats.values()), 1)
    return {
        "val_chars": int(windows.shape[0] * (windows.shape[1] - 1)),
        "val_bpc_spiking": spiking_bpc,
        "val_bpc_ann": ann_bpc,
        # per token and salient channel, pooled over all SpikeLinears: GIF events (≤ K) and binary spikes
        "salient_events_per_channel": sum(st.salient_events for st in stats.values()) / salient_slots,
        "salient_binary_spikes_per_channel":
            sum(st.salient_binary_spikes for st in stats.values()) / salient_slots,
        "firing_rate_by_layer": {name: st.summary()["firing_rate"] for name, st in stats.items()},
    }


@torch.no_grad()
def generate(path: Path, prompt: str, n_tokens: int, *, spiking: bool = True) -> str:
    """`prompt` and its greedy continuation by `n_tokens` characters (every family's `generate` returns the prompt
    too, as the CLI prints it)."""
    model, vocab = load_checkpoint(path)
    model.set_spiking(spiking)
    index = {c: i for i, c in enumerate(vocab)}
    unknown = index.get(" ", 0)
    ids = [index.get(c, unknown) for c in prompt] or [unknown]
    out: list[int] = []
    for _ in range(n_tokens):
        context = torch.tensor([(ids + out)[-model.cfg.max_seq_len:]])
        out.append(int(model(context)[0, -1].argmax()))
    return prompt + "".join(vocab[i] for i in out)
