"""Energy/time profiles as data (`simulators/profiles/*.toml`), each number with its source line.

The report always names the profile and says whether it is an assumption (Loihi 2 has no public per-event
figures, REFERENCE.md §6.2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spikestack.datafiles import available, read_data_file
from spikestack.errors import SpikestackError

PROFILE_DIR = Path(__file__).parent / "profiles"
EVENTS = ("synaptic_op", "neuron_update", "neuron_update_idle", "spike_out", "message", "hop")


class ProfileError(SpikestackError):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Profile:
    name: str
    description: str
    assumption: bool
    energy_pj: dict[str, float]
    time_ns: dict[str, float]
    barrier_tiles: tuple[int, ...]
    barrier_ns: tuple[float, ...]
    path: str
    timing: bool = True  # False: the source gives no times (Horowitz), so the report leaves latency null
    ann_mac_pj: float | None = None  # pJ per MAC of the ANN twin, where the source has one ([ann] section)
    sources: dict[str, str] = field(default_factory=dict)  # "energy_pj.hop" → its source line, for reports

    def barrier_time_ns(self, tiles: int) -> float:
        """Barrier time for a step that spans `tiles` tiles, interpolated in the profile's table, flat beyond."""
        return float(np.interp(tiles, self.barrier_tiles, self.barrier_ns))


def available_profiles() -> list[str]:
    return available(PROFILE_DIR)


def _section(data: dict, name: str, path: Path) -> dict[str, float]:
    sec = data.get(name)
    if not isinstance(sec, dict):
        raise ProfileError(f"{path}: missing [{name}] section")
    out = {}
    for event in EVENTS:
        if event not in sec:
            raise ProfileError(f"{path}: [{name}] lacks {event!r}")
        if f"source_{event}" not in sec:
            raise ProfileError(f"{path}: [{name}] {event} has no source_{event} line (every number needs a source)")
        out[event] = float(sec[event])
    return out


def _sources(data: dict) -> dict[str, str]:
    out = {f"{sec}.{k[len('source_'):]}": str(v) for sec in ("energy_pj", "time_ns", "ann")
           for k, v in data.get(sec, {}).items() if k.startswith("source_")}
    if "source" in data.get("barrier_ns", {}):
        out["barrier_ns"] = str(data["barrier_ns"]["source"])
    if "source_timing" in data:
        out["timing"] = str(data["source_timing"])
    return out


def _ann_mac(data: dict, path: Path) -> float | None:
    ann = data.get("ann")
    if ann is None:
        return None
    if "mac" not in ann or "source_mac" not in ann:
        raise ProfileError(f"{path}: [ann] needs mac and a source_mac line (every number needs a source)")
    return float(ann["mac"])


def load_profile(name_or_path: str) -> Profile:
    path, data = read_data_file(name_or_path, PROFILE_DIR, "profile", ProfileError)
    barrier = data.get("barrier_ns", {})
    if "source" not in barrier or len(barrier.get("tiles", [])) != len(barrier.get("time", [])) or not barrier["tiles"]:
        raise ProfileError(f"{path}: [barrier_ns] needs equal-length tiles/time lists and a source")
    if "timing" in data and "source_timing" not in data:
        raise ProfileError(f"{path}: timing = {data['timing']} has no source_timing line")
    return Profile(name=data.get("name", path.stem), description=data.get("description", ""),
                   assumption=bool(data.get("assumption", False)), energy_pj=_section(data, "energy_pj", path),
                   time_ns=_section(data, "time_ns", path), barrier_tiles=tuple(barrier["tiles"]),
                   barrier_ns=tuple(float(x) for x in barrier["time"]), path=str(path),
                   timing=bool(data.get("timing", True)), ann_mac_pj=_ann_mac(data, path),
                   sources=_sources(data))
