"""SpikeLLM's spiking pieces: the GIF neuron, the per-token code and `SpikeLinear`, the layer they feed.

Place in the picture (STYLE.md): part of the *models/* float definition (`spikellm_network` builds the decoder
from `SpikeLinear`s); `gif_step` and `quantize_per_token` are the pure definitions every backend is tested
against. Our own implementation of REFERENCE.md §2.1 (SpikeLLM, ICLR 2025, arXiv 2407.04752).

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
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MIN_STEP = 1e-5  # smallest Δ; the same floor as upstream's CLIPMIN (REFERENCE.md §2 code)


class SpikeMode(str, Enum):
    """How a SpikeLinear evaluates its coded input."""

    QUANT = "quant"  # integer code × Δ, dense matmul (fake quantization; straight-through gradients)
    SPIKE = "spike"  # K GIF steps of graded spikes through the weights (what the hardware does)


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
# The layer


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
