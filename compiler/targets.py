"""Hardware targets as data: `compiler/targets/*.toml` loaded into a frozen `Target`.

Both the compiler (limits) and the simulator (mesh geometry) read targets; code holds no hardware constants.
Every number in a target file has a `source_<field>` line beside it; loading refuses a file without one.

A target file is untrusted input (`--target my.toml`), so every field is checked here, once, against a range that
keeps the compiler and the runtime meaningful and fast: a 200-bit state would overflow the int64 fixed-point path,
a billion-tile mesh would stall placement, a name with a slash would later be looked up as a path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from spikestack.datafiles import available, integer, name_field, read_data_file, table, text_field
from spikestack.errors import CompileError

TARGET_DIR = Path(__file__).parent / "targets"
NEURON_MODELS = ("cuba_lif", "programmable")
MAX_CHIP_CORES = 4096  # Loihi 1 and 2 have 128; placement and routing tables scale with cores and tiles
MAX_MESH_TILES = 4096

# field → (table, lo, hi, why the range); ranges are wide enough for any Loihi-style chip, narrow enough for the
# int64 fixed-point runtime (products of ≤32-bit weights and ≤32-bit payloads) and a placement that finishes.
FIELDS: dict[str, tuple[str, int, int, str]] = {
    "cores": ("chip", 1, MAX_CHIP_CORES, "cores per chip; Loihi 2 has 128"),
    "mesh_x": ("chip", 1, MAX_MESH_TILES, "tiles along x; at most 4096 tiles per chip"),
    "mesh_y": ("chip", 1, MAX_MESH_TILES, "tiles along y; at most 4096 tiles per chip"),
    "cores_per_tile": ("chip", 1, 64, "Loihi has 4 cores per tile"),
    "max_neurons": ("core", 1, 1 << 20, "neurons per core; Loihi 2 has 8192"),
    "synaptic_memory_bits": ("core", 1, 1 << 32, "bits per core; Loihi has 1 Mbit"),
    "max_axons_in": ("core", 1, 1 << 20, "input axons per core; Loihi has 4096"),
    "max_axons_out": ("core", 1, 1 << 20, "output axons per core; Loihi has 4096"),
    "weight_mantissa_bits": ("numerics", 1, 32, "Loihi weights have 1-9 bits"),
    "state_bits": ("numerics", 8, 32, "the fixed-point runtime holds state in int64 arithmetic; Loihi has 24"),
    "max_payload_bits": ("numerics", 1, 32, "1 = binary spikes; Loihi 2 graded spikes have 24"),
    "decay_bits": ("numerics", 1, 24, "Loihi decays have 12"),
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
    state_bits: int
    max_payload_bits: int  # 1 = binary spikes only
    decay_bits: int
    neuron_models: tuple[str, ...]  # "cuba_lif" (fixed Loihi compartment), "programmable" (microcode)
    path: str

    @property
    def state_max(self) -> int:
        """Largest signed state value, 2^(bits-1) - 1 (saturation bound)."""
        return (1 << (self.state_bits - 1)) - 1


def available_targets() -> list[str]:
    return available(TARGET_DIR)


def _field(data: dict, key: str, path: Path) -> int:
    section_name, lo, hi, why = FIELDS[key]
    section = table(data, section_name, path, CompileError)
    if key not in section:
        raise CompileError(f"{path}: [{section_name}] lacks {key!r}")
    if f"source_{key}" not in section and not (key in ("mesh_x", "mesh_y", "cores_per_tile")
                                                 and "source_mesh" in section):
        raise CompileError(f"{path}: [{section_name}] {key} has no source_{key} line (every number needs a source)")
    return integer(section[key], f"{path}: [{section_name}] {key}", lo, hi, CompileError, why)


def _neuron_models(data: dict, path: Path) -> tuple[str, ...]:
    core = table(data, "core", path, CompileError)
    models = core.get("neuron_models")
    if not isinstance(models, list) or not models or not all(m in NEURON_MODELS for m in models):
        raise CompileError(f"{path}: [core] neuron_models must be a non-empty list drawn from {NEURON_MODELS}, "
                           f"got {models!r}")
    if "source_neuron_models" not in core:
        raise CompileError(f"{path}: [core] neuron_models has no source_neuron_models line")
    return tuple(models)


def load_target(name_or_path: str) -> Target:
    """A target by name (`loihi2`) or by path to a TOML file, every field checked (CompileError names it)."""
    path, data = read_data_file(name_or_path, TARGET_DIR, "target", CompileError)
    values = {key: _field(data, key, path) for key in FIELDS}
    tiles = values["mesh_x"] * values["mesh_y"]
    if tiles > MAX_MESH_TILES:
        raise CompileError(f"{path}: [chip] mesh_x x mesh_y = {values['mesh_x']} x {values['mesh_y']} = {tiles} "
                           f"tiles exceeds {MAX_MESH_TILES} per chip")
    if values["cores_per_tile"] > values["cores"]:
        raise CompileError(f"{path}: [chip] cores_per_tile = {values['cores_per_tile']} exceeds cores = "
                           f"{values['cores']}")
    return Target(
        name=name_field(data, "name", path.stem, path, CompileError),
        description=text_field(data, "description", "", path, CompileError),
        default_profile=name_field(data, "default_profile", "loihi1_sanafe_calibrated", path, CompileError),
        chip_cores=values["cores"],
        mesh_x=values["mesh_x"],
        mesh_y=values["mesh_y"],
        cores_per_tile=values["cores_per_tile"],
        max_neurons=values["max_neurons"],
        synaptic_memory_bits=values["synaptic_memory_bits"],
        max_axons_in=values["max_axons_in"],
        max_axons_out=values["max_axons_out"],
        weight_mantissa_bits=values["weight_mantissa_bits"],
        state_bits=values["state_bits"],
        max_payload_bits=values["max_payload_bits"],
        decay_bits=values["decay_bits"],
        neuron_models=_neuron_models(data, path),
        path=str(path),
    )
