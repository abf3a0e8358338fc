"""Each extension node's numpy `reference` agrees with the models/ code it was exported from (float64).

Exact where both sides do the same IEEE operations (the codes); within 1e-12 where numpy and torch use
different exp/sqrt/matmul kernels.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from spikestack.models.nir.neurons import GIF
from spikestack.models.nir.ops import WKV, Attention, LayerNorm, RMSNorm, RoPE

RNG = np.random.default_rng(7)


def test_gif_reference_and_events_match_spikellm_spike_linear():
    from spikestack.models.spikellm import SpikeLinear, gif_steps, quantize_per_token

    layer = SpikeLinear(12, 5, act_bits=2, add_bits=1).double()
    mask = torch.zeros(12, dtype=torch.bool)
    mask[[1, 4, 9]] = True
    layer.salient_mask.copy_(mask)
    node = GIF(bits=2, addbit=1, salient=mask.numpy().astype(np.int8))
    x = RNG.normal(0, 2, (6, 12))
    with torch.no_grad():
        expected = layer(torch.from_numpy(x))  # QUANT path: Linear of the dequantized code
    np.testing.assert_allclose(node.reference(x) @ layer.weight.detach().numpy().T, expected.numpy(), rtol=0,
                               atol=1e-12)
    code = quantize_per_token(torch.from_numpy(x), 2**3 - 1, 2 * 3, mask)  # salient group: N = 7, max code 6
    events = gif_steps(code.codes, 4, 2).numpy()
    np.testing.assert_array_equal(node.spikes(x)[:, :, mask.numpy()], events[:, :, mask.numpy()])


def test_wkv_reference_matches_spikegpt_recurrence():
    from spikestack.models.spikegpt import wkv_sequence

    decay, first = RNG.normal(size=5), RNG.normal(size=5)
    k, v = RNG.normal(size=(9, 5)), RNG.normal(size=(9, 5))
    expected = wkv_sequence(torch.from_numpy(decay), torch.from_numpy(first), torch.from_numpy(k)[None],
                            torch.from_numpy(v)[None])[0]
    got = WKV(time_decay=decay, time_first=first, operands="k,v").reference(k, v)
    np.testing.assert_allclose(got, expected.numpy(), rtol=0, atol=1e-12)


def test_rope_and_attention_references_match_spikellm():
    from spikestack.models.spikellm import apply_rope, rope_tables

    seq, heads, kv_heads, d = 6, 4, 2, 4
    q = RNG.normal(size=(seq, heads * d))
    k, v = RNG.normal(size=(seq, kv_heads * d)), RNG.normal(size=(seq, kv_heads * d))
    cos, sin = rope_tables(seq, d, 10000.0, torch.float64)
    q_heads = torch.from_numpy(q).view(seq, heads, d).transpose(0, 1)
    expected_rope = apply_rope(q_heads, cos, sin).transpose(0, 1).reshape(seq, heads * d)
    rope = RoPE(n_heads=heads, head_dim=d, theta=10000.0)
    np.testing.assert_allclose(rope.reference(q), expected_rope.numpy(), rtol=0, atol=1e-12)
    att = Attention(n_heads=heads, n_kv_heads=kv_heads, head_dim=d, causal=1, scale=0.5, operands="q,k,v")
    tq = torch.from_numpy(q).view(seq, heads, d).transpose(0, 1)
    tk = torch.from_numpy(k).view(seq, kv_heads, d).transpose(0, 1).repeat_interleave(2, dim=0)
    tv = torch.from_numpy(v).view(seq, kv_heads, d).transpose(0, 1).repeat_interleave(2, dim=0)
    expected = F.scaled_dot_product_attention(tq, tk, tv, is_causal=True).transpose(0, 1).reshape(seq, -1)
    np.testing.assert_allclose(att.reference(q, k, v), expected.numpy(), rtol=0, atol=1e-12)


def test_norm_references_match_torch():
    from spikestack.models.spikellm import RMSNorm as TorchRMSNorm

    x, w, b = RNG.normal(size=(3, 8)), RNG.normal(size=8), RNG.normal(size=8)
    expected = F.layer_norm(torch.from_numpy(x), (8,), torch.from_numpy(w), torch.from_numpy(b), 1e-5)
    np.testing.assert_allclose(LayerNorm(weight=w, bias=b, epsilon=1e-5).reference(x), expected.numpy(), rtol=0,
                               atol=1e-12)
    rms = TorchRMSNorm(8, 1e-6).double()
    rms.weight.data = torch.from_numpy(w)
    np.testing.assert_allclose(RMSNorm(weight=w, epsilon=1e-6).reference(x), rms(torch.from_numpy(x)).detach().numpy(),
                               rtol=0, atol=1e-12)
