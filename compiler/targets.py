"""Hardware targets as data: `compiler/targets/*.toml` loaded into a frozen `Target`.

Both the compiler (limits) and the simulator (mesh geometry) read targets; code holds no hardware constants.
Every number in a target file has a `source_<field>` line beside it; loading refuses a file without one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from spikestack.datafiles import available, read_data_file
from spikestack.errors import CompileError

TARGET_DIR = Path(__file__).parent / "targets"
NEURON_MODELS = ("cuba_lif", "programmable")


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


def _field(section: dict, key: str, path: Path, section_name: str) -> int:
    if key not in section:
        raise CompileError(f"{path}: [{section_name}] lacks {key!r}")
    if f"source_{key}" not in section and not (key in ("mesh_x", "mesh_y", "cores_per_tile")
                                                 and "source_mesh" in section):
        raise CompileError(f"{path}: [{section_name}] {key} has no source_{key} line (every number needs a source)")
    value = section[key]
    if not isinstance(value, int) or value <= 0:
        raise CompileError(f"{path}: [{section_name}] {key} must be a positive integer, got {value!r}")
    return value


def _neuron_models(core: dict, path: Path) -> tuple[str, ...]:
    models = core.get("neuron_models")
    if not isinstance(models, list) or not models or not all(m in NEURON_MODELS for m in models):
        raise CompileError(f"{path}: [core] neuron_models must be a non-empty list drawn from {NEURON_MODELS}")
    if "source_neuron_models" not in core:
        raise CompileError(f"{path}: [core] neuron_models has no source_neuron_models line")
    return tuple(models)


def load_target(name_or_path: str) -> Target:
    """A target by name (`loihi2`) or by path to a TOML file."""
    path, data = read_data_file(name_or_path, TARGET_DIR, "target", CompileError)
    chip, core, num = data.get("chip", {}), data.get("core", {}), data.get("numerics", {})
    return Target(
        name=str(data.get("name", path.stem)),
        description=str(data.get("description", "")),
        default_profile=str(data.get("default_profile", "loihi1_sanafe_calibrated")),
        chip_cores=_field(chip, "cores", path, "chip"),
        mesh_x=_field(chip, "mesh_x", path, "chip"),
        mesh_y=_field(chip, "mesh_y", path, "chip"),
        cores_per_tile=_field(chip, "cores_per_tile", path, "chip"),
        max_neurons=_field(core, "max_neurons", path, "core"),
        synaptic_memory_bits=_field(core, "synaptic_memory_bits", path, "core"),
        max_axons_in=_field(core, "max_axons_in", path, "core"),
        max_axons_out=_field(core, "max_axons_out", path, "core"),
        weight_mantissa_bits=_field(num, "weight_mantissa_bits", path, "numerics"),
        state_bits=_field(num, "state_bits", path, "numerics"),
        max_payload_bits=_field(num, "max_payload_bits", path, "numerics"),
        decay_bits=_field(num, "decay_bits", path, "numerics"),
        neuron_models=_neuron_models(core, path),
        path=str(path),
    )
