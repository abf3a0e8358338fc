"""Energy/time profiles as data (`simulators/profiles/*.toml`), each number with its source line.

The report always names the profile and says whether it is an assumption (Loihi 2 has no public per-event
figures, REFERENCE.md §6.2).

A profile file is untrusted input (`--profile my.toml`): every constant must be a finite, non-negative number (a
NaN or negative energy would print as a plausible-looking report), checked here by key, once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spikestack.datafiles import available, bool_field, integer, name_field, number, read_data_file, table, text_field
from spikestack.errors import SpikestackError

PROFILE_DIR = Path(__file__).parent / "profiles"
EVENTS = ("synaptic_op", "neuron_update", "neuron_update_idle", "spike_out", "message", "hop")
# optional per-event constants: absent from a profile means the source gives none (priced 0, said so in sources)
OPTIONAL_TIME = ("message_in",)  # per message received: the core's message-in pipeline (SANA-FE axon_in)
UPDATE_RULES = ("event", "nonzero")  # simulators/activity.py
MAX_PJ = 1e9  # 1 mJ per event: far above any chip (Loihi: tens of pJ); catches unit slips (J typed as pJ)
MAX_NS = 1e9  # 1 s per event or barrier
MAX_BARRIER_TILES = 1 << 20


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
    update_rule: str = "event"  # which neuron updates are active (simulators/activity.py)
    chip_link_pj: float = 0.0  # extra energy per message crossing a chip-to-chip link ([chip_link])
    chip_link_ns: float = 0.0  # extra time per chip link crossed, and per extra chip in the barrier
    barrier_between: str = "linear"  # between two table entries: "linear" interpolation or "previous" entry
    ann_mac_pj: float | None = None  # pJ per MAC of the ANN twin, where the source has one ([ann] section)
    sources: dict[str, str] = field(default_factory=dict)  # "energy_pj.hop" → its source line, for reports

    def barrier_time_ns(self, tiles: int, chips: int = 1) -> float:
        """Barrier time for a step that spans `tiles` tiles, interpolated in the profile's table, flat beyond; a
        program on several chips adds one chip-link crossing per extra chip (the barrier's token goes chip to chip;
        docs/simulator.md)."""
        if self.barrier_between == "previous":  # SANA-FE's table lookup: the last entry at or below `tiles`
            at = int(np.searchsorted(self.barrier_tiles, tiles, side="right")) - 1
            base = self.barrier_ns[max(at, 0)]
        else:
            base = float(np.interp(tiles, self.barrier_tiles, self.barrier_ns))
        return float(base) + max(chips - 1, 0) * self.chip_link_ns


def available_profiles() -> list[str]:
    return available(PROFILE_DIR)


def _section(data: dict, name: str, path: Path, hi: float) -> dict[str, float]:
    if not isinstance(data.get(name), dict):
        raise ProfileError(f"{path}: missing [{name}] section")
    sec = data[name]
    out = {}
    for event in EVENTS:
        if event not in sec:
            raise ProfileError(f"{path}: [{name}] lacks {event!r}")
        if f"source_{event}" not in sec:
            raise ProfileError(f"{path}: [{name}] {event} has no source_{event} line (every number needs a source)")
        out[event] = number(sec[event], f"{path}: [{name}] {event}", 0.0, hi, ProfileError)
    for event in OPTIONAL_TIME if name == "time_ns" else ():
        if event in sec:
            if f"source_{event}" not in sec:
                raise ProfileError(f"{path}: [{name}] {event} has no source_{event} line (every number needs a "
                                   "source)")
            out[event] = number(sec[event], f"{path}: [{name}] {event}", 0.0, hi, ProfileError)
    return out


def _sources(data: dict) -> dict[str, str]:
    out = {f"{sec}.{k[len('source_'):]}": str(v) for sec in ("energy_pj", "time_ns", "ann")
           for k, v in data.get(sec, {}).items() if k.startswith("source_")}
    if "source" in data.get("barrier_ns", {}):
        out["barrier_ns"] = str(data["barrier_ns"]["source"])
    if "source_timing" in data:
        out["timing"] = str(data["source_timing"])
    if "source_update_rule" in data:
        out["update_rule"] = str(data["source_update_rule"])
    if "source" in data.get("chip_link", {}):
        out["chip_link"] = str(data["chip_link"]["source"])
    return out


def _update_rule(data: dict, path: Path) -> str:
    rule = data.get("update_rule", "event")
    if rule not in UPDATE_RULES:
        raise ProfileError(f"{path}: update_rule = {rule!r}; choose one of {', '.join(UPDATE_RULES)}")
    if "update_rule" in data and "source_update_rule" not in data:
        raise ProfileError(f"{path}: update_rule = {rule!r} has no source_update_rule line")
    return rule


def _chip_link(data: dict, path: Path) -> tuple[float, float]:
    """[chip_link] energy_pj, time_ns per crossing of a chip-to-chip link; absent: 0 (not modelled)."""
    if "chip_link" not in data:
        return 0.0, 0.0
    link = table(data, "chip_link", path, ProfileError)
    if "source" not in link or "energy_pj" not in link or "time_ns" not in link:
        raise ProfileError(f"{path}: [chip_link] needs energy_pj, time_ns and a source (write 'assumed' where no "
                           "public figure exists)")
    return (number(link["energy_pj"], f"{path}: [chip_link] energy_pj", 0.0, MAX_PJ, ProfileError),
            number(link["time_ns"], f"{path}: [chip_link] time_ns", 0.0, MAX_NS, ProfileError))


def _ann_mac(data: dict, path: Path) -> float | None:
    if "ann" not in data:
        return None
    ann = table(data, "ann", path, ProfileError)
    if "mac" not in ann or "source_mac" not in ann:
        raise ProfileError(f"{path}: [ann] needs mac and a source_mac line (every number needs a source)")
    return number(ann["mac"], f"{path}: [ann] mac", 0.0, MAX_PJ, ProfileError)


def _barrier_between(data: dict, path: Path) -> str:
    between = data.get("barrier_ns", {}).get("between", "linear")
    if between not in ("linear", "previous"):
        raise ProfileError(f"{path}: [barrier_ns] between = {between!r}; choose linear or previous")
    return between


def _barrier(data: dict, path: Path) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """The barrier table: tile counts strictly increasing (np.interp needs it), times finite and non-negative."""
    barrier = table(data, "barrier_ns", path, ProfileError)
    tiles, times = barrier.get("tiles", []), barrier.get("time", [])
    if "source" not in barrier or not isinstance(tiles, list) or not isinstance(times, list) or not tiles \
            or len(tiles) != len(times):
        raise ProfileError(f"{path}: [barrier_ns] needs equal-length tiles/time lists and a source")
    tiles = [integer(t, f"{path}: [barrier_ns] tiles[{i}]", 1, MAX_BARRIER_TILES, ProfileError)
             for i, t in enumerate(tiles)]
    if any(b <= a for a, b in zip(tiles[:-1], tiles[1:], strict=True)):
        raise ProfileError(f"{path}: [barrier_ns] tiles = {tiles} must be strictly increasing")
    times = [number(t, f"{path}: [barrier_ns] time[{i}]", 0.0, MAX_NS, ProfileError) for i, t in enumerate(times)]
    return tuple(tiles), tuple(times)


def load_profile(name_or_path: str) -> Profile:
    """A profile by name or by path to a TOML file, every constant checked (ProfileError names file and key)."""
    path, data = read_data_file(name_or_path, PROFILE_DIR, "profile", ProfileError)
    barrier_tiles, barrier_ns = _barrier(data, path)
    if "timing" in data and "source_timing" not in data:
        raise ProfileError(f"{path}: timing = {data['timing']} has no source_timing line")
    chip_link_pj, chip_link_ns = _chip_link(data, path)
    return Profile(name=name_field(data, "name", path.stem, path, ProfileError),
                   description=text_field(data, "description", "", path, ProfileError),
                   assumption=bool_field(data, "assumption", False, path, ProfileError),
                   energy_pj=_section(data, "energy_pj", path, MAX_PJ),
                   time_ns=_section(data, "time_ns", path, MAX_NS), barrier_tiles=barrier_tiles,
                   barrier_ns=barrier_ns, path=str(path), timing=bool_field(data, "timing", True, path, ProfileError),
                   ann_mac_pj=_ann_mac(data, path), sources=_sources(data), update_rule=_update_rule(data, path),
                   chip_link_pj=chip_link_pj, chip_link_ns=chip_link_ns, barrier_between=_barrier_between(data, path))
