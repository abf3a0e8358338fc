"""The SpikeLM network: a BERT-style spiking transformer encoder and a causal spiking decoder (REFERENCE.md §1).

Place in the picture (STYLE.md): the *models/* end — the float PyTorch definition that is trained by
`spikelm_train`, exported to NIR and compiled later. Our own code, following the equations of
REFERENCE.md §1.1–1.2 (not a port of `Xingrun-Xing/SpikeLM`).

    h = LN_emb(tok_emb[ids] + pos_emb)                       real; repeated T times → [T, B, L, D]
    block (post-LN, as BERT):
        q = W_q S_q(h);  k = R_K(W_k S_k(h));  v = R_V(W_v S_v(h))
        a = softmax(q kᵀ/√d_head + mask) v                   per head, per step
        h = LN_1(h + W_o S_o(a))
        h = LN_2(h + W_down S_down(GELU(W_up S_up(h))))
    out = mean over T of h                                   → MLM + classification heads, or LM head

S_* are elastic bi-spiking neurons with a membrane over T (`ElasticBiSpike`, §1.1: ternary for K = 1, α per
step from 2·mean|u| on the first training batch, then frozen; multiplicative reset; straight-through
surrogate). R_K, R_V are *stateless* re-spikes with their own α per step (SpikeLM's `clip_key[t]`,
`clip_value[t]`, §1.2), so k = α_K,t·s_K and v = α_V,t·s_V with s ∈ {-K..K}: q kᵀ and P v become signed
additions scaled once by α.

Real-valued ops (host side for the compiler, §1.2 table and §1.4 "Host"): token and position embeddings, all
LayerNorms, Q (not re-spiked), the q·kᵀ and P·v products (two activations, no static weights), the 1/√d_head
scale and the causal mask, softmax, GELU (exact erf), residual adds, the final mean over T, and every head.

ANN twin: `SpikeLMConfig(spiking=False)` replaces every spiking site (S_* and R_*) by the identity and runs
one step (T identical copies would average to the same value). Same parameters and state-dict keys except the
α's, so spiking vs ANN isolates the spikes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .bispike import ALPHA_FLOOR, ElasticBiSpike, _STEBiSpike, spike_levels


@dataclass(frozen=True, slots=True)
class SpikeLMConfig:
    """Shape and switches of one SpikeLM model; stored as a dict in checkpoints, so fields are plain values."""

    vocab: int = 95  # characters of the corpus (the encoder adds one [MASK] id)
    context: int = 64  # characters per window
    d_model: int = 64
    heads: int = 4
    layers: int = 2
    ffn: int = 256  # 4 · d_model, as BERT
    steps: int = 4  # T, hard-coded 4 in SpikeLM (REFERENCE.md §1.1)
    levels: int = 1  # K: spikes in -K..K; 1 = SpikeLM's ternary spike
    learnable_alpha: bool = False  # SpikeLM freezes α after its first-batch init (§1.1); True: elastic, LSQ-trained
    spiking: bool = True  # False = ANN twin
    causal: bool = False  # True for the decoder
    classes: int = 2  # encoder classification head
    # BERT pieces (models/published/spikelm_bert.py); the defaults are the shipped char models, which predate them
    layer_norm_eps: float = 1e-5  # every LayerNorm's ε: torch's default; BERT's is 1e-12
    bert_heads: bool = False  # BERT's heads: MLM transform (dense, GELU, LayerNorm) and a tanh pooler on token 0

    @property
    def run_steps(self) -> int:
        return self.steps if self.spiking else 1


class StatelessBiSpike(nn.Module):
    """K/V re-spike: s_t = clip(round(x_t/α_t), -K, K), o_t = α_t·s_t, no membrane (REFERENCE.md §1.2).

    α has one scalar per step, initialised to 2·mean|x_t| on the first training forward and frozen, like
    `ElasticBiSpike`, and uses the same straight-through surrogate.
    """

    def __init__(self, steps: int, levels: int = 1, learnable_alpha: bool = False) -> None:
        super().__init__()
        self.steps = steps
        self.levels = levels
        self.alpha = nn.Parameter(torch.ones(steps), requires_grad=learnable_alpha)
        self.last_spikes: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != self.steps:
            raise ValueError(f"StatelessBiSpike expects {self.steps} steps on axis 0, got shape {tuple(x.shape)}")
        outputs, spikes = [], []
        for t in range(self.steps):
            if self.training and float(self.alpha.detach()[t]) == 1.0:
                with torch.no_grad():
                    self.alpha[t] = torch.clamp(2.0 * x[t].abs().mean(), min=ALPHA_FLOOR)
            alpha_t = torch.clamp(self.alpha[t], min=ALPHA_FLOOR)
            outputs.append(_STEBiSpike.apply(x[t], alpha_t, self.levels))
            spikes.append(spike_levels(x[t].detach(), alpha_t.detach(), self.levels))
        self.last_spikes = torch.stack(spikes)
        return torch.stack(outputs)


class SpikeLinear(nn.Module):
    """SpikeLM's `SpikeLinear`: an elastic bi-spiking neuron at the input of a linear layer, [T, ..., C]."""

    def __init__(self, d_in: int, d_out: int, cfg: SpikeLMConfig) -> None:
        super().__init__()
        self.spike: nn.Module = (
            ElasticBiSpike(cfg.steps, cfg.levels, cfg.learnable_alpha) if cfg.spiking else nn.Identity()
        )
        self.linear = nn.Linear(d_in, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.spike(x))


def _respike(cfg: SpikeLMConfig) -> nn.Module:
    """A K or V re-spike site, or the identity in the ANN twin."""
    return StatelessBiSpike(cfg.steps, cfg.levels, cfg.learnable_alpha) if cfg.spiking else nn.Identity()


class SpikeSelfAttention(nn.Module):
    """Multi-head self-attention whose four projections take spikes and whose K, V are re-spiked (§1.2)."""

    def __init__(self, cfg: SpikeLMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.query, self.key, self.value = (
            SpikeLinear(d, d, cfg),
            SpikeLinear(d, d, cfg),
            SpikeLinear(d, d, cfg),
        )
        self.key_spike, self.value_spike = _respike(cfg), _respike(cfg)
        self.output = SpikeLinear(d, d, cfg)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """[T, B, L, D] → [T, B, H, L, D/H]."""
        t, b, l, d = x.shape
        return x.reshape(t, b, l, self.cfg.heads, d // self.cfg.heads).transpose(2, 3)

    def project(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q (real), k = α_K·s_K and v = α_V·s_V (re-spiked), each [T, B, H, L, D/H]."""
        q = self.query(h)
        k = self.key_spike(self.key(h))
        v = self.value_spike(self.value(h))
        return self._heads(q), self._heads(k), self._heads(v)

    def scores(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """q·kᵀ/√d_head plus the causal mask; with ternary k each entry is α_K·(sum of ±q), i.e. additions."""
        s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        if self.cfg.causal:
            length = q.shape[-2]
            future = torch.triu(torch.ones(length, length, dtype=torch.bool, device=q.device), diagonal=1)
            s = s.masked_fill(future, float("-inf"))
        return s

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        q, k, v = self.project(h)
        a = torch.softmax(self.scores(q, k), dim=-1) @ v  # P·v: additions of probabilities, scaled by α_V
        t, b, _, l, _ = a.shape
        return self.output(a.transpose(2, 3).reshape(t, b, l, self.cfg.d_model))


class SpikeFeedForward(nn.Module):
    """BERT's FFN with spikes at the input of both linears: GELU's real output is re-encoded by S_down."""

    def __init__(self, cfg: SpikeLMConfig) -> None:
        super().__init__()
        self.up = SpikeLinear(cfg.d_model, cfg.ffn, cfg)
        self.down = SpikeLinear(cfg.ffn, cfg.d_model, cfg)
        self.act = nn.GELU(approximate="none")  # exact erf GELU, hard-coded in SpikeLM (§1.2)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.down(self.act(self.up(h)))


class SpikeBlock(nn.Module):
    """Post-LayerNorm block, as BERT: every spiking input Q/K/V and FFN-up sees a LayerNorm output."""

    def __init__(self, cfg: SpikeLMConfig) -> None:
        super().__init__()
        self.attn = SpikeSelfAttention(cfg)
        self.norm1 = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.ffn = SpikeFeedForward(cfg)
        self.norm2 = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = self.norm1(h + self.attn(h))
        return self.norm2(h + self.ffn(h))


class SpikeLMBackbone(nn.Module):
    """Embeddings, T-fold repetition, blocks, mean over T: ids [B, L] → hidden [B, L, D]."""

    def __init__(self, cfg: SpikeLMConfig, n_ids: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(n_ids, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.context, cfg.d_model)
        self.emb_norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.blocks = nn.ModuleList(SpikeBlock(cfg) for _ in range(cfg.layers))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.hidden_states(ids)[-1]

    def hidden_states(self, ids: torch.Tensor) -> list[torch.Tensor]:
        """[embedding output, block 1 output, …, block N output], each mean over T, [B, L, D]; the last is the
        backbone's output. What distillation matches against the ANN twin (its T = 1 makes the mean a no-op)."""
        if ids.shape[-1] > self.cfg.context:
            raise ValueError(f"SpikeLM context is {self.cfg.context} characters, got {ids.shape[-1]}")
        pos = torch.arange(ids.shape[-1], device=ids.device)
        x = self.emb_norm(self.tok_emb(ids) + self.pos_emb(pos))
        h = x.unsqueeze(0).expand(self.cfg.run_steps, *x.shape)
        hidden = [x]
        for block in self.blocks:
            h = block(h)
            hidden.append(h.mean(0))
        return hidden


class MLMTransform(nn.Module):
    """BERT's prediction-head transform before the MLM decoder: LayerNorm(GELU(dense(h))), real-valued (host)."""

    def __init__(self, cfg: SpikeLMConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.d_model, cfg.d_model)
        self.act = nn.GELU(approximate="none")  # BERT's hidden_act "gelu" is the exact erf form
        self.norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.norm(self.act(self.dense(h)))


class SpikeLMEncoder(nn.Module):
    """Bidirectional encoder: an MLM head per position, a classification head on the mean over positions.

    With `cfg.bert_heads` the heads are BERT's (SpikeLM's `spike_bert.py` keeps them real-valued): the MLM logits
    are decoder(transform(h)), and classification reads tanh(pooler(h[:, 0])), the [CLS] position, instead of
    the mean over positions.
    """

    def __init__(self, cfg: SpikeLMConfig) -> None:
        super().__init__()
        if cfg.causal:
            raise ValueError("SpikeLMEncoder needs causal=False")
        self.cfg = cfg
        self.mask_id = cfg.vocab  # one id past the characters (a BERT import copies its [MASK] row there)
        self.backbone = SpikeLMBackbone(cfg, cfg.vocab + 1)
        if cfg.bert_heads:
            self.mlm_transform = MLMTransform(cfg)
            self.pooler = nn.Linear(cfg.d_model, cfg.d_model)
        self.mlm_head = nn.Linear(cfg.d_model, cfg.vocab)
        self.cls_head = nn.Linear(cfg.d_model, cfg.classes)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ids [B, L] → (MLM logits [B, L, vocab], class logits [B, classes])."""
        return self.heads(self.backbone(ids))

    def heads(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Backbone output [B, L, D] → (MLM logits, class logits); real-valued (host)."""
        if not self.cfg.bert_heads:
            return self.mlm_head(h), self.cls_head(h.mean(1))
        return self.mlm_head(self.mlm_transform(h)), self.cls_head(torch.tanh(self.pooler(h[:, 0])))


class SpikeLMDecoder(nn.Module):
    """Causal decoder (SpikeLM's generative variant; its code is unpublished, §1.3) with an LM head."""

    def __init__(self, cfg: SpikeLMConfig) -> None:
        super().__init__()
        if not cfg.causal:
            raise ValueError("SpikeLMDecoder needs causal=True")
        self.cfg = cfg
        self.backbone = SpikeLMBackbone(cfg, cfg.vocab)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [B, L] → next-character logits [B, L, vocab]."""
        return self.heads(self.backbone(ids))

    def heads(self, h: torch.Tensor) -> torch.Tensor:
        """Backbone output [B, L, D] → next-character logits; real-valued (host)."""
        return self.lm_head(h)


SpikeLM = SpikeLMEncoder | SpikeLMDecoder


def spiking_sites(model: nn.Module) -> dict[str, ElasticBiSpike | StatelessBiSpike]:
    """Every spiking site by module name, e.g. `backbone.blocks.0.attn.key.spike`, `...attn.key_spike`."""
    return {n: m for n, m in model.named_modules() if isinstance(m, ElasticBiSpike | StatelessBiSpike)}


def firing_rates(model: nn.Module) -> dict[str, float]:
    """Fraction of non-zero spikes (over T × tokens × channels) per site, from the latest forward."""
    return {
        n: round(float((m.last_spikes != 0).float().mean()), 4)
        for n, m in spiking_sites(model).items()
        if m.last_spikes is not None
    }
