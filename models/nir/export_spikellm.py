"""SpikeLLM (models/spikellm.py) → NIR: one graph call = one whole sequence (causal attention over it).

Every `SpikeLinear` becomes a `spikestack.GIF` (its per-token two-group code, with that projection's own
salient mask) feeding a `nir.Linear`/`nir.Affine`; q, k and v read the same normed input through three GIF
nodes because their masks differ (the model's docstring). Host ops are extension nodes: RMSNorm, RoPE,
Attention (operands q, k, v), SiLU and the SwiGLU Product. Residual adds are `nir.Scale(1)` sum points.

What a GIF node computes is the dequantized code Δ(Σ_k s_k − z), i.e. SpikeMode.QUANT; SpikeMode.SPIKE sums the
K events through the weights first and differs from it only by float rounding (≤ 1e-12 in float64, tested in
tests/models/test_spikellm.py). Import → run equals the QUANT-mode model bit for bit in float64 (tested).
A checkpoint with `spiking = False` (the ANN twin) exports without GIF nodes. Tied embeddings are exported as
two copies of the table (NIR has no weight sharing).
"""

from __future__ import annotations

import nir
import numpy as np

from ..spikellm import DecoderLayer, SpikeLinear, SpikeLLM
from .builder import GraphBuilder, linear_node, residual_node, to_numpy
from .neurons import GIF
from .nodes import Embedding
from .ops import Attention, Product, RMSNorm, RoPE, SiLU, default_scale


def _rms_norm(m) -> RMSNorm:
    return RMSNorm(weight=to_numpy(m.weight), epsilon=m.eps)


def _spike_linear(b: GraphBuilder, name: str, m: SpikeLinear, src: str) -> str:
    """GIF (if the layer spikes) → Linear; returns the Linear's node name."""
    if m.spiking:
        mask = m.salient_mask.detach().cpu().numpy().astype(np.int8)
        src = b.add(f"{name}.gif", GIF(bits=m.act_bits, addbit=m.add_bits, salient=mask), src)
    return b.add(name, linear_node(m), src)


def _layer(b: GraphBuilder, i: int, layer: DecoderLayer, x: str, model: SpikeLLM) -> str:
    cfg, p = model.cfg, f"model.layers.{i}"
    att = layer.self_attn
    h = b.add(f"{p}.input_layernorm", _rms_norm(layer.input_layernorm), x)
    q = _spike_linear(b, f"{p}.self_attn.q_proj", att.q_proj, h)
    k = _spike_linear(b, f"{p}.self_attn.k_proj", att.k_proj, h)
    v = _spike_linear(b, f"{p}.self_attn.v_proj", att.v_proj, h)
    q = b.add(f"{p}.self_attn.rope_q", RoPE(n_heads=cfg.n_heads, head_dim=cfg.head_dim, theta=cfg.rope_theta), q)
    k = b.add(f"{p}.self_attn.rope_k", RoPE(n_heads=cfg.kv_heads, head_dim=cfg.head_dim, theta=cfg.rope_theta), k)
    a = b.add(f"{p}.self_attn.attention",
              Attention(n_heads=cfg.n_heads, n_kv_heads=cfg.kv_heads, head_dim=cfg.head_dim, causal=1,
                        scale=default_scale(cfg.head_dim), operands=f"{q},{k},{v}"), q, k, v)
    o = _spike_linear(b, f"{p}.self_attn.o_proj", att.o_proj, a)
    x = b.add(f"{p}.residual1", residual_node(cfg.hidden_size), x, o)
    h = b.add(f"{p}.post_attention_layernorm", _rms_norm(layer.post_attention_layernorm), x)
    mlp = layer.mlp
    gate = _spike_linear(b, f"{p}.mlp.gate_proj", mlp.gate_proj, h)
    up = _spike_linear(b, f"{p}.mlp.up_proj", mlp.up_proj, h)
    act = b.add(f"{p}.mlp.silu", SiLU(shape=[cfg.intermediate_size]), gate)
    prod = b.add(f"{p}.mlp.product", Product(shape=[cfg.intermediate_size]), act, up)
    down = _spike_linear(b, f"{p}.mlp.down_proj", mlp.down_proj, prod)
    return b.add(f"{p}.residual2", residual_node(cfg.hidden_size), x, down)


def spikellm_to_nir(model: SpikeLLM) -> nir.NIRGraph:
    """Input: ids [..., L, 1] (one id per token, L ≤ max_seq_len); output: logits [..., L, vocab]."""
    cfg = model.cfg
    b = GraphBuilder()
    b.add("input", nir.Input(input_type={"input": np.array([1])}))
    b.add("model.embed_tokens", Embedding(weight=to_numpy(model.model.embed_tokens.weight), context=1), "input")
    x = b.add("embed_flat", nir.Flatten(input_type={"input": np.array([1, cfg.hidden_size])}, start_dim=0,
                                        end_dim=-1), "model.embed_tokens")
    for i, layer in enumerate(model.model.layers):
        x = _layer(b, i, layer, x, model)
    head = b.add("lm_head", linear_node(model.lm_head), b.add("model.norm", _rms_norm(model.model.norm), x))
    b.add("output", nir.Output(output_type={"output": np.array([cfg.vocab_size])}), head)
    return b.graph({
        "spikestack.family": "spikellm",
        "spikestack.time_axis": "sequence",
        "spikestack.max_seq_len": cfg.max_seq_len,
        "spikestack.vocab_size": cfg.vocab_size,
        "spikestack.spiking": int(any(m.spiking for _, m in model.spike_linears())),
    })
