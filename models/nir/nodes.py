"""spikestack's NIR extension nodes, in NIR's own style, and their registration with stock `nir.read`.

NIR 1.0.8 has no graded, signed or multi-level spike and no embedding (REFERENCE.md §4.1), so we add them as
dataclasses that subclass `nir.NIRNode`. Each serialises under a namespaced type string (`spikestack.BiSpike`),
stores only numpy arrays and numbers (metadata `None` and string lists do not round-trip, §4.2), and has its
numpy reference semantics in the docstring. `register()` teaches stock `nir.read` the namespaced types: NIR's
reader looks a type string up in `nir.ir.__all_ir` and `nir.ir`'s globals (`str2NIRNode`), so registering is
adding the class there. Graphs made only of standard nodes never need it and stay plain NIR.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import nir
import nir.ir
import numpy as np

from spikestack.errors import NIRFormatError

NAMESPACE = "spikestack"


def _as_int(value: Any, node: str, field_name: str) -> int:
    arr = np.asarray(value)
    if arr.size != 1 or not np.isfinite(arr).all() or float(arr) != int(arr):
        raise NIRFormatError(f"{node}: field {field_name!r} must be one integer, got {value!r}")
    return int(arr)


def _as_float(value: Any, node: str, field_name: str) -> float:
    arr = np.asarray(value)
    if arr.size != 1 or not np.issubdtype(arr.dtype, np.number) or not np.isfinite(arr).all():
        raise NIRFormatError(f"{node}: field {field_name!r} must be one finite number, got {value!r}")
    return float(arr)


def _as_str(value: Any, node: str, field_name: str) -> str:
    """Strings come back from HDF5 as str or bytes (REFERENCE.md §4.2); accept both, return str."""
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode("utf8")
    if not isinstance(value, str):
        raise NIRFormatError(f"{node}: field {field_name!r} must be a string, got {value!r}")
    return value


def _as_array(value: Any, node: str, field_name: str, *, shape: tuple[int, ...] | None = None,
              ndim: int | None = None, dtype: type = np.float64) -> np.ndarray:
    """A finite numeric array of the given shape or rank; the error names node type and field."""
    try:
        arr = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError):
        raise NIRFormatError(f"{node}: field {field_name!r} is not numeric: {value!r}") from None
    if not np.all(np.isfinite(arr)):
        raise NIRFormatError(f"{node}: field {field_name!r} holds NaN or inf")
    if shape is not None and arr.shape != tuple(shape):
        raise NIRFormatError(f"{node}: field {field_name!r} has shape {arr.shape}, expected {tuple(shape)}")
    if ndim is not None and arr.ndim != ndim:
        raise NIRFormatError(f"{node}: field {field_name!r} must have {ndim} dimension(s), got shape {arr.shape}")
    return arr


def _as_shape(value: Any, node: str, field_name: str = "shape") -> np.ndarray:
    shape = _as_array(value, node, field_name, ndim=1, dtype=np.int64)
    if shape.size == 0 or np.any(shape < 1):
        raise NIRFormatError(f"{node}: field {field_name!r} must be a non-empty list of sizes >= 1, got {value!r}")
    return shape


@dataclass(eq=False)
class _Extension(nir.NIRNode):
    """Base of our nodes: the namespaced type string and a reader that accepts it."""

    type_name: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        ret = super().to_dict()
        ret["type"] = self.type_name
        return ret

    @classmethod
    def from_dict(cls, kwargs: dict[str, Any]) -> nir.NIRNode:
        kwargs = dict(kwargs)
        if kwargs.pop("type", cls.type_name) != cls.type_name:
            raise NIRFormatError(f"{cls.type_name}.from_dict got another type: {kwargs.get('type')!r}")
        # Name the missing or unknown field ourselves: the dataclass would raise a bare TypeError.
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        for name, f in fields.items():
            no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if no_default and name not in kwargs:
                raise NIRFormatError(f"{cls.type_name}: missing field {name!r}")
        unknown = sorted(set(kwargs) - set(fields))
        if unknown:
            raise NIRFormatError(f"{cls.type_name}: unknown field {unknown[0]!r}")
        return cls(**kwargs)


@dataclass(eq=False)
class BiSpike(_Extension):
    r"""Elastic bi-spiking neuron (SpikeLM), signed levels -K..K, T steps per token, state reset every token.

    Per channel, steps t = 0..T-1 of one token, input x_t:

        u_0 = x_0;   u_t = reset_scale · α_{t-1} · (1 - s_{t-1}/K) · u_{t-1} + x_t
        s_t = clip(round_half_even(u_t / α_t), -K, K)
        output o_t = α_t · s_t

    Fields: ``alpha`` [T] float (one amplitude per step, shared by all channels), ``levels`` K,
    ``reset_scale`` (0.25 in SpikeLM), ``shape`` of the channel tensor.
    """

    type_name: ClassVar[str] = f"{NAMESPACE}.BiSpike"
    alpha: np.ndarray
    levels: int
    reset_scale: float
    shape: np.ndarray

    def __post_init__(self) -> None:
        self.alpha = np.asarray(self.alpha, dtype=np.float64).reshape(-1)
        self.shape = np.asarray(self.shape, dtype=np.int64).reshape(-1)
        self.levels = _as_int(self.levels, self.type_name, "levels")
        self.reset_scale = float(self.reset_scale)
        if self.levels < 1:
            raise NIRFormatError(f"{self.type_name}: field 'levels' must be >= 1, got {self.levels}")
        if self.alpha.size == 0 or not np.all(np.isfinite(self.alpha)) or np.any(self.alpha <= 0):
            raise NIRFormatError(f"{self.type_name}: field 'alpha' must be positive and finite, got {self.alpha}")
        self.input_type = {"input": self.shape}
        self.output_type = {"output": self.shape}

    @property
    def steps(self) -> int:
        return int(self.alpha.size)

    def reference(self, x: np.ndarray) -> np.ndarray:
        """Numpy semantics: x [T, ...] (one token) → o [T, ...]."""
        u = np.zeros_like(x, dtype=np.float64)[0]
        out = np.empty_like(x, dtype=np.float64)
        s = np.zeros_like(u)
        for t in range(self.steps):
            u = x[t] if t == 0 else self.reset_scale * self.alpha[t - 1] * (1 - s / self.levels) * u + x[t]
            s = np.clip(np.round(u / self.alpha[t]), -self.levels, self.levels)
            out[t] = self.alpha[t] * s
        return out


@dataclass(eq=False)
class Embedding(_Extension):
    r"""Token embedding lookup: ids [n] (integers in [0, V)) → weight[ids] [n, D]. Runs on the host."""

    type_name: ClassVar[str] = f"{NAMESPACE}.Embedding"
    weight: np.ndarray  # [V, D]
    context: int  # number of ids per input

    def __post_init__(self) -> None:
        self.weight = np.asarray(self.weight)
        self.context = _as_int(self.context, self.type_name, "context")
        if self.weight.ndim != 2:
            raise NIRFormatError(f"{self.type_name}: field 'weight' must be [V, D], got shape {self.weight.shape}")
        if not np.all(np.isfinite(self.weight)):
            raise NIRFormatError(f"{self.type_name}: field 'weight' holds NaN or inf")
        self.input_type = {"input": np.array([self.context])}
        self.output_type = {"output": np.array([self.context, self.weight.shape[1]])}

    def reference(self, ids: np.ndarray) -> np.ndarray:
        return self.weight[np.asarray(ids, dtype=np.int64)]


EXTENSION_NODES: tuple[type[_Extension], ...] = (BiSpike, Embedding)


def all_extension_nodes() -> tuple[type[_Extension], ...]:
    """Every spikestack node class: the two spine nodes here plus those of `neurons` and `ops`."""
    from .neurons import NEURON_NODES
    from .ops import OP_NODES

    return EXTENSION_NODES + NEURON_NODES + OP_NODES


def register() -> None:
    """Make stock `nir.read` accept our namespaced node types (idempotent)."""
    known = vars(nir.ir)["__all_ir"]
    for cls in all_extension_nodes():
        if cls.type_name not in known:
            known.append(cls.type_name)
        vars(nir.ir)[cls.type_name] = cls
