"""Spike encodings: how a signed level s ∈ [-K, K] crosses a synapse (issue 5, REFERENCE.md §1.4).

* graded: one message whose payload is s · amplitude[t] (needs bits(K · max amplitude) + 1 payload bits).
* unary: thermometer code, binary events [s >= k] and [s <= -k] for k = 1..K on 2K axon planes; the synapses of
  the negative planes hold -W. |s| events per spike.
* bitserial: the bits of |s| on 2·bits(K) planes, plane b weighted ±2^b (Lava Dense weight_exp = b). popcount(|s|)
  events per spike, as SpikeLLM's GIF compresses T to (T/L)·log2 L (REFERENCE.md §2.1).

Binary encodings cannot carry the per-step amplitude, so the destination applies it as a per-step input gain
(`QProjection.gain`): gain[t] · Σ_p scale_p · W · plane_p = W · (s · amplitude[t]) exactly. This module is the
single definition of the planes; the reference executor, the Lava backend and the simulator all use it.
"""

from __future__ import annotations

import numpy as np

ENCODINGS = ("graded", "unary", "bitserial")


def plane_scales(encoding: str, levels: int) -> np.ndarray:
    """int64 [P]: the signed value each binary plane stands for (Σ_p scale_p · plane_p = s)."""
    if encoding == "unary":
        mags = np.ones(levels, np.int64)
    elif encoding == "bitserial":
        mags = np.int64(1) << np.arange(int(levels).bit_length(), dtype=np.int64)
    else:
        raise ValueError(f"encoding {encoding!r} has no binary planes")
    return np.concatenate([mags, -mags])


def to_planes(s: np.ndarray, encoding: str, levels: int) -> np.ndarray:
    """Signed levels [..., n] → binary planes int8 [..., P, n] (positive planes first, then negative)."""
    s = np.asarray(s, np.int64)
    mag, pos = np.abs(s), s > 0
    if encoding == "unary":
        k = np.arange(1, levels + 1)
        half = mag[..., None, :] >= k[:, None]
    elif encoding == "bitserial":
        b = np.arange(int(levels).bit_length())
        half = ((mag[..., None, :] >> b[:, None]) & 1).astype(bool)
    else:
        raise ValueError(f"encoding {encoding!r} has no binary planes")
    return np.concatenate([half & pos[..., None, :], half & ~pos[..., None, :]], axis=-2).astype(np.int8)


def events_per_spike(s: np.ndarray, encoding: str) -> np.ndarray:
    """Binary messages each neuron sends for its level s: 1 if s ≠ 0 (graded), |s| (unary), popcount (bitserial)."""
    mag = np.abs(np.asarray(s, np.int64))
    if encoding == "graded":
        return (mag != 0).astype(np.int64)
    if encoding == "unary":
        return mag
    if encoding == "bitserial":
        count = np.zeros_like(mag)
        while np.any(mag):
            count += mag & 1
            mag = mag >> 1
        return count
    raise ValueError(f"unknown encoding {encoding!r}; choose from {', '.join(ENCODINGS)}")


def unsigned_plane_scales(encoding: str, max_level: int) -> np.ndarray:
    """Planes of an unsigned level s ∈ [0, max_level] (GIF spikes, relay counts): the positive half only."""
    return plane_scales(encoding, max_level)[: plane_scales(encoding, max_level).size // 2]


def to_unsigned_planes(s: np.ndarray, encoding: str, max_level: int) -> np.ndarray:
    """Unsigned levels [..., n] → binary planes int8 [..., P, n] with Σ_p scale_p · plane_p = s."""
    planes = to_planes(s, encoding, max_level)
    return planes[..., : planes.shape[-2] // 2, :]


def planes_count(encoding: str, levels: int) -> int:
    """Axon planes an encoding occupies per source neuron (1 for graded)."""
    return 1 if encoding == "graded" else int(plane_scales(encoding, levels).size)
