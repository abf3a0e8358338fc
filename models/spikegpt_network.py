"""The SpikeGPT network: a spiking RWKV language model, the second seed family (REFERENCE.md §3).

Place in the picture (STYLE.md): the *models/* end of the pipeline — the float PyTorch definition that is
trained by `spikegpt_train`, exported to NIR and compiled later. It follows the equations of REFERENCE.md §3.1;
it is our own code, not a port of `ridgerchu/SpikeGPT`.

    x = 1[emb[token] >= 0]                              binary embedding (flag), ATan surrogate
    block l:  x = LN0(x) if l == 0
              x = x + LIF1(SRWKV(LN1(x)));  x = x + LIF2(SRFFN(LN2(x)))
    logits = head(LN_out(x))                            bias-free head

Two forms give the same logits (tested): `SpikeGPT.forward` runs a whole sequence (training), `SpikeGPT.step`
runs one token with an explicit state of 7 vectors per layer (the form a neuromorphic core would run).

Spiking and real tensors: only the embedding (when `binary_embedding`) and the two LIF outputs per block are
binary; the residual stream, LayerNorms, WKV, sigmoid gates and relu² stay real (§3.1), so the compiler
sends them to the host.

The ANN twin (`SpikeGPTConfig(spiking=False)`) is the same network with both LIFs replaced by the identity, so
the residual adds see the real SRWKV/SRFFN outputs; same parameters, same state-dict layout, same binary
embedding (its own flag), so spiking vs ANN isolates the LIFs.

Deliberate differences from the upstream training code (none changes the architecture): no dropout (upstream
0.03), no L2Wrap logit penalty, no RWKV layer rescaling (§3.5: it is wrong for spiking models).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .spikegpt_neurons import LIF, heaviside_atan
from .spikegpt_wkv import WKV_P0, WKVState, wkv_sequence, wkv_step

FFN_EXPANSION = 4  # SRFFN key: C -> 4C (§3.1)


@dataclass(frozen=True, slots=True)
class SpikeGPTConfig:
    """Shape and neuron constants of one SpikeGPT; defaults: the tiny CPU config of §3.6 (2 x 64, ctx 64)."""

    vocab_size: int
    n_layer: int = 2
    n_embd: int = 64
    ctx_len: int = 64  # tokens per training window; the recurrent form has no limit
    binary_embedding: bool = True  # true for character models, false for the 216M BPE model (§3.5)
    spiking: bool = True  # False: the ANN twin (LIFs are the identity)
    v_threshold: float = 1.0  # LIF threshold, dimensionless (§3.1; 0.1 before upstream commit 0e7de0e)
    tau: float = 2.0  # LIF time constant in tokens (§3.1)


def _shift_tokens(x: Tensor) -> Tensor:
    """x shifted one token later along T, zero at t = 0 (the token shift of §3.1)."""
    return F.pad(x, (0, 0, 1, -1))


def _mix(x: Tensor, x_prev: Tensor, mu: Tensor) -> Tensor:
    """mu x + (1 - mu) x_prev; mu is stored [1, 1, C] (published layout), flattened to serve any [..., C]."""
    mu = mu.reshape(-1)
    return mu * x + (1 - mu) * x_prev


def _ratios(layer_id: int, n_layer: int) -> tuple[float, float]:
    """Per-layer init ratios (§3.1): 0 -> 1 over depth (guarded: 0 when n_layer = 1), and 1 -> almost 0."""
    ratio_0_to_1 = layer_id / (n_layer - 1) if n_layer > 1 else 0.0
    return ratio_0_to_1, 1.0 - layer_id / n_layer


class TimeMix(nn.Module):
    """SRWKV (§3.1): out = W_o(sigmoid(W_r x_r) * wkv(W_k x_k, W_v x_v)), x_* mixing token and predecessor."""

    def __init__(self, cfg: SpikeGPTConfig, layer_id: int) -> None:
        super().__init__()
        c = cfg.n_embd
        ratio_0_to_1, ratio_1_to_0 = _ratios(layer_id, cfg.n_layer)
        # on the CPU even inside a meta-device build (checkpoint checks): torch's meta arange runs a slow
        # reference decomposition (≈ 0.1 s a call, 108 calls per 216M build); the values are [C]-sized
        channel = torch.arange(c, dtype=torch.float32, device="cpu")
        # Decay speeds spread from -5 to 3 across channels, steeper in deeper layers; bonus log(0.3) + zigzag.
        self.time_decay = nn.Parameter(-5 + 8 * (channel / max(c - 1, 1)) ** (0.7 + 1.3 * ratio_0_to_1))
        zigzag = 0.5 * (((channel + 1) % 3) - 1)
        self.time_first = nn.Parameter(math.log(0.3) + zigzag)
        frac = (channel / c).view(1, 1, c)
        self.time_mix_k = nn.Parameter(frac**ratio_1_to_0)
        self.time_mix_v = nn.Parameter(frac**ratio_1_to_0 + 0.3 * ratio_0_to_1)
        self.time_mix_r = nn.Parameter(frac ** (0.5 * ratio_1_to_0))
        self.key = nn.Linear(c, c, bias=False)
        self.value = nn.Linear(c, c, bias=False)
        self.receptance = nn.Linear(c, c, bias=False)
        self.output = nn.Linear(c, c, bias=False)

    def _project(self, x: Tensor, x_prev: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        k = self.key(_mix(x, x_prev, self.time_mix_k))
        v = self.value(_mix(x, x_prev, self.time_mix_v))
        r = torch.sigmoid(self.receptance(_mix(x, x_prev, self.time_mix_r)))
        return k, v, r

    def forward(self, x: Tensor) -> Tensor:
        k, v, r = self._project(x, _shift_tokens(x))
        return self.output(r * wkv_sequence(self.time_decay, self.time_first, k, v))

    def step(self, x: Tensor, x_prev: Tensor, state: WKVState) -> tuple[Tensor, WKVState]:
        k, v, r = self._project(x, x_prev)
        wkv, state = wkv_step(-torch.exp(self.time_decay), self.time_first, k, v, state)
        return self.output(r * wkv), state


class ChannelMix(nn.Module):
    """SRFFN (§3.1): out = sigmoid(W_r f_r) * W_v relu(W_k f_k)^2, W_k: C -> 4C, W_v: 4C -> C."""

    def __init__(self, cfg: SpikeGPTConfig, layer_id: int) -> None:
        super().__init__()
        c = cfg.n_embd
        _, ratio_1_to_0 = _ratios(layer_id, cfg.n_layer)
        frac = (torch.arange(c, dtype=torch.float32, device="cpu") / c).view(1, 1, c)  # see TimeMix
        self.time_mix_k = nn.Parameter(frac**ratio_1_to_0)
        self.time_mix_r = nn.Parameter(frac**ratio_1_to_0)
        self.key = nn.Linear(c, FFN_EXPANSION * c, bias=False)
        self.receptance = nn.Linear(c, c, bias=False)
        self.value = nn.Linear(FFN_EXPANSION * c, c, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.step(x, _shift_tokens(x))

    def step(self, x: Tensor, x_prev: Tensor) -> Tensor:
        """One token ([B, C]) given the previous token's input; also works on whole [B, T, C] sequences."""
        hidden = torch.relu(self.key(_mix(x, x_prev, self.time_mix_k))) ** 2
        return torch.sigmoid(self.receptance(_mix(x, x_prev, self.time_mix_r))) * self.value(hidden)


class LayerState(NamedTuple):
    """The 7 state vectors of one block in the recurrent form (§3.1), each [B, C]."""

    att_shift: Tensor  # LN1 output of the previous token
    ffn_shift: Tensor  # LN2 output of the previous token
    wkv_a: Tensor
    wkv_b: Tensor
    wkv_p: Tensor
    v_lif1: Tensor  # LIF1 membrane
    v_lif2: Tensor  # LIF2 membrane


class Block(nn.Module):
    def __init__(self, cfg: SpikeGPTConfig, layer_id: int) -> None:
        super().__init__()
        self.layer_id = layer_id
        if layer_id == 0:
            self.ln0 = nn.LayerNorm(cfg.n_embd)
        self.ln1 = nn.LayerNorm(cfg.n_embd)
        self.ln2 = nn.LayerNorm(cfg.n_embd)
        self.att = TimeMix(cfg, layer_id)
        self.ffn = ChannelMix(cfg, layer_id)
        self.lif1 = LIF(tau=cfg.tau, v_threshold=cfg.v_threshold, spiking=cfg.spiking)
        self.lif2 = LIF(tau=cfg.tau, v_threshold=cfg.v_threshold, spiking=cfg.spiking)

    def forward(self, x: Tensor) -> Tensor:
        if self.layer_id == 0:
            x = self.ln0(x)
        x = x + self.lif1(self.att(self.ln1(x)))
        return x + self.lif2(self.ffn(self.ln2(x)))

    def step(self, x: Tensor, state: LayerState) -> tuple[Tensor, LayerState]:
        if self.layer_id == 0:
            x = self.ln0(x)
        a = self.ln1(x)
        att, wkv = self.att.step(a, state.att_shift, WKVState(state.wkv_a, state.wkv_b, state.wkv_p))
        s1, v1 = self.lif1.step(att, state.v_lif1)
        x = x + s1
        f = self.ln2(x)
        s2, v2 = self.lif2.step(self.ffn.step(f, state.ffn_shift), state.v_lif2)
        return x + s2, LayerState(a, f, wkv.a, wkv.b, wkv.p, v1, v2)


class SpikeGPT(nn.Module):
    """The whole model; module names reproduce the published state-dict layout (REFERENCE.md §3.2)."""

    def __init__(self, cfg: SpikeGPTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        weight = torch.empty(cfg.vocab_size, cfg.n_embd)
        if weight.device.type != "meta":  # nn.Embedding's own init, the same draws; torch runs normal_ on the meta
            nn.init.normal_(weight)  # device through a slow reference path (2.7 s at 50,277 × 768, torch 2.x)
        self.emb = nn.Embedding(cfg.vocab_size, cfg.n_embd, _weight=weight)
        self.blocks = nn.ModuleList(Block(cfg, layer_id) for layer_id in range(cfg.n_layer))
        self.ln_out = nn.LayerNorm(cfg.n_embd)
        self.head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)

    def _embed(self, idx: Tensor) -> Tensor:
        x = self.emb(idx)
        return heaviside_atan(x) if self.cfg.binary_embedding else x

    def forward(self, idx: Tensor) -> Tensor:
        """Parallel form: token ids [B, T] -> logits [B, T, vocab], every state starting fresh."""
        x = self._embed(idx)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_out(x))

    def initial_state(self, batch: int) -> list[LayerState]:
        ref = self.emb.weight
        zeros = torch.zeros(batch, self.cfg.n_embd, dtype=ref.dtype, device=ref.device)
        p0 = torch.full_like(zeros, WKV_P0)
        return [LayerState(zeros, zeros, zeros, zeros, p0, zeros, zeros) for _ in self.blocks]

    def step(self, idx: Tensor, state: list[LayerState]) -> tuple[Tensor, list[LayerState]]:
        """Recurrent form: token ids [B] and the state -> logits [B, vocab] and the next state."""
        x = self._embed(idx)
        new_state = []
        for block, layer_state in zip(self.blocks, state, strict=True):
            x, layer_state = block.step(x, layer_state)
            new_state.append(layer_state)
        return self.head(self.ln_out(x)), new_state
