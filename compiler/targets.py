"""Hardware targets as data: `compiler/targets/*.toml` loaded into a frozen `Target`.

Both the compiler (limits, fixed-point widths) and the runtime and simulator (widths, mesh geometry) read targets;
code holds no hardware constants. Every number in a target file has a `source_<field>` line beside it; loading
refuses a file without one. A compiled program carries the whole Target it was compiled for (`target_of`), and the
artifact stores it, so a program compiled for a user's `.toml` runs and simulates where that file does not exist.

A target is untrusted input twice: a target file (`--target my.toml`) and the copy embedded in an artifact's
manifest. Both are built by `target_from_fields`, which checks every field, once, against a range that keeps the
compiler and the runtime meaningful and fast: a 200-bit state would overflow the int64 fixed-point path, a
billion-tile mesh would stall placement, a name with a slash would later be looked up as a path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from spikestack.datafiles import available, integer, is_plain_name, read_data_file, table
from spikestack.errors import CompileError, SpikestackError

TARGET_DIR = Path(__file__).parent / "targets"
NEURON_MODELS = ("cuba_lif", "programmable")
MAX_CHIP_CORES = 4096  # Loihi 1 and 2 have 128; placement and routing tables scale with cores and tiles
MAX_MESH_TILES = 4096
DEFAULT_PROFILE = "loihi1_sanafe_calibrated"

# Target field → (TOML table, TOML key, lo, hi, why the range); ranges are wide enough for any Loihi-style chip,
# narrow enough for the int64 fixed-point runtime (products of ≤32-bit weights and ≤32-bit payloads, a ≤32-bit
# state times a ≤24-bit decay factor) and a placement that finishes.
FIELDS: dict[str, tuple[str, str, int, int, str]] = {
    "chip_cores": ("chip", "cores", 1, MAX_CHIP_CORES, "cores per chip; Loihi 2 has 128"),
    "mesh_x": ("chip", "mesh_x", 1, MAX_MESH_TILES, "tiles along x; at most 4096 tiles per chip"),
    "mesh_y": ("chip", "mesh_y", 1, MAX_MESH_TILES, "tiles along y; at most 4096 tiles per chip"),
    "cores_per_tile": ("chip", "cores_per_tile", 1, 64, "Loihi has 4 cores per tile"),
    "max_neurons": ("core", "max_neurons", 1, 1 << 20, "neurons per core; Loihi 2 has 8192"),
    "synaptic_memory_bits": ("core", "synaptic_memory_bits", 1, 1 << 32, "bits per core; Loihi has 1 Mbit"),
    "max_axons_in": ("core", "max_axons_in", 1, 1 << 20, "input axons per core; Loihi has 4096"),
    "max_axons_out": ("core", "max_axons_out", 1, 1 << 20, "output axons per core; Loihi has 4096"),
    "weight_mantissa_bits": ("numerics", "weight_mantissa_bits", 1, 32, "Loihi weights have 1-9 bits"),
    "state_bits": ("numerics", "state_bits", 8, 32,
                   "the fixed-point runtime holds state in int64 arithmetic; Loihi has 24"),
    "max_payload_bits": ("numerics", "max_payload_bits", 1, 32, "1 = binary spikes; Loihi 2 graded spikes have 24"),
    "decay_bits": ("numerics", "decay_bits", 1, 24, "Loihi decays have 12"),
    "activation_shift": ("numerics", "activation_shift", 0, 16, "Loihi shifts inputs and thresholds by 6"),
}
MESH_KEYS = ("mesh_x", "mesh_y", "cores_per_tile")  # one `source_mesh` line may cite all three
TEXT_FIELDS = ("name", "description", "default_profile")
# A multi-chip system: chips_x × chips_y chips on a 2-D chip mesh (the optional [system] table). Loihi's mesh
# addressing reaches 16,384 chips (Davies et al., IEEE Micro 2018). A target without [system] keeps the layout
# placement always had: up to 64 chips abutting along x. Fields at these defaults are left out of `to_fields`, so
# an artifact compiled for a one-chip target is byte-identical to one compiled before the fields existed, and such
# an artifact still loads.
MAX_SYSTEM_CHIPS = 16384
MAX_GLOBAL_TILES = 1 << 20  # tiles along one axis of the whole system: the artifact's core x, y bound
SYSTEM_FIELDS: dict[str, tuple[str, int, str]] = {
    "chips_x": ("chips_x", 64, "chips along x of the system's chip mesh"),
    "chips_y": ("chips_y", 1, "chips along y of the system's chip mesh"),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    name: str
    description: str
    default_profile: str
    chip_cores: int
    mesh_x: int  # tiles along x per chip
    mesh_y: int
    cores_per_tile: int
    max_neurons: int  # per core
    synaptic_memory_bits: int  # per core
    max_axons_in: int  # distinct presynaptic neurons per core
    max_axons_out: int  # distinct (neuron, destination core) routes per core
    weight_mantissa_bits: int
    state_bits: int  # neuron state (u, v, accumulators): saturates or wraps at this signed width
    max_payload_bits: int  # 1 = binary spikes only
    decay_bits: int  # decay and carry factors are fractions of 2^decay_bits (Lava: x·(4096 − d) >> 12)
    activation_shift: int  # the LIF's input and threshold are shifted left by this before meeting the state
    neuron_models: tuple[str, ...]  # "cuba_lif" (fixed Loihi compartment), "programmable" (microcode)
    chips_x: int = 64  # chips along x of the system's chip mesh (SYSTEM_FIELDS; default: the legacy row of 64)
    chips_y: int = 1
    path: str = field(default="", compare=False)  # the file it was read from; "" when embedded in an artifact

    @property
    def chips(self) -> int:
        """Chips in the system (chips_x × chips_y)."""
        return self.chips_x * self.chips_y

    @property
    def cores_per_chip(self) -> int:
        """Cores placement puts on one chip: its cores, and at most the slots of its tile mesh."""
        return min(self.chip_cores, self.mesh_x * self.mesh_y * self.cores_per_tile)

    @property
    def state_max(self) -> int:
        """Largest signed state value, 2^(bits-1) - 1 (saturation bound)."""
        return (1 << (self.state_bits - 1)) - 1

    @property
    def decay_unity(self) -> int:
        """2^decay_bits: a decay field d keeps x·(unity − d)/unity, a carry factor c scales by c/unity."""
        return 1 << self.decay_bits

    @property
    def activation_max(self) -> int:
        """Largest x with x << activation_shift inside the signed state: the bound of the LIF's input a_in and of
        its threshold mantissa (Lava: 2^17 − 1, its 17-bit vth)."""
        return (1 << (self.state_bits - 1 - self.activation_shift)) - 1

    def to_fields(self) -> dict[str, Any]:
        """The fields as plain JSON values, without the local `path` (what an artifact's manifest stores)."""
        out = asdict(self)
        del out["path"]
        out["neuron_models"] = list(self.neuron_models)
        for key, (_, default, _) in SYSTEM_FIELDS.items():
            if out[key] == default:  # module comment at SYSTEM_FIELDS: one-chip artifacts stay byte-identical
                del out[key]
        return out


def available_targets() -> list[str]:
    return available(TARGET_DIR)


def target_from_fields(values: Mapping[str, Any], where: Callable[[str], str], error: type[SpikestackError],
                       path: str = "") -> Target:
    """The one place a Target is built and checked, from its fields by name (`Target.to_fields`): the TOML loader
    and the artifact loader both call it, so an embedded target passes exactly the checks a target file passes.
    `where(field)` names a field in messages (file, table, key); `error` is the family to raise."""
    expected = (*TEXT_FIELDS, *FIELDS, "neuron_models")
    for key in expected:
        if key not in values:
            raise error(f"{where(key)} is missing")
    unknown = sorted(set(values) - set(expected) - set(SYSTEM_FIELDS))
    if unknown:
        raise error(f"{where(unknown[0])} is not a target field; fields: {', '.join(expected)}")
    for key in ("name", "default_profile"):
        value = values[key]
        if not isinstance(value, str) or not is_plain_name(value):
            raise error(f"{where(key)} = {value!r} must be a plain name (letters, digits, _ . -; at most 64 "
                        "characters; never a path)")
    if not isinstance(values["description"], str):
        raise error(f"{where('description')} must be a string, got {values['description']!r}")
    ints = {key: integer(values[key], where(key), lo, hi, error, why) for key, (_, _, lo, hi, why) in FIELDS.items()}
    tiles = ints["mesh_x"] * ints["mesh_y"]
    if tiles > MAX_MESH_TILES:
        raise error(f"{where('mesh_x')} x mesh_y = {ints['mesh_x']} x {ints['mesh_y']} = {tiles} tiles exceeds "
                    f"{MAX_MESH_TILES} per chip")
    if ints["cores_per_tile"] > ints["chip_cores"]:
        raise error(f"{where('cores_per_tile')} = {ints['cores_per_tile']} exceeds cores = {ints['chip_cores']}")
    if ints["activation_shift"] > ints["state_bits"] - 2:
        raise error(f"{where('activation_shift')} = {ints['activation_shift']} leaves no threshold bits in the "
                    f"{ints['state_bits']}-bit state (at most state_bits - 2 = {ints['state_bits'] - 2})")
    models = values["neuron_models"]
    if not isinstance(models, (list, tuple)) or not models or not all(m in NEURON_MODELS for m in models):
        raise error(f"{where('neuron_models')} must be a non-empty list drawn from {NEURON_MODELS}, got {models!r}")
    ints.update(_system_fields(values, ints, where, error))
    return Target(name=values["name"], description=values["description"], default_profile=values["default_profile"],
                  neuron_models=tuple(models), path=path, **ints)


def _system_fields(values: Mapping[str, Any], ints: dict[str, int], where: Callable[[str], str],
                   error: type[SpikestackError]) -> dict[str, int]:
    """The chip mesh (defaults where absent): at most MAX_SYSTEM_CHIPS chips, and a system whose tiles along each
    axis stay within the artifact's coordinate bound."""
    out = {key: integer(values.get(key, default), where(key), 1, MAX_SYSTEM_CHIPS, error, why)
           for key, (_, default, why) in SYSTEM_FIELDS.items()}
    chips = out["chips_x"] * out["chips_y"]
    if chips > MAX_SYSTEM_CHIPS:
        raise error(f"{where('chips_x')} x chips_y = {out['chips_x']} x {out['chips_y']} = {chips} chips exceeds "
                    f"{MAX_SYSTEM_CHIPS} (Loihi's mesh addressing limit)")
    for axis, mesh in (("x", "mesh_x"), ("y", "mesh_y")):
        tiles = out[f"chips_{axis}"] * ints[mesh]
        if tiles > MAX_GLOBAL_TILES:
            raise error(f"{where(f'chips_{axis}')} x {mesh} = {tiles} tiles along {axis} exceeds {MAX_GLOBAL_TILES}")
    return out


def _toml_fields(data: dict, path: Path) -> dict[str, Any]:
    """A target file's values by Target field, after the file-only rules: each number in its table, with its
    `source_<key>` line (`source_mesh` may cite the mesh), and the name defaulting to the file's stem."""
    values: dict[str, Any] = {"name": data.get("name", path.stem), "description": data.get("description", ""),
                              "default_profile": data.get("default_profile", DEFAULT_PROFILE)}
    for key, (section_name, toml_key, _, _, _) in FIELDS.items():
        section = table(data, section_name, path, CompileError)
        if toml_key not in section:
            raise CompileError(f"{path}: [{section_name}] lacks {toml_key!r}")
        if f"source_{toml_key}" not in section and not (toml_key in MESH_KEYS and "source_mesh" in section):
            raise CompileError(f"{path}: [{section_name}] {toml_key} has no source_{toml_key} line (every number "
                               "needs a source)")
        values[key] = section[toml_key]
    core = table(data, "core", path, CompileError)
    values["neuron_models"] = core.get("neuron_models")
    if "neuron_models" in core and "source_neuron_models" not in core:
        raise CompileError(f"{path}: [core] neuron_models has no source_neuron_models line")
    if "system" in data:  # optional: a multi-chip system (SYSTEM_FIELDS)
        system = table(data, "system", path, CompileError)
        for key in SYSTEM_FIELDS:
            if key not in system:
                raise CompileError(f"{path}: [system] lacks {key!r}")
            if f"source_{key}" not in system and "source_chips" not in system:
                raise CompileError(f"{path}: [system] {key} has no source_{key} (or source_chips) line (every "
                                   "number needs a source)")
            values[key] = system[key]
    return values


def load_target(name_or_path: str) -> Target:
    """A target by name (`loihi2`) or by path to a TOML file, every field checked (CompileError names it)."""
    path, data = read_data_file(name_or_path, TARGET_DIR, "target", CompileError)

    def where(key: str) -> str:
        if key in FIELDS:
            return f"{path}: [{FIELDS[key][0]}] {FIELDS[key][1]}"
        if key in SYSTEM_FIELDS:
            return f"{path}: [system] {key}"
        return f"{path}: [core] {key}" if key == "neuron_models" else f"{path}: {key}"

    return target_from_fields(_toml_fields(data, path), where, CompileError, path=str(path))


def target_of(program: Any) -> Target:
    """The Target a compiled program (`Program` or `HybridProgram`) was compiled for: the spec it carries, never
    a file looked up by name (the file may differ, or not exist, where the artifact is used)."""
    return program.target_spec
