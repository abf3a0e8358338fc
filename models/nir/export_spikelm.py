"""SpikeLM (models/spikelm.py, encoder or decoder) → NIR: one graph call = one spiking step t over a sequence.

SpikeLM repeats the embedding T times and T acts as an outer batch axis (REFERENCE.md §1.2): step t of every
layer sees only step t of the layer below, and T mixes only through each neuron's membrane (§1.4). So the
graph is one step over the whole sequence (ids [..., L, 1]), the membranes are `BiSpike` state carried between
the T calls, and the readout is the mean over steps (`spikestack.readout`). Input spikers (`SpikeLinear`) are
`BiSpike` (reset_scale 0.25) → `nir.Affine`; the stateless K/V re-spikes are `BiSpike` with reset_scale 0, which
makes u_t = x_t, i.e. no membrane (exact). Attention is `spikestack.Attention` with node metadata
`spikestack.kernel: explicit` (SpikeLM's q kᵀ / √d, masked_fill, softmax, · v order).

Lossy or approximate, and why:
- The model averages the hidden state over T and then applies the head; the graph applies the head every step
  and the readout averages the logits. Equal in exact arithmetic (the head is affine), different rounding:
  ≤ 1e-12 in float64 (tested); everything before the head is bit-exact.
- BERT heads (`bert_heads`, a converted SpikeLM BERT): the MLM transform is not affine, so it must see the mean
  over T itself: a `spikestack.StepMean` node (the running mean over the token's calls) precedes it and the graph's
  readout is the last call's output (metadata `spikestack.readout: last_step`): the model's head-after-mean, up to
  float rounding.
- Encoder: NIR graphs here have one Output, so one head per graph: `head="mlm"` (the default) or
  `head="classification"`, whose output is the class head applied at every position (metadata
  `spikestack.task: classification`, `spikestack.pooling` says how to pool the positions). Ours is an Affine of
  the mean over positions, so the mean over positions of the per-position logits is the same (affine; exact up
  to rounding, as the mean over T). BERT's reads tanh(pooler(h)) at position 0 ([CLS]): tanh is written as
  2·sigmoid(2z) − 1, folded into the pooler and the class Affine; tanh is not affine, so the pooler reads the
  `StepMean` of h and the readout is the last call's, like the MLM transform.
"""

from __future__ import annotations

import nir
import numpy as np
from torch import nn

from ..bispike import RESET_SCALE, ElasticBiSpike
from ..spikelm import SpikeBlock, SpikeLinear, SpikeLMDecoder, StatelessBiSpike
from .builder import GraphBuilder, linear_node, residual_node, to_numpy
from .nodes import BiSpike, Embedding
from .ops import GELU, Attention, LayerNorm, PositionEmbedding, Sigmoid, StepMean, default_scale
from .torch_modules import ATTENTION_KERNEL_KEY


def _layer_norm(m: nn.LayerNorm) -> LayerNorm:
    return LayerNorm(weight=to_numpy(m.weight), bias=to_numpy(m.bias), epsilon=m.eps)


def _spiker(b: GraphBuilder, name: str, m: nn.Module, src: str, width: int) -> str:
    """ElasticBiSpike → BiSpike; StatelessBiSpike → BiSpike with reset_scale 0; Identity (ANN twin) → nothing."""
    if isinstance(m, ElasticBiSpike):
        return b.add(name, BiSpike(alpha=to_numpy(m.alpha), levels=m.levels, reset_scale=RESET_SCALE,
                                   shape=np.array([width])), src)
    if isinstance(m, StatelessBiSpike):
        return b.add(name, BiSpike(alpha=to_numpy(m.alpha), levels=m.levels, reset_scale=0.0,
                                   shape=np.array([width])), src)
    return src


def _spike_linear(b: GraphBuilder, name: str, m: SpikeLinear, src: str) -> str:
    src = _spiker(b, f"{name}.spike", m.spike, src, m.linear.in_features)
    return b.add(f"{name}.linear", linear_node(m.linear), src)


def _block(b: GraphBuilder, i: int, block: SpikeBlock, h: str, heads: int, causal: bool) -> str:
    p, att = f"backbone.blocks.{i}", block.attn
    d = att.query.linear.out_features
    q = _spike_linear(b, f"{p}.attn.query", att.query, h)
    k = _spiker(b, f"{p}.attn.key_spike", att.key_spike, _spike_linear(b, f"{p}.attn.key", att.key, h), d)
    v = _spiker(b, f"{p}.attn.value_spike", att.value_spike, _spike_linear(b, f"{p}.attn.value", att.value, h), d)
    node = Attention(n_heads=heads, n_kv_heads=heads, head_dim=d // heads, causal=int(causal),
                     scale=default_scale(d // heads), operands=f"{q},{k},{v}",
                     metadata={ATTENTION_KERNEL_KEY: "explicit"})
    a = b.add(f"{p}.attn.attention", node, q, k, v)
    o = _spike_linear(b, f"{p}.attn.output", att.output, a)
    h = b.add(f"{p}.norm1", _layer_norm(block.norm1), b.add(f"{p}.residual1", residual_node(d), h, o))
    up = _spike_linear(b, f"{p}.ffn.up", block.ffn.up, h)
    act = b.add(f"{p}.ffn.gelu", GELU(shape=[block.ffn.up.linear.out_features]), up)
    down = _spike_linear(b, f"{p}.ffn.down", block.ffn.down, act)
    return b.add(f"{p}.norm2", _layer_norm(block.norm2), b.add(f"{p}.residual2", residual_node(d), h, down))


def spikelm_to_nir(model: nn.Module, head: str = "mlm") -> nir.NIRGraph:
    """Input: ids [..., L, 1], L ≤ context; output: logits [..., L, vocab] of one step (readout: mean over T).
    An encoder with `head="classification"`: class logits [..., L, classes] per position instead (module doc)."""
    cfg, bb = model.cfg, model.backbone
    decoder = isinstance(model, SpikeLMDecoder)
    if head not in ("mlm", "classification") or (decoder and head != "mlm"):
        raise ValueError(f"head {head!r}: an encoder exports 'mlm' or 'classification', a decoder its LM head")
    task, head = head, model.lm_head if decoder else model.mlm_head
    b = GraphBuilder()
    b.add("input", nir.Input(input_type={"input": np.array([1])}))
    b.add("backbone.tok_emb", Embedding(weight=to_numpy(bb.tok_emb.weight), context=1), "input")
    x = b.add("emb_flat", nir.Flatten(input_type={"input": np.array([1, cfg.d_model])}, start_dim=0, end_dim=-1),
              "backbone.tok_emb")
    x = b.add("backbone.pos_emb", PositionEmbedding(weight=to_numpy(bb.pos_emb.weight)), x)
    h = b.add("backbone.emb_norm", _layer_norm(bb.emb_norm), x)
    for i, block in enumerate(bb.blocks):
        h = _block(b, i, block, h, cfg.heads, cfg.causal)
    if task == "classification":
        return _classification_graph(b, model, h)
    if getattr(cfg, "bert_heads", False):  # BERT's MLM transform (models/published/spikelm_bert.py)
        tf = model.mlm_transform
        h = b.add("step_mean", StepMean(shape=[cfg.d_model]), h)  # the transform reads the mean over T
        h = b.add("mlm_transform.dense", linear_node(tf.dense), h)
        h = b.add("mlm_transform.gelu", GELU(shape=[cfg.d_model]), h)
        h = b.add("mlm_transform.norm", _layer_norm(tf.norm), h)
    out = b.add("lm_head" if decoder else "mlm_head", linear_node(head), h)
    b.add("output", nir.Output(output_type={"output": np.array([head.out_features])}), out)
    metadata = _step_metadata(cfg, "spikelm-dec" if decoder else "spikelm-enc")
    if not decoder:
        metadata["spikestack.omitted"] = "cls_head (mean over positions, then Affine)"
    if getattr(cfg, "bert_heads", False):
        metadata["spikestack.omitted"] = "pooler and cls_head (tanh pooler on position 0, then Affine)"
        metadata["spikestack.readout"] = "last_step"
    return b.graph(metadata)


def _step_metadata(cfg, family: str) -> dict:
    """What every SpikeLM graph tells the compiler: one call per spiking step, logits averaged over the steps."""
    return {"spikestack.family": family, "spikestack.time_axis": "steps", "spikestack.input": "position",
            "spikestack.steps_per_token": cfg.run_steps, "spikestack.readout": "mean_over_steps",
            "spikestack.vocab_size": cfg.vocab, "spikestack.spiking": int(cfg.spiking)}


def _classification_graph(b: GraphBuilder, model: nn.Module, h: str) -> nir.NIRGraph:
    """The encoder's class head at every position; the evaluation pools the positions (`spikestack.pooling`)."""
    cfg, cls = model.cfg, model.cls_head
    weight, bias = to_numpy(cls.weight), to_numpy(cls.bias)
    pooling = "mean_over_positions"
    if cfg.bert_heads:  # W_c·tanh(z) + b_c = 2·W_c·sigmoid(2z) + (b_c − W_c·1), z = pooler(h)
        pooler = model.pooler
        h = b.add("step_mean", StepMean(shape=[cfg.d_model]), h)  # the tanh pooler reads the mean over T
        z = b.add("pooler", nir.Affine(weight=2.0 * to_numpy(pooler.weight), bias=2.0 * to_numpy(pooler.bias)), h)
        h = b.add("pooler.tanh", Sigmoid(shape=[cfg.d_model]), z)
        weight, bias = 2.0 * weight, bias - weight.sum(axis=1)
        pooling = "first_position"
    out = b.add("cls_head", nir.Affine(weight=weight, bias=bias), h)
    b.add("output", nir.Output(output_type={"output": np.array([cfg.classes])}), out)
    metadata = {
        **_step_metadata(cfg, "spikelm-enc"),
        "spikestack.task": "classification",
        "spikestack.classes": cfg.classes,
        "spikestack.pooling": pooling,
        "spikestack.omitted": "mlm_head" + (" and mlm_transform" if cfg.bert_heads else ""),
    }
    if cfg.bert_heads:
        metadata["spikestack.readout"] = "last_step"
    return b.graph(metadata)
