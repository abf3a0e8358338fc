"""SpikeGPT (models/spikegpt.py) → NIR: one graph call = one token, the recurrent form of `SpikeGPT.step`.

Standard NIR wherever it is exact (REFERENCE.md §3.7): the LIFs are `nir.LIF` (τ = 2, R = 1, v_leak = 0,
v_threshold = 1, v_reset = 0; Euler dt = 1 token gives SpikeGPT's H = V + (X − V)/τ exactly), with node
metadata `spikestack.threshold_test: ">="` because SpikeGPT fires on H ≥ 1 and NIR on v > v_threshold; the
token shift is `nir.Delay` (1 token); the time-mix coefficients are two `nir.Scale` (μ on the token, 1 − μ on
the delayed token) summed into the projection, which is a `nir.Linear`. Extension nodes for the rest:
LayerNorm, Sigmoid, ReLU2, Product (gates), WKV (stateful over tokens).

Binary embedding: 1[emb ≥ 0] of a lookup table is itself a table, so the exported `Embedding` holds the
binarised table (exact; no threshold node). Nothing is lossy: import → run token by token equals
`SpikeGPT.step` bit for bit in float64 (tested). The ANN twin exports with its LIFs left out.
"""

from __future__ import annotations

import nir
import numpy as np
from torch import nn

from ..spikegpt import Block, ChannelMix, SpikeGPT, TimeMix
from .builder import GraphBuilder, linear_node, residual_node, to_numpy
from .nodes import Embedding
from .ops import WKV, LayerNorm, Product, ReLU2, Sigmoid
from .torch_standard import THRESHOLD_TEST_KEY


def _layer_norm(m: nn.LayerNorm) -> LayerNorm:
    return LayerNorm(weight=to_numpy(m.weight), bias=to_numpy(m.bias), epsilon=m.eps)


def _lif(width: int, tau: float, v_threshold: float) -> nir.LIF:
    ones = np.ones(width)
    return nir.LIF(tau=tau * ones, r=ones.copy(), v_leak=np.zeros(width), v_threshold=v_threshold * ones,
                   v_reset=np.zeros(width), metadata={THRESHOLD_TEST_KEY: ">="})


def _mix(b: GraphBuilder, prefix: str, mu: nn.Parameter, now: str, shifted: str) -> tuple[str, str]:
    """μ·now and (1 − μ)·shifted as two Scale nodes; their sum is formed by the consumer's input edges."""
    mu_np = to_numpy(mu).reshape(-1)
    a = b.add(f"{prefix}_now", nir.Scale(scale=mu_np), now)
    c = b.add(f"{prefix}_prev", nir.Scale(scale=1 - mu_np), shifted)
    return a, c


def _time_mix(b: GraphBuilder, p: str, att: TimeMix, src: str, width: int) -> str:
    shift = b.add(f"{p}.att_shift", nir.Delay(delay=np.ones(width)), src)
    key = b.add(f"{p}.att_key", linear_node(att.key), *_mix(b, f"{p}.att_mix_k", att.time_mix_k, src, shift))
    value = b.add(f"{p}.att_value", linear_node(att.value), *_mix(b, f"{p}.att_mix_v", att.time_mix_v, src, shift))
    rec = b.add(f"{p}.att_receptance", linear_node(att.receptance),
                *_mix(b, f"{p}.att_mix_r", att.time_mix_r, src, shift))
    gate = b.add(f"{p}.att_sigmoid", Sigmoid(shape=[width]), rec)
    wkv = b.add(f"{p}.att_wkv", WKV(time_decay=to_numpy(att.time_decay), time_first=to_numpy(att.time_first),
                                     operands=f"{key},{value}"), key, value)
    prod = b.add(f"{p}.att_gate", Product(shape=[width]), gate, wkv)
    return b.add(f"{p}.att_output", linear_node(att.output), prod)


def _channel_mix(b: GraphBuilder, p: str, ffn: ChannelMix, src: str, width: int) -> str:
    shift = b.add(f"{p}.ffn_shift", nir.Delay(delay=np.ones(width)), src)
    key = b.add(f"{p}.ffn_key", linear_node(ffn.key), *_mix(b, f"{p}.ffn_mix_k", ffn.time_mix_k, src, shift))
    hidden = b.add(f"{p}.ffn_relu2", ReLU2(shape=[ffn.key.out_features]), key)
    value = b.add(f"{p}.ffn_value", linear_node(ffn.value), hidden)
    rec = b.add(f"{p}.ffn_receptance", linear_node(ffn.receptance),
                *_mix(b, f"{p}.ffn_mix_r", ffn.time_mix_r, src, shift))
    gate = b.add(f"{p}.ffn_sigmoid", Sigmoid(shape=[width]), rec)
    return b.add(f"{p}.ffn_gate", Product(shape=[width]), gate, value)


def _block(b: GraphBuilder, layer: int, block: Block, x: str, model: SpikeGPT) -> str:
    cfg, width, p = model.cfg, model.cfg.n_embd, f"blocks.{layer}"
    if layer == 0:
        x = b.add(f"{p}.ln0", _layer_norm(block.ln0), x)
    att = _time_mix(b, p, block.att, b.add(f"{p}.ln1", _layer_norm(block.ln1), x), width)
    if cfg.spiking:
        att = b.add(f"{p}.lif1", _lif(width, cfg.tau, cfg.v_threshold), att)
    x = b.add(f"{p}.residual1", residual_node(width), x, att)
    ffn = _channel_mix(b, p, block.ffn, b.add(f"{p}.ln2", _layer_norm(block.ln2), x), width)
    if cfg.spiking:
        ffn = b.add(f"{p}.lif2", _lif(width, cfg.tau, cfg.v_threshold), ffn)
    return b.add(f"{p}.residual2", residual_node(width), x, ffn)


def spikegpt_to_nir(model: SpikeGPT) -> nir.NIRGraph:
    """Input: token ids [1] per call (one token); output: logits [vocab]. Node names follow the state dict."""
    cfg = model.cfg
    b = GraphBuilder()
    table = to_numpy(model.emb.weight)
    if cfg.binary_embedding:
        table = (table >= 0).astype(np.float64)  # SpikeGPT's 1[emb >= 0] folded into the table
    b.add("input", nir.Input(input_type={"input": np.array([1])}))
    b.add("emb", Embedding(weight=table, context=1), "input")
    x = b.add("emb_flat", nir.Flatten(input_type={"input": np.array([1, cfg.n_embd])}, start_dim=0, end_dim=-1),
              "emb")
    for layer, block in enumerate(model.blocks):
        x = _block(b, layer, block, x, model)
    head = b.add("head", linear_node(model.head), b.add("ln_out", _layer_norm(model.ln_out), x))
    b.add("output", nir.Output(output_type={"output": np.array([cfg.vocab_size])}), head)
    return b.graph({
        "spikestack.family": "spikegpt",
        "spikestack.time_axis": "tokens",
        "spikestack.vocab_size": cfg.vocab_size,
        "spikestack.spiking": int(cfg.spiking),
    })
