"""Extension ops for spiking language models: norms, gates, activations, WKV, attention, RoPE.

Place in the picture (STYLE.md): models/ → *NIR* → compiler. These are the real-valued ops of SpikeGPT and
SpikeLLM that NIR 1.0.8 cannot express (REFERENCE.md §4.1: no products, softmax, norms); the compiler runs
them on the host. Each is one dataclass named after its math, with the equations and a numpy `reference`.

Shapes: a node's `shape` is the shape of one token's tensor ([C]); any leading axes at run time are batch
axes, and for `Attention` and `RoPE` the axis just before the channels is the token (sequence) axis.

Operands: NIR sums all edges into a node (§4.1). `Product` multiplies them instead (commutative, so edge
order does not matter). `WKV` and `Attention` need ordered operands, which an edge list cannot say, so they
carry an ``operands`` string: their predecessor node names, comma-separated, in argument order
(``"att_key,att_value"``). `check_operands` verifies it against the edges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import nir
import numpy as np

from spikestack.errors import NIRFormatError

from .nodes import MAX_ELEMENTS, NAMESPACE, _as_array, _as_float, _as_int, _as_shape, _as_str, _Extension


def _set_types(node: _Extension, shape: np.ndarray) -> None:
    node.input_type = {"input": shape}
    node.output_type = {"output": shape}


@dataclass(eq=False)
class _Elementwise(_Extension):
    """A one-input elementwise op on tensors of `shape`."""

    shape: np.ndarray

    def __post_init__(self) -> None:
        self.shape = _as_shape(self.shape, self.type_name)
        _set_types(self, self.shape)


@dataclass(eq=False)
class Sigmoid(_Elementwise):
    """y = 1 / (1 + e^-x) (SpikeGPT's receptance gates, REFERENCE.md §3.1)."""

    type_name: ClassVar[str] = f"{NAMESPACE}.Sigmoid"

    def reference(self, x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-x))


@dataclass(eq=False)
class ReLU2(_Elementwise):
    """y = max(x, 0)^2 (SpikeGPT's SRFFN hidden activation, §3.1)."""

    type_name: ClassVar[str] = f"{NAMESPACE}.ReLU2"

    def reference(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(x, 0.0) ** 2


@dataclass(eq=False)
class SiLU(_Elementwise):
    """y = x / (1 + e^-x) (SpikeLLM's SwiGLU gate, §2.3)."""

    type_name: ClassVar[str] = f"{NAMESPACE}.SiLU"

    def reference(self, x: np.ndarray) -> np.ndarray:
        return x / (1.0 + np.exp(-x))


@dataclass(eq=False)
class GELU(_Elementwise):
    """y = x/2 · (1 + erf(x/√2)), the exact (erf) form BERT and SpikeLM use (REFERENCE.md §1.2)."""

    type_name: ClassVar[str] = f"{NAMESPACE}.GELU"

    def reference(self, x: np.ndarray) -> np.ndarray:
        from math import erf

        return x / 2 * (1 + np.vectorize(erf)(x / np.sqrt(2)))


@dataclass(eq=False)
class StepMean(_Elementwise):
    """y_t = (x_0 + … + x_t) / (t + 1): the running mean over the calls of a token (SpikeLM's T steps).

    Why a node: SpikeLM averages the hidden state over its T steps and then applies the head; a non-affine head
    (BERT's MLM transform, its tanh pooler) must run on that mean, not once per step with the logits averaged.
    The graph then reads its output at the token's last call (graph metadata `spikestack.readout: last_step`),
    where the running mean is the mean over all T steps. Stateful: (sum, count), fresh for every token."""

    type_name: ClassVar[str] = f"{NAMESPACE}.StepMean"

    def reference(self, x: np.ndarray) -> np.ndarray:
        """x [T, ...] (one token's calls) → the running means [T, ...]."""
        return np.cumsum(x, axis=0) / np.arange(1, x.shape[0] + 1).reshape((-1,) + (1,) * (x.ndim - 1))


@dataclass(eq=False)
class Product(_Elementwise):
    """y = x_1 ⊙ x_2 ⊙ … : the elementwise product of all inputs (gating), not NIR's sum."""

    type_name: ClassVar[str] = f"{NAMESPACE}.Product"

    def reference(self, *xs: np.ndarray) -> np.ndarray:
        out = xs[0]
        for x in xs[1:]:
            out = out * x
        return out


@dataclass(eq=False)
class LayerNorm(_Extension):
    """y = (x - mean(x)) / sqrt(var(x) + epsilon) · weight + bias over the channel axis (biased variance)."""

    type_name: ClassVar[str] = f"{NAMESPACE}.LayerNorm"
    weight: np.ndarray  # γ [C]
    bias: np.ndarray  # β [C]
    epsilon: float

    def __post_init__(self) -> None:
        self.weight = _as_array(self.weight, self.type_name, "weight", ndim=1)
        self.bias = _as_array(self.bias, self.type_name, "bias", shape=self.weight.shape)
        self.epsilon = _as_epsilon(self, self.epsilon)
        _set_types(self, np.array(self.weight.shape))

    def reference(self, x: np.ndarray) -> np.ndarray:
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + self.epsilon) * self.weight + self.bias


@dataclass(eq=False)
class RMSNorm(_Extension):
    """y = x / sqrt(mean(x^2) + epsilon) · weight over the channel axis (LLaMA, §2.3)."""

    type_name: ClassVar[str] = f"{NAMESPACE}.RMSNorm"
    weight: np.ndarray  # [C]
    epsilon: float

    def __post_init__(self) -> None:
        self.weight = _as_array(self.weight, self.type_name, "weight", ndim=1)
        self.epsilon = _as_epsilon(self, self.epsilon)
        _set_types(self, np.array(self.weight.shape))

    def reference(self, x: np.ndarray) -> np.ndarray:
        return x / np.sqrt((x**2).mean(-1, keepdims=True) + self.epsilon) * self.weight


@dataclass(eq=False)
class PositionEmbedding(_Extension):
    """y[p] = x[p] + weight[p]: a learned vector per 0-based token position p (BERT-style, SpikeLM §1.2)."""

    type_name: ClassVar[str] = f"{NAMESPACE}.PositionEmbedding"
    weight: np.ndarray  # [max positions, C]

    def __post_init__(self) -> None:
        self.weight = _as_array(self.weight, self.type_name, "weight", ndim=2)
        _set_types(self, np.array(self.weight.shape[1:]))

    def reference(self, x: np.ndarray) -> np.ndarray:
        """x [L, C] → x + weight[:L]."""
        return x + self.weight[: x.shape[0]]


def _as_epsilon(node: _Extension, value: object) -> float:
    """ε >= 0: a negative one makes the square root of a constant input's variance NaN."""
    epsilon = _as_float(value, node.type_name, "epsilon")
    if epsilon < 0:
        raise NIRFormatError(f"{node.type_name}: field 'epsilon' must be >= 0, got {epsilon}")
    return epsilon


def _as_heads(node: _Extension, n_heads: object, head_dim: object) -> tuple[int, int]:
    """(H, d) as integers >= 1 whose product, the channels of a token, is at most MAX_ELEMENTS."""
    heads = _as_int(n_heads, node.type_name, "n_heads", 1, MAX_ELEMENTS)
    width = _as_int(head_dim, node.type_name, "head_dim", 1, MAX_ELEMENTS)
    if heads * width > MAX_ELEMENTS:
        raise NIRFormatError(f"{node.type_name}: fields 'n_heads' x 'head_dim' = {heads * width} channels, more "
                             f"than {MAX_ELEMENTS}")
    return heads, width


def _operand_list(node: _Extension, value: object, count: int) -> str:
    text = _as_str(value, node.type_name, "operands")
    names = text.split(",")
    if len(names) != count or any(not n for n in names):
        raise NIRFormatError(f"{node.type_name}: field 'operands' must name {count} source nodes, got {text!r}")
    return text


@dataclass(eq=False)
class WKV(_Extension):
    r"""SpikeGPT's WKV recurrence along tokens, per channel (REFERENCE.md §3.1), operands (k, v).

    With w' = e^{time_decay}, u = time_first:
        wkv_t = [Σ_{i<t} e^{-(t-1-i) w' + k_i} v_i + e^{u + k_t} v_t] / [Σ_{i<t} e^{-(t-1-i) w' + k_i} + e^{u + k_t}]
    State (A, B, P), P_0 = -1e30, w = -w', run in the stable form:
        m = max(P, u + k);  wkv = (e^{P-m} A + e^{u+k-m} v) / (e^{P-m} B + e^{u+k-m})
        n = max(P + w, k);  A ← e^{P+w-n} A + e^{k-n} v;  B ← e^{P+w-n} B + e^{k-n};  P ← n
    Fields: ``time_decay`` [C], ``time_first`` [C], ``operands`` "k_source,v_source".
    """

    type_name: ClassVar[str] = f"{NAMESPACE}.WKV"
    time_decay: np.ndarray
    time_first: np.ndarray
    operands: str

    def __post_init__(self) -> None:
        self.time_decay = _as_array(self.time_decay, self.type_name, "time_decay", ndim=1)
        self.time_first = _as_array(self.time_first, self.type_name, "time_first", shape=self.time_decay.shape)
        self.operands = _operand_list(self, self.operands, 2)
        _set_types(self, np.array(self.time_decay.shape))

    def reference(self, k: np.ndarray, v: np.ndarray) -> np.ndarray:
        """k, v [T, C] (one sequence, fresh state) → wkv [T, C], by the stable recurrence."""
        w, u = -np.exp(self.time_decay), self.time_first
        a, b, p = np.zeros_like(k[0]), np.zeros_like(k[0]), np.full_like(k[0], -1e30)
        out = np.empty_like(k)
        for t in range(k.shape[0]):
            m = np.maximum(p, u + k[t])
            e1, e2 = np.exp(p - m), np.exp(u + k[t] - m)
            out[t] = (e1 * a + e2 * v[t]) / (e1 * b + e2)
            n = np.maximum(p + w, k[t])
            e1, e2 = np.exp(p + w - n), np.exp(k[t] - n)
            a, b, p = e1 * a + e2 * v[t], e1 * b + e2, n
        return out


@dataclass(eq=False)
class Attention(_Extension):
    r"""Scaled dot-product attention with two dynamic operands, per head, operands (q, k, v).

    q [L, H·d], k and v [L, H_kv·d] (head h uses kv head h // (H / H_kv)):
        P_h = softmax(q_h k_hᵀ · scale + M),  M_ij = -inf where causal and j > i, else 0
        y_h = P_h v_h;  y = concat_h y_h  [L, H·d]
    Fields: ``n_heads`` H, ``n_kv_heads`` H_kv, ``head_dim`` d, ``causal`` 0/1, ``scale`` (1/sqrt(d) usually),
    ``operands`` "q_source,k_source,v_source". Optional node metadata ``spikestack.kernel`` names the float
    operation order of the exporting model, so an import can replay it bit for bit: ``sdpa`` (default, torch's
    scaled_dot_product_attention) or ``explicit`` (q kᵀ / sqrt(d), masked_fill, softmax, then · v).
    """

    type_name: ClassVar[str] = f"{NAMESPACE}.Attention"
    n_heads: int
    n_kv_heads: int
    head_dim: int
    causal: int
    scale: float
    operands: str

    def __post_init__(self) -> None:
        self.n_heads, self.head_dim = _as_heads(self, self.n_heads, self.head_dim)
        self.n_kv_heads = _as_int(self.n_kv_heads, self.type_name, "n_kv_heads", 1, self.n_heads)
        self.causal = _as_int(self.causal, self.type_name, "causal")
        self.scale = _as_float(self.scale, self.type_name, "scale")
        self.operands = _operand_list(self, self.operands, 3)
        if self.n_heads < 1 or self.n_kv_heads < 1 or self.n_heads % self.n_kv_heads or self.head_dim < 1:
            raise NIRFormatError(f"{self.type_name}: field 'n_kv_heads' {self.n_kv_heads} must divide 'n_heads' "
                                 f"{self.n_heads}, head_dim {self.head_dim} >= 1")
        if self.causal not in (0, 1):
            raise NIRFormatError(f"{self.type_name}: field 'causal' must be 0 or 1, got {self.causal}")
        _set_types(self, np.array([self.n_heads * self.head_dim]))

    def reference(self, q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
        seq, d, group = q.shape[0], self.head_dim, self.n_heads // self.n_kv_heads
        out = np.empty_like(q)
        mask = np.triu(np.full((seq, seq), -np.inf), 1) if self.causal else np.zeros((seq, seq))
        for h in range(self.n_heads):
            kv = slice((h // group) * d, (h // group + 1) * d)
            scores = q[:, h * d:(h + 1) * d] @ k[:, kv].T * self.scale + mask
            p = np.exp(scores - scores.max(-1, keepdims=True))
            out[:, h * d:(h + 1) * d] = (p / p.sum(-1, keepdims=True)) @ v[:, kv]
        return out


@dataclass(eq=False)
class RoPE(_Extension):
    r"""Rotary position embedding, rotate-half layout (Hugging Face LLaMA), per head.

    Token at position p (0-based along the token axis), head channel i < d/2, f_i = theta^(-2i/d):
        y_i = x_i cos(p f_i) - x_{i+d/2} sin(p f_i);   y_{i+d/2} = x_{i+d/2} cos(p f_i) + x_i sin(p f_i)
    Fields: ``n_heads`` H, ``head_dim`` d (even), ``theta``. Shape [H·d].
    """

    type_name: ClassVar[str] = f"{NAMESPACE}.RoPE"
    n_heads: int
    head_dim: int
    theta: float

    def __post_init__(self) -> None:
        self.n_heads, self.head_dim = _as_heads(self, self.n_heads, self.head_dim)
        self.theta = _as_float(self.theta, self.type_name, "theta")
        if self.n_heads < 1 or self.head_dim < 2 or self.head_dim % 2:
            raise NIRFormatError(f"{self.type_name}: field 'head_dim' must be even and >= 2, got {self.head_dim}")
        if self.theta <= 0:
            raise NIRFormatError(f"{self.type_name}: field 'theta' must be > 0, got {self.theta}")
        _set_types(self, np.array([self.n_heads * self.head_dim]))

    def angles(self, seq: int) -> np.ndarray:
        """p · f_i, [seq, d/2]."""
        inv_freq = 1.0 / self.theta ** (np.arange(0, self.head_dim, 2, dtype=np.float64) / self.head_dim)
        return np.outer(np.arange(seq, dtype=np.float64), inv_freq)

    def reference(self, x: np.ndarray) -> np.ndarray:
        """x [L, H·d] → rotated [L, H·d]."""
        seq, d = x.shape[0], self.head_dim
        ang = self.angles(seq)
        cos, sin = np.cos(ang), np.sin(ang)
        heads = x.reshape(seq, self.n_heads, d)
        lo, hi = heads[..., : d // 2], heads[..., d // 2:]
        c, s = cos[:, None, :], sin[:, None, :]
        return np.concatenate([lo * c - hi * s, hi * c + lo * s], axis=-1).reshape(x.shape)


OP_NODES: tuple[type[_Extension], ...] = (Sigmoid, ReLU2, SiLU, GELU, Product, LayerNorm, RMSNorm, PositionEmbedding,
                                          WKV, Attention, RoPE)
ORDERED_OPERAND_NODES: tuple[type[_Extension], ...] = (WKV, Attention)


def check_operands(graph: nir.NIRGraph) -> None:
    """Every WKV/Attention names exactly its predecessors as operands; raises NIRFormatError naming the node."""
    preds: dict[str, list[str]] = {}
    for src, dst in graph.edges:
        preds.setdefault(dst, []).append(src)
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            check_operands(node)
        if isinstance(node, ORDERED_OPERAND_NODES):
            listed = node.operands.split(",")
            if sorted(listed) != sorted(preds.get(name, [])):
                raise NIRFormatError(f"node {name!r}: field 'operands' lists {listed}, but its input edges come "
                                     f"from {sorted(preds.get(name, []))}")


def default_scale(head_dim: int) -> float:
    return 1.0 / math.sqrt(head_dim)
