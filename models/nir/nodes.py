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
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import nir
import nir.ir
import numpy as np

from spikestack.errors import NIRFormatError

NAMESPACE = "spikestack"


# Sanity caps of the file format, checked once at the border so that nothing inside meets a value it cannot mean.
# They are not hardware limits: those are per target (compiler/targets/*.toml) and checked by the compiler.
MAX_MAGNITUDE = 1e9  # |value| of any numeric field. Trained weights, biases, thresholds and time constants (s) sit
# within ±1e3; 1e9 leaves six orders of headroom while every product the fixed-point passes form (value · 2^24 state
# scale · fan-in, or a ratio of two fields) stays far below float64's 1.8e308, so no inf reaches the artifact.
MAX_PAYLOAD_BITS = 24  # the widest graded-spike payload of any target (Lava's Loihi 2, REFERENCE.md §5.3)
# K of a bi-spike -K..K: the compiled neuron holds a threshold per level and a carry factor per level and step, so
# its tables grow with K (and compile time with them: K = 2^23 took 92 s to reach its payload-width refusal).
# SpikeLM uses K <= 4; 1024 (an 11-bit signed level) is far above any trained model and matches the checkpoint cap.
MAX_BISPIKE_LEVELS = 1024
MAX_CODE_BITS = 24  # GIF/Quantizer codes 2^b - 1 stay exact in float32 (24-bit significand) and within the payload
MAX_STEP_BITS = 10  # GIF steps per token K = 2^a <= 1024; SpikeLLM uses K <= 4, each step is one chip step
MAX_STEPS = 2**16  # time steps per token or sample: the runtime loops over them for every token
MAX_TOKENS = 2**16  # ids per input (context); attention is quadratic in it
MAX_ELEMENTS = 2**28  # values in one declared token tensor (`shape`): 2 GiB as float64, 16x a 16M-neuron system


def _numeric(value: Any, node: str, field_name: str) -> np.ndarray:
    """The value as an array of bool/int/float, refusing strings, objects and complex numbers by name."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        got = {"U": "text", "S": "text", "O": "objects", "c": "complex numbers"}.get(arr.dtype.kind, arr.dtype.name)
        raise NIRFormatError(f"{node}: field {field_name!r} must be numeric, got {got} {value!r:.60}")
    return arr


def _in_range(arr: np.ndarray, node: str, field_name: str) -> None:
    """Finite and within MAX_MAGNITUDE. From the minimum and maximum alone (both propagate NaN; ±inf is one of
    them): two reads and no temporaries, where a finiteness mask and an |x| copy cost 1.3 s for SpikeGPT-216M's
    1.7 GB of float64 weights (bench/compile_published.py)."""
    if not arr.size:
        return
    low, high = float(np.min(arr)), float(np.max(arr))
    if arr.dtype.kind == "f" and not (math.isfinite(low) and math.isfinite(high)):
        raise NIRFormatError(f"{node}: field {field_name!r} holds NaN or inf")
    magnitude = max(abs(low), abs(high))
    if magnitude > MAX_MAGNITUDE:
        raise NIRFormatError(f"{node}: field {field_name!r} holds {magnitude:.3g}, beyond the "
                             f"magnitude cap {MAX_MAGNITUDE:.0e}")


def _as_int(value: Any, node: str, field_name: str, low: int | None = None, high: int | None = None) -> int:
    """One integer (an integral float is accepted, as HDF5 writers differ), optionally within [low, high]."""
    arr = _numeric(value, node, field_name)
    if arr.size != 1 or not np.isfinite(arr).all() or float(arr.item()) != int(arr.item()):
        raise NIRFormatError(f"{node}: field {field_name!r} must be one integer, got {value!r:.80}")
    number = int(arr.item())
    if (low is not None and number < low) or (high is not None and number > high):
        raise NIRFormatError(f"{node}: field {field_name!r} must be in [{low}, {high}], got {number}")
    _in_range(arr, node, field_name)
    return number


def _as_float(value: Any, node: str, field_name: str) -> float:
    arr = _numeric(value, node, field_name)
    if arr.size != 1:
        raise NIRFormatError(f"{node}: field {field_name!r} must be one finite number, got {value!r:.80}")
    _in_range(arr, node, field_name)
    return float(arr.item())


def _as_str(value: Any, node: str, field_name: str) -> str:
    """Strings come back from HDF5 as str or bytes (REFERENCE.md §4.2); accept both, return str."""
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value.item()
    if isinstance(value, bytes):
        try:
            value = value.decode("utf8")
        except UnicodeDecodeError:
            raise NIRFormatError(f"{node}: field {field_name!r} is not UTF-8 text") from None
    if not isinstance(value, str):
        raise NIRFormatError(f"{node}: field {field_name!r} must be a string, got {value!r:.80}")
    return value


def _as_array(value: Any, node: str, field_name: str, *, shape: tuple[int, ...] | None = None,
              ndim: int | None = None, dtype: type | None = np.float64) -> np.ndarray:
    """A finite numeric array within the magnitude cap, of the given shape or rank; the error names node type and
    field. `dtype=None` keeps the stored dtype; an integer dtype must hold the values exactly (no wrap-around)."""
    raw = _numeric(value, node, field_name)
    _in_range(raw, node, field_name)
    arr = raw if dtype is None else raw.astype(dtype)
    if arr.dtype.kind in "iu" and not np.array_equal(arr, raw):
        raise NIRFormatError(f"{node}: field {field_name!r} must hold {np.dtype(dtype).name} integers")
    if shape is not None and arr.shape != tuple(shape):
        raise NIRFormatError(f"{node}: field {field_name!r} has shape {arr.shape}, expected {tuple(shape)}")
    if ndim is not None and arr.ndim != ndim:
        raise NIRFormatError(f"{node}: field {field_name!r} must have {ndim} dimension(s), got shape {arr.shape}")
    return arr


def _as_shape(value: Any, node: str, field_name: str = "shape") -> np.ndarray:
    shape = _as_array(value, node, field_name, ndim=1, dtype=np.int64)
    if shape.size == 0 or np.any(shape < 1):
        raise NIRFormatError(f"{node}: field {field_name!r} must be a non-empty list of sizes >= 1, got {value!r}")
    if math.prod(int(s) for s in shape) > MAX_ELEMENTS:
        raise NIRFormatError(f"{node}: field {field_name!r} {shape.tolist()} declares more than {MAX_ELEMENTS} values")
    return shape


_DEFINED: list[type[_Extension]] = []  # every concrete extension class, in definition order


def _register(cls: type[_Extension]) -> None:
    """NIR's reader looks a type string up in `nir.ir.__all_ir` and `nir.ir`'s globals (`str2NIRNode`)."""
    known = vars(nir.ir)["__all_ir"]
    if cls.type_name not in known:
        known.append(cls.type_name)
    vars(nir.ir)[cls.type_name] = cls


@dataclass(eq=False)
class _Extension(nir.NIRNode):
    """Base of our nodes: the namespaced type string and a reader that accepts it."""

    type_name: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.type_name:  # abstract bases have none; a redefinition (module reload) replaces the old class
            _DEFINED[:] = [c for c in _DEFINED if c.type_name != cls.type_name] + [cls]
            _register(cls)

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
        self.alpha = _as_array(self.alpha, self.type_name, "alpha").reshape(-1)
        self.shape = _as_shape(np.asarray(self.shape).reshape(-1), self.type_name)
        self.levels = _as_int(self.levels, self.type_name, "levels", 1, MAX_BISPIKE_LEVELS)
        self.reset_scale = _as_float(self.reset_scale, self.type_name, "reset_scale")
        if self.alpha.size == 0 or self.alpha.size > MAX_STEPS or np.any(self.alpha <= 0):
            raise NIRFormatError(f"{self.type_name}: field 'alpha' must be 1..{MAX_STEPS} positive amplitudes, got "
                                 f"{self.alpha.size} values, min {self.alpha.min(initial=np.inf):.3g}")
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
        self.weight = _as_array(self.weight, self.type_name, "weight", ndim=2, dtype=None)
        self.context = _as_int(self.context, self.type_name, "context", 1, MAX_TOKENS)
        if 0 in self.weight.shape:
            raise NIRFormatError(f"{self.type_name}: field 'weight' must be [V, D] with V, D >= 1, got "
                                 f"{self.weight.shape}")
        self.input_type = {"input": np.array([self.context])}
        self.output_type = {"output": np.array([self.context, self.weight.shape[1]])}

    def reference(self, ids: np.ndarray) -> np.ndarray:
        return self.weight[np.asarray(ids, dtype=np.int64)]


EXTENSION_NODES: tuple[type[_Extension], ...] = (BiSpike, Embedding)


def all_extension_nodes() -> tuple[type[_Extension], ...]:
    """Every spikestack node class defined so far: the two spine nodes here, and those of `neurons` and `ops` once
    imported (io.py imports both, so every reader knows all). Listing them here by import would be a cycle."""
    return tuple(_DEFINED)


def register() -> None:
    """Make stock `nir.read` accept our namespaced node types (idempotent; each class also registers itself when
    it is defined)."""
    for cls in _DEFINED:
        _register(cls)
