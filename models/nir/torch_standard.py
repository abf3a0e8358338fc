"""Torch modules for NIR's standard nodes (Affine, Linear, Scale, Flatten, Threshold, LIF, IF, CubaLIF, LI, I).

Place in the picture (STYLE.md): NIR → *torch*; conventions (trailing-axis shapes, `stateful` modules with
`forward(x, state=None) -> (out, state)`, Euler dt = 1, v starts at 0) are in `torch_modules`' docstring.
"""

from __future__ import annotations

from typing import Any

import nir
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikestack.errors import NIRFormatError

THRESHOLD_TEST_KEY = "spikestack.threshold_test"


def _t(a: np.ndarray) -> Tensor:
    """A float64 tensor of a NIR array, sharing its memory when it already is a writable float64 array (the
    exporters' arrays are): the compiler's float64 calibration copy of SpikeGPT-216M's weights was 1.7 GB and
    5.8 s (bench/compile_published.py). Nothing writes to these modules' weights in place (inference only);
    read-only and other-dtype arrays are copied."""
    a = np.asarray(a)
    if a.dtype == np.float64 and a.flags.writeable and a.flags.c_contiguous:
        return torch.from_numpy(a)
    return torch.from_numpy(np.array(a, dtype=np.float64))


class _Stateless(nn.Module):
    stateful = False


class _Stateful(nn.Module):
    stateful = True


class AffineModule(_Stateless):
    """y = W x + b. Our own map: nirtorch 2.6's default puts the bias on the wrong attribute (§4.3)."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray | None) -> None:
        super().__init__()
        self.weight = nn.Parameter(_t(weight))
        self.bias = None if bias is None else nn.Parameter(_t(bias))

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)


class ScaleModule(_Stateless):
    def __init__(self, scale: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("scale", _t(scale))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


class FlattenModule(_Stateless):
    """NIR Flatten over the node's trailing axes (NIR shapes have no batch axis; nirtorch's default flattens
    from the tensor's axis 0, batch included)."""

    def __init__(self, node: nir.Flatten) -> None:
        super().__init__()
        ndim = len(node.input_type["input"])
        self.start = node.start_dim - ndim if node.start_dim >= 0 else node.start_dim
        self.end = node.end_dim - ndim if node.end_dim >= 0 else node.end_dim

    def forward(self, x: Tensor) -> Tensor:
        return torch.flatten(x, self.start, self.end)


class ThresholdModule(_Stateless):
    def __init__(self, threshold: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("threshold", _t(threshold))

    def forward(self, x: Tensor) -> Tensor:
        return (x > self.threshold).to(x.dtype)


class _Neuron(_Stateful):
    """Shared spike-and-reset of IF, LIF and CubaLIF."""

    def _init_spiking(self, node: nir.NIRNode) -> None:
        self.register_buffer("v_threshold", _t(node.v_threshold))
        self.register_buffer("v_reset", _t(node.v_reset))
        test = (node.metadata or {}).get(THRESHOLD_TEST_KEY, ">")
        test = test.decode() if isinstance(test, bytes) else str(test)  # HDF5 may return bytes (§4.2)
        if test not in (">", ">="):
            raise NIRFormatError(f"{type(node).__name__}: metadata {THRESHOLD_TEST_KEY!r} must be '>' or '>=', "
                                 f"got {test!r}")
        self.greater_equal = test == ">="

    def _fire(self, v: Tensor) -> tuple[Tensor, Tensor]:
        spikes = v >= self.v_threshold if self.greater_equal else v > self.v_threshold
        return spikes.to(v.dtype), torch.where(spikes, self.v_reset.to(v.dtype).expand_as(v), v)


class LIFModule(_Neuron):
    """v ← v + (v_leak - v + R x) / τ; spike; reset to v_reset. Output: spikes; state: v."""

    def __init__(self, node: nir.LIF) -> None:
        super().__init__()
        self.register_buffer("tau", _t(node.tau))
        self.register_buffer("r", _t(node.r))
        self.register_buffer("v_leak", _t(node.v_leak))
        self._init_spiking(node)

    def forward(self, x: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        v = torch.zeros_like(x) if state is None else state
        return self._fire(v + (self.v_leak - v + self.r * x) / self.tau)


class IFModule(_Neuron):
    """v ← v + R x; spike; reset."""

    def __init__(self, node: nir.IF) -> None:
        super().__init__()
        self.register_buffer("r", _t(node.r))
        self._init_spiking(node)

    def forward(self, x: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        v = torch.zeros_like(x) if state is None else state
        return self._fire(v + self.r * x)


class CubaLIFModule(_Neuron):
    """i ← i + (-i + w_in x) / τ_syn;  v ← v + (v_leak - v + R i) / τ_mem (new i);  spike; reset. State (i, v)."""

    def __init__(self, node: nir.CubaLIF) -> None:
        super().__init__()
        for name in ("tau_syn", "tau_mem", "r", "v_leak", "w_in"):
            self.register_buffer(name, _t(np.broadcast_to(getattr(node, name), np.shape(node.r))))
        self._init_spiking(node)

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Any]:
        i, v = (torch.zeros_like(x), torch.zeros_like(x)) if state is None else state
        i = i + (-i + self.w_in * x) / self.tau_syn
        spikes, v = self._fire(v + (self.v_leak - v + self.r * i) / self.tau_mem)
        return spikes, (i, v)


class LIModule(_Stateful):
    """v ← v + (v_leak - v + R x) / τ; output v (no spikes)."""

    def __init__(self, node: nir.LI) -> None:
        super().__init__()
        self.register_buffer("tau", _t(node.tau))
        self.register_buffer("r", _t(node.r))
        self.register_buffer("v_leak", _t(node.v_leak))

    def forward(self, x: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        v = torch.zeros_like(x) if state is None else state
        v = v + (self.v_leak - v + self.r * x) / self.tau
        return v, v


class IntegratorModule(_Stateful):
    """NIR `I`: v ← v + R x; output v."""

    def __init__(self, node: nir.I) -> None:
        super().__init__()
        self.register_buffer("r", _t(node.r))

    def forward(self, x: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        v = self.r * x if state is None else state + self.r * x
        return v, v
