"""The manifest's schema as data: one spec per field of each artifact kind, checked before anything is built.

Why a schema: `load` is the border between an artifact folder (anyone's) and runtime/ and simulators/, which trust
the program they get. A re-hashed manifest with `steps: -3`, a string where a table should be or a population of
10^12 neurons must fail here, as one `ArtifactError` naming manifest.json, the field's JSON path, the value and
what is allowed — not deep inside an executor. Types and ranges live here; relations between fields (shapes,
names that exist, core indices) in `compiler/artifact_check.py`.

The field tables mirror the IR dataclasses (compiler/ir.py, compiler/hybrid/ir.py); fields with a default there
are optional here. `tests/compiler/test_artifact_safety.py` checks the two stay in step.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, NoReturn

import numpy as np

from spikestack.errors import ArtifactError

from .artifact_files import ARRAY_DTYPES, plain_relative
from .encodings import ENCODINGS
from .kinds import KINDS
from .targets import Target, target_from_fields

MAX_STEPS = 1 << 20  # steps per token/sample or per call; executors allocate [tokens, steps, neurons]
MAX_NEURONS = 1 << 24  # neurons of one population or layer
MAX_ITEMS = 1 << 20  # populations, layers, cores, stages, names per list
MAX_ARRAY_BYTES = 16 << 30  # one array (the 216M shape's largest is 0.8 GB)
MAX_NAME_CHARS = 512
VOCAB_MAX = 1 << 24
LIF_NEURONS = ("LIF", "CubaLIF", "IF", "LI", "Threshold")  # NIR node kinds (compiler/ir.py LIFPop)
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass
class Ctx:
    """What a check needs besides the value: the manifest's path (for messages) and its array table."""

    where: str
    arrays: dict[str, Any] = field(default_factory=dict)


def show(value: Any) -> str:
    """A value as JSON, cut short: messages stay one readable line whatever the manifest holds."""
    try:
        text = json.dumps(value, sort_keys=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def fail(ctx: Ctx, path: str, value: Any, allowed: str) -> NoReturn:
    raise ArtifactError(f"{ctx.where}: {path or '(top level)'} = {show(value)}; allowed: {allowed}")


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key)}]"


class Spec:
    def describe(self) -> str:
        raise NotImplementedError

    def check(self, value: Any, path: str, ctx: Ctx) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class Anything(Spec):
    """Checked elsewhere (the report, and the fields `artifact.py` checks before the schema)."""

    def describe(self) -> str:
        return "any JSON value"

    def check(self, value: Any, path: str, ctx: Ctx) -> None:
        return None


@dataclass(frozen=True)
class Int(Spec):
    lo: int
    hi: int

    def describe(self) -> str:
        return f"an integer in {self.lo}..{self.hi}"

    def check(self, value: Any, path: str, ctx: Ctx) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not self.lo <= value <= self.hi:
            fail(ctx, path, value, self.describe())


@dataclass(frozen=True)
class Real(Spec):
    positive: bool = False

    def describe(self) -> str:
        return "a finite number > 0" if self.positive else "a finite number"

    def check(self, value: Any, path: str, ctx: Ctx) -> None:  # the parser already refused NaN and Infinity
        if isinstance(value, bool) or not isinstance(value, (int, float)) or abs(value) > 1e300 \
                or (self.positive and not value > 0):
            fail(ctx, path, value, self.describe())


@dataclass(frozen=True)
class Name(Spec):
    """A plain name: a non-empty string of printable characters (layer, tensor, target and family names)."""

    def describe(self) -> str:
        return f"a plain name (1..{MAX_NAME_CHARS} printable characters)"

    def check(self, value: Any, path: str, ctx: Ctx) -> None:
        if not isinstance(value, str) or not 0 < len(value) <= MAX_NAME_CHARS or not value.isprintable():
            fail(ctx, path, value, self.describe())


@dataclass(frozen=True)
class Choice(Spec):
    options: tuple[Any, ...]

    def describe(self) -> str:
        return "one of " + ", ".join(show(o) for o in self.options)

    def check(self, value: Any, path: str, ctx: Ctx) -> None:
        if isinstance(value, (dict, list)) or value not in self.options or isinstance(value, bool):
            fail(ctx, path, value, self.describe())


@dataclass(frozen=True)
class Hex64(Spec):
    def describe(self) -> str:
        return "a sha256 as 64 lowercase hex digits"

    def check(self, value: Any, path: str, ctx: Ctx) -> None:
        if not isinstance(value, str) or not _HEX64.fullmatch(value):
            fail(ctx, path, value, self.describe())


@dataclass(frozen=True)
class File(Spec):
    """A file of the artifact: a plain relative path in `folder` with `suffix` (what `save` writes)."""

    folder: str
    suffix: str

    def describe(self) -> str:
        return f"a relative path {self.folder}/<name>{self.suffix} inside the artifact (no '..', not absolute)"

    def check(self, value: Any, path: str, ctx: Ctx) -> None:
        parts = plain_relative(value)
        if parts is None or len(parts) != 2 or parts[0] != self.folder or not parts[1].endswith(self.suffix):
            fail(ctx, path, value, self.describe())


@dataclass(frozen=True)
class Array(Spec):
    """`{"array": KEY}`: an entry of the manifest's `arrays` table with an integer or float dtype and `ndim` axes."""

    kind: str  # "int" or "float"
    ndim: int

    def describe(self) -> str:
        return f'{{"array": KEY}} naming a {self.ndim}-D {self.kind} entry of "arrays"'

    def check(self, value: Any, path: str, ctx: Ctx) -> None:
        key = value.get("array") if isinstance(value, dict) and len(value) == 1 else None
        meta = ctx.arrays.get(key) if isinstance(key, str) else None
        if meta is None:
            fail(ctx, path, value, self.describe())
        dtype_ok = meta["dtype"].startswith("float") if self.kind == "float" else "int" in meta["dtype"]
        if not dtype_ok or len(meta["shape"]) != self.ndim:
            fail(ctx, path, value, f"{self.describe()}; arrays[{json.dumps(key)}] is {meta['dtype']} {meta['shape']}")


@dataclass(frozen=True)
class Opt(Spec):
    inner: Spec

    def describe(self) -> str:
        return f"null or {self.inner.describe()}"

    def check(self, value: Any, path: str, ctx: Ctx) -> None:
        if value is not None:
            self.inner.check(value, path, ctx)


@dataclass(frozen=True)
class ListOf(Spec):
    item: Spec
    lo: int = 0
    hi: int = MAX_ITEMS

    def describe(self) -> str:
        return f"a list of {self.lo}..{self.hi} items"

    def check(self, value: Any, path: str, ctx: Ctx) -> None:
        if not isinstance(value, list) or not self.lo <= len(value) <= self.hi:
            fail(ctx, path, value, self.describe())
        for i, item in enumerate(value):
            self.item.check(item, join(path, i), ctx)


@dataclass(frozen=True)
class Obj(Spec):
    required: dict[str, Spec]
    optional: dict[str, Spec] = field(default_factory=dict)

    def describe(self) -> str:
        return "an object with fields " + ", ".join(sorted({*self.required, *self.optional}))

    def check(self, value: Any, path: str, ctx: Ctx) -> None:
        if not isinstance(value, dict):
            fail(ctx, path, value, self.describe())
        for key, spec in self.required.items():
            if key not in value:
                raise ArtifactError(f"{ctx.where}: {join(path, key)} is missing; required: {spec.describe()}")
            spec.check(value[key], join(path, key), ctx)
        for key, item in value.items():
            if key in self.optional:
                self.optional[key].check(item, join(path, key), ctx)
            elif key not in self.required:
                raise ArtifactError(f"{ctx.where}: {join(path, key)} is not a field here; allowed: "
                                    f"{', '.join(sorted({*self.required, *self.optional}))}")


@dataclass(frozen=True)
class Tagged(Spec):
    """An object whose `tag` field picks its variant (population and host-input kinds)."""

    tag: str
    variants: dict[str, Obj]

    def describe(self) -> str:
        return f"an object with {self.tag!r} one of {', '.join(self.variants)}"

    def check(self, value: Any, path: str, ctx: Ctx) -> None:
        if not isinstance(value, dict):
            fail(ctx, path, value, self.describe())
        tag = value.get(self.tag)
        if not isinstance(tag, str) or tag not in self.variants:
            fail(ctx, join(path, self.tag), tag, Choice(tuple(self.variants)).describe())
        self.variants[tag].check({k: v for k, v in value.items() if k != self.tag}, path, ctx)


@dataclass(frozen=True)
class MapOf(Spec):
    value: Spec

    def describe(self) -> str:
        return "an object of plain names"

    def check(self, value: Any, path: str, ctx: Ctx) -> None:
        if not isinstance(value, dict) or len(value) > MAX_ITEMS:
            fail(ctx, path, value, self.describe())
        for key, item in value.items():
            Name().check(key, join(path, key), ctx)
            self.value.check(item, join(path, key), ctx)


def embedded_target(value: Any, path: str, ctx: Ctx) -> Target:
    """The target an artifact embeds, built and checked by the one function target files go through
    (`compiler/targets.py`): an edited manifest passes exactly the checks a `--target` file passes."""
    if not isinstance(value, dict):
        fail(ctx, path, value, "an object with the fields of a target (compiler/targets.py)")
    return target_from_fields(value, lambda key: f"{ctx.where}: {join(path, key)}", ArtifactError)


@dataclass(frozen=True)
class TargetFields(Spec):
    """`target_spec`: the whole target the program was compiled for (`Target.to_fields`; the chip mesh fields
    chips_x, chips_y only where they differ from the one-row default, so older manifests still load)."""

    def describe(self) -> str:
        return "an object with the fields of a target (compiler/targets.py)"

    def check(self, value: Any, path: str, ctx: Ctx) -> None:
        embedded_target(value, path, ctx)


NAME, REAL, POSITIVE = Name(), Real(), Real(positive=True)
NAMES = ListOf(NAME)
# LIF fields: the widest any target allows (decay_bits <= 24; state_bits <= 32 with no shift); the verifier checks
# them against the program's own target (compiler/verify.py `verify_lif_fields`)
LAVA_DECAY, LAVA_VTH = Int(0, (1 << 24) - 1), Int(0, (1 << 31) - 1)
HEADER = {"format": Anything(), "version": Anything(), "kind": Anything(), "content_sha256": Hex64(),
          "report": Anything(), "arrays": Anything(), "cores": ListOf(Obj(
              {"index": Int(0, MAX_ITEMS), "pop": NAME, "lo": Int(0, MAX_NEURONS), "hi": Int(1, MAX_NEURONS),
               "synaptic_memory_bits": Int(0, 1 << 48), "axons_in": Int(0, 1 << 32)},
              {**{k: Int(-1, 1 << 20) for k in ("chip", "x", "y", "slot")},
               "in_lo": Int(0, 1 << 32), "in_hi": Int(-1, 1 << 32)}), lo=1)}

ARRAY_META = Obj({"file": File("arrays", ".npy"), "dtype": Choice(ARRAY_DTYPES), "shape": ListOf(Int(0, 1 << 40), 0, 8),
                  "sha256": Hex64()})

CHAIN = Obj({
    **HEADER, "target": NAME, "target_spec": TargetFields(), "steps": Int(1, MAX_STEPS), "input_pop": Opt(NAME),
    "host_input": Tagged("kind", {
        "embedding": Obj({"name": NAME, "table": Array("int", 2), "context": Int(1, 1 << 16), "unit": POSITIVE}),
        "spikes": Obj({"name": NAME, "size": Int(1, MAX_NEURONS)})}),
    "populations": ListOf(Tagged("kind", {
        "bispike": Obj({"name": NAME, "size": Int(1, MAX_NEURONS), "levels": Int(1, 127),
                        "thresholds": Array("int", 2), "carry": Array("int", 2), "carry_shift": Int(1, 62),
                        "amplitude": Array("int", 1), "bias": Array("int", 1), "state_unit": POSITIVE,
                        "amplitude_unit": POSITIVE}),
        "readout": Obj({"name": NAME, "size": Int(1, MAX_NEURONS), "state_unit": POSITIVE,
                        "host_bias": Array("float", 1)}),
        "lif": Obj({"name": NAME, "size": Int(1, MAX_NEURONS), "du": LAVA_DECAY, "dv": LAVA_DECAY, "vth": LAVA_VTH,
                    "bias_mant": Array("int", 1), "bias_exp": Array("int", 1), "state_unit": POSITIVE},
                   {"neuron": Choice(LIF_NEURONS)})}), lo=1),
    "projections": ListOf(Obj(
        {"name": NAME, "src": NAME, "dst": NAME, "weight": Array("int", 2), "weight_exp": Int(-8, 7),
         "message_bits": Int(0, 32)},
        {"encoding": Choice(ENCODINGS), "delay": Opt(Array("int", 2)), "gain": Opt(Array("int", 1))})),
}, {"timing": Choice(("token", "delayed")),
    "host_programs": ListOf(Obj({"name": Choice(("encode", "decode")), "file": File("host", ".onnx"),
                                 "sha256": Hex64()}), 0, 2)})

_STAGE = Obj({"index": Int(0, MAX_ITEMS), "inputs": NAMES, "outputs": NAMES, "state_in": NAMES, "state_out": NAMES,
              "ops": NAMES, "macs_per_position": Int(0, 1 << 62), "file": File("host", ".onnx"), "sha256": Hex64()})
_STATE = Obj({"name": NAME, "shape": ListOf(Int(0, MAX_NEURONS), 0, 8), "init": REAL})


def _layer_variants() -> dict[str, Obj]:
    """One schema per chip-layer kind: `QChipLayer`'s fields plus the kind's own (`ChipKind.manifest_fields`), so an
    entry holding another kind's field, or missing one of its own, is refused by name."""
    required = {"name": NAME, "width": Int(1, MAX_NEURONS), "steps": Int(1, MAX_STEPS), "input": NAME,
                "output": NAME, "in_unit": REAL, "payload_unit": REAL, "segment": Int(0, MAX_ITEMS)}
    optional = {"levels": Int(1, 1 << 15), "source": Opt(NAME), "bias": Opt(Array("int", 1)),
                "projection": Opt(Obj({"name": NAME, "weight": Array("int", 2), "unit": REAL,
                                       "message_bits": Int(0, 32), "groups": Array("int", 1),
                                       "n_groups": Int(1, 1 << 15)},
                                      {"bias": Opt(Array("float", 1)), "encoding": Choice(ENCODINGS)}))}
    variants = {}
    for name, kind in KINDS.items():
        own_required, own_optional = kind.manifest_fields()
        variants[name] = Obj({**required, **own_required}, {**optional, **own_optional})
    return variants


HYBRID = Obj({
    **HEADER, "family": NAME, "target": NAME, "target_spec": TargetFields(),
    "time_axis": Choice(("tokens", "steps", "sequence")),
    "steps_per_token": Int(1, MAX_STEPS), "vocab_size": Int(1, VOCAB_MAX), "input_name": NAME, "output_name": NAME,
    "max_positions": Int(0, 1 << 24),
    "layers": ListOf(Tagged("kind", _layer_variants()), lo=1),
    "stages": ListOf(_STAGE, lo=2), "states": ListOf(_STATE),
}, {"decode_stages": ListOf(_STAGE), "decode_states": ListOf(_STATE),
    "readout": Choice(("mean_over_steps", "last_step")), "input_window": Int(0, 1 << 16)})


def check_array_table(table: Any, ctx: Ctx) -> None:
    """`arrays`: every entry names its own file, a numeric dtype and a shape whose bytes stay under the cap."""
    MapOf(ARRAY_META).check(table, "arrays", ctx)
    files: dict[str, str] = {}
    for key, meta in table.items():
        path = join("arrays", key)
        size = np.dtype(meta["dtype"]).itemsize
        for n in meta["shape"]:
            size *= n
        if size > MAX_ARRAY_BYTES:
            fail(ctx, join(path, "shape"), meta["shape"], f"at most {MAX_ARRAY_BYTES} bytes of {meta['dtype']}")
        if meta["file"] in files:
            other = join("arrays", files[meta["file"]])
            fail(ctx, join(path, "file"), meta["file"], f"a file of its own, not also {other}'s")
        files[meta["file"]] = key
    ctx.arrays = table


def check_schema(manifest: dict[str, Any], ctx: Ctx) -> None:
    """Types and ranges of every field, per kind (the kind itself was checked by `artifact.py`)."""
    check_array_table(manifest.get("arrays"), ctx)
    (HYBRID if manifest["kind"] == "hybrid" else CHAIN).check(manifest, "", ctx)
