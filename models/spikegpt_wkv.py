"""SpikeGPT's WKV recurrence (REFERENCE.md §3.1): the numerically stable step, its sequence form and the direct formula.

Place in the picture (STYLE.md): part of the *models/* float definition (`TimeMix` in `spikegpt_network`
runs it); `wkv_step` is the reference the NIR `WKV` op mirrors (models/nir/torch_modules.py), `wkv_direct`
the O(T^2) oracle the tests compare both against.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

WKV_P0 = -1e30  # initial log-scale P of the stable WKV state (§3.1)


class WKVState(NamedTuple):
    """Stable WKV state per channel (§3.1): numerator A, denominator B, both scaled by e^-P; log-scale P."""

    a: Tensor
    b: Tensor
    p: Tensor


def wkv_initial_state(like: Tensor) -> WKVState:
    zeros = torch.zeros_like(like)
    return WKVState(zeros, zeros.clone(), torch.full_like(like, WKV_P0))


def wkv_step(w: Tensor, u: Tensor, k: Tensor, v: Tensor, state: WKVState) -> tuple[Tensor, WKVState]:
    """One token of the numerically stable WKV recurrence (§3.1); w = -exp(time_decay) < 0, u = time_first."""
    a, b, p = state
    m = torch.maximum(p, u + k)
    e_state, e_now = torch.exp(p - m), torch.exp(u + k - m)
    wkv = (e_state * a + e_now * v) / (e_state * b + e_now)
    n = torch.maximum(p + w, k)
    e_decay, e_new = torch.exp(p + w - n), torch.exp(k - n)
    return wkv, WKVState(e_decay * a + e_new * v, e_decay * b + e_new, n)


def wkv_sequence(time_decay: Tensor, time_first: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """WKV over [B, T, C] from a fresh state, by the stable recurrence (a plain loop over tokens)."""
    w = -torch.exp(time_decay)
    state = wkv_initial_state(k[:, 0])
    out = []
    for t in range(k.shape[1]):
        y, state = wkv_step(w, time_first, k[:, t], v[:, t], state)
        out.append(y)
    return torch.stack(out, dim=1)


def wkv_direct(time_decay: Tensor, time_first: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """WKV over [B, T, C] by the direct formula of §3.1 (O(T^2), overflows for large k; the test oracle).

    wkv_t = [sum_{i<t} e^{-(t-1-i)w' + k_i} v_i + e^{u + k_t} v_t] / [the same sums without v],
    w' = e^{time_decay}.
    """
    decay = torch.exp(time_decay)
    t_len = k.shape[1]
    out = []
    for t in range(t_len):
        num = torch.exp(time_first + k[:, t]) * v[:, t]
        den = torch.exp(time_first + k[:, t])
        for i in range(t):
            weight = torch.exp(-(t - 1 - i) * decay + k[:, i])
            num = num + weight * v[:, i]
            den = den + weight
        out.append(num / den)
    return torch.stack(out, dim=1)
