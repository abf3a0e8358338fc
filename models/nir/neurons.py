"""Extension neurons for SpikeLLM's input code: the GIF multi-level neuron and the plain per-token quantizer.

Place in the picture (STYLE.md): models/ → *NIR* → compiler. NIR 1.0.8 has only binary spikes (REFERENCE.md
§4.1); SpikeLLM sends unsigned graded spikes of up to L − 1 in K steps (§2.1), whose scale Δ and zero point z
are computed per token on the host. Both nodes here are that per-token code, defined by the numpy `reference`
method that every backend is tested against; field names follow the paper's symbols (b, a, L, K).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from spikestack.errors import NIRFormatError

from .nodes import (
    MAX_CODE_BITS,
    MAX_ELEMENTS,
    MAX_STEP_BITS,
    NAMESPACE,
    _as_array,
    _as_float,
    _as_int,
    _as_shape,
    _Extension,
)

MIN_STEP = 1e-5  # Δ floor, SpikeLLM's CLIPMIN (REFERENCE.md §2; models/spikellm_neurons.py MIN_STEP)


def _token_code(x: np.ndarray, group: np.ndarray, n_steps: int, max_code: int,
                min_step: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(codes, Δ, z) of the channels in `group` (bool [C]) of every token x[..., C]; codes valid on the group."""
    lo = np.where(group, x, np.inf).min(axis=-1, keepdims=True)
    hi = np.where(group, x, -np.inf).max(axis=-1, keepdims=True)
    step = np.maximum((hi - lo) / n_steps, min_step)
    zero_point = np.round(-lo / step)
    codes = np.clip(np.round(x / step) + zero_point, 0, max_code)
    return codes, step, zero_point


@dataclass(eq=False)
class GIF(_Extension):
    r"""SpikeLLM's generalized integrate-and-fire neuron with its per-token input code (REFERENCE.md §2.1).

    Per token x[C], channels split by the static ``salient`` mask (Optimal Brain Spiking, §2.2) into two groups:

        non-salient: N = 2^b - 1 intervals, K_g = 1 step,   max code 2^b - 1
        salient:     N = 2^(b+a) - 1,       K_g = K = 2^a,  max code K(L - 1)   (top 2^a - 1 codes clipped)
        Δ = max((max_g x - min_g x) / N, min_step);  z = round(-min_g x / Δ)
        u = clip(round(x / Δ) + z, 0, max code)                       unsigned charge
        K_g GIF steps, L = 2^b levels:  s_k = min(u, L - 1);  u ← u - s_k   (subtractive reset, no leak)
        output y = Δ (Σ_k s_k - z)                                   what the next Linear sees

    Σ_k s_k equals the charge, so the output is the dequantized code; `spikes` gives the events themselves.
    Rounding is half to even. Fields: ``bits`` b, ``addbit`` a, ``salient`` int8 [C] (1 = salient),
    ``min_step`` (Δ floor). L = 2^b (`levels`) and K = 2^a (`steps`) are derived, not stored, so they cannot
    disagree with b and a.
    """

    type_name: ClassVar[str] = f"{NAMESPACE}.GIF"
    bits: int
    addbit: int
    salient: np.ndarray
    min_step: float = MIN_STEP

    def __post_init__(self) -> None:
        self.bits = _as_int(self.bits, self.type_name, "bits", 1, MAX_CODE_BITS)
        self.addbit = _as_int(self.addbit, self.type_name, "addbit", 0, MAX_STEP_BITS)
        self.min_step = _as_float(self.min_step, self.type_name, "min_step")
        self.salient = _as_array(self.salient, self.type_name, "salient", ndim=1, dtype=np.int8)
        if not np.isin(self.salient, (0, 1)).all() or self.salient.size == 0:
            raise NIRFormatError(f"{self.type_name}: field 'salient' must hold one 0 or 1 per channel, got "
                                 f"{self.salient.size} values")
        if self.salient.size > MAX_ELEMENTS:
            raise NIRFormatError(f"{self.type_name}: field 'salient' has {self.salient.size} channels, more than "
                                 f"{MAX_ELEMENTS}")
        if self.min_step <= 0:
            raise NIRFormatError(f"{self.type_name}: field 'min_step' must be > 0, got {self.min_step}")
        shape = np.array([self.salient.size])
        self.input_type = {"input": shape}
        self.output_type = {"output": shape}

    @property
    def levels(self) -> int:
        return 2**self.bits

    @property
    def steps(self) -> int:
        return 2**self.addbit

    def groups(self) -> list[tuple[np.ndarray, int, int, int]]:
        """(channel mask, GIF steps, intervals N, max code) per non-empty group."""
        mask = self.salient.astype(bool)
        b, a = self.bits, self.addbit
        groups = [(~mask, 1, 2**b - 1, 2**b - 1), (mask, self.steps, 2 ** (b + a) - 1, self.steps * (self.levels - 1))]
        return [g for g in groups if g[0].any()]

    def spikes(self, x: np.ndarray) -> np.ndarray:
        """Graded events [K, ..., C]: step k of every channel (non-salient channels fire only at k = 0)."""
        out = np.zeros((self.steps, *x.shape))
        for group, steps, n_steps, max_code in self.groups():
            charge, _, _ = _token_code(x, group, n_steps, max_code, self.min_step)
            for k in range(steps):
                s = np.minimum(charge, self.levels - 1)
                out[k] = np.where(group, s, out[k])
                charge = charge - s
        return out

    def reference(self, x: np.ndarray) -> np.ndarray:
        """Numpy semantics: x [..., C] → Δ (Σ_k s_k - z) per channel group, [..., C]."""
        x = np.asarray(x, dtype=np.float64)
        y = x.copy()
        for group, _, n_steps, max_code in self.groups():
            codes, step, zero_point = _token_code(x, group, n_steps, max_code, self.min_step)
            y = np.where(group, step * (codes - zero_point), y)
        return y


@dataclass(eq=False)
class Quantizer(_Extension):
    r"""Per-token asymmetric uniform quantizer (REFERENCE.md §2.3: SpikeLLM's activation quantizer), on the host.

    Per token x[C]: Δ = max((max x - min x) / (2^b - 1), min_step);  z = round(-min x / Δ);
    q = clip(round(x / Δ) + z, 0, 2^b - 1);  output y = Δ (q - z). Rounding half to even.
    Fields: ``bits`` b, ``shape`` [C], ``min_step``. This is a GIF with no salient channels and one step,
    kept separate because it is not a neuron (no events): the compiler must run it on the host.
    """

    type_name: ClassVar[str] = f"{NAMESPACE}.Quantizer"
    bits: int
    shape: np.ndarray
    min_step: float = MIN_STEP

    def __post_init__(self) -> None:
        self.bits = _as_int(self.bits, self.type_name, "bits", 1, MAX_CODE_BITS)
        self.shape = _as_shape(self.shape, self.type_name)
        self.min_step = _as_float(self.min_step, self.type_name, "min_step")
        if self.min_step <= 0:
            raise NIRFormatError(f"{self.type_name}: field 'min_step' must be > 0, got {self.min_step}")
        self.input_type = {"input": self.shape}
        self.output_type = {"output": self.shape}

    def reference(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        n = 2**self.bits - 1
        codes, step, zero_point = _token_code(x, np.ones(x.shape[-1], dtype=bool), n, n, self.min_step)
        return step * (codes - zero_point)


NEURON_NODES: tuple[type[_Extension], ...] = (GIF, Quantizer)
