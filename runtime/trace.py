"""The event trace every backend returns and the simulator reads.

Per spiking population: the signed spike level of every neuron at every step of every token, int8
[tokens, T, neurons] (payload = level × amplitude[t], recoverable from the artifact). Per readout: the integer
accumulator after the last step, int64 [tokens, neurons], and the host's logits. Saved as one .npz
(`spikes/<pop>`, `readout`, `logits`, `inputs`, `saturations/<pop>` keys).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from spikestack.errors import ArtifactError
from spikestack.outputs import atomic_write


class ProgramTrace(Protocol):
    """What every backend's trace answers, for chain and hybrid programs alike (the API, `verify` and the
    simulator's firing rates read only this): per-layer integer arrays, logits, saturations, event counts."""

    logits: np.ndarray
    saturations: dict[str, int]

    def layers(self) -> dict[str, np.ndarray]: ...

    def events(self) -> int: ...

    def firing_rate(self) -> dict[str, float]: ...


def layer_firing_rates(layers: dict[str, np.ndarray]) -> dict[str, float]:
    """Fraction of (position, step, neuron) slots holding a non-zero spike, per layer: spikes, not messages."""
    return {name: float((s != 0).mean()) for name, s in layers.items()}


def layer_events(layers: dict[str, np.ndarray]) -> int:
    """Non-zero spikes (payloads) over every layer, step, position and neuron."""
    return int(sum(int((s != 0).sum()) for s in layers.values()))


@dataclass(frozen=True, slots=True)
class TraceSummary:
    """What a run's figures need of a trace, without the per-event arrays: logits, and per layer the non-zero
    payloads and the slots they were counted over (firing rate = non-zero / slots, events = Σ non-zero: the same
    integers and the same float division as `layer_firing_rates` on the full arrays). A Dask worker sends this
    back instead of its shard's payloads (spikestack/distributed.py) when the caller does not keep the trace."""

    logits: np.ndarray
    nonzero: dict[str, int]
    slots: dict[str, int]
    saturations: dict[str, int] = field(default_factory=dict)

    @staticmethod
    def of(trace: ProgramTrace) -> TraceSummary:
        layers = trace.layers()
        return TraceSummary(logits=trace.logits, nonzero={k: int((s != 0).sum()) for k, s in layers.items()},
                            slots={k: int(np.asarray(s).size) for k, s in layers.items()},
                            saturations=dict(trace.saturations))

    def layers(self) -> dict[str, np.ndarray]:
        return {}  # the arrays stayed where they were computed

    def events(self) -> int:
        return int(sum(self.nonzero.values()))

    def firing_rate(self) -> dict[str, float]:
        return {k: float(np.float64(n) / np.float64(self.slots[k])) for k, n in self.nonzero.items()}


@dataclass(frozen=True, slots=True)
class Trace:
    spikes: dict[str, np.ndarray]  # pop → int8 [tokens, T, n]
    readout: np.ndarray  # int64 [tokens, n_out]
    logits: np.ndarray  # float64 [tokens, n_out]
    inputs: np.ndarray  # int64 [tokens, n_in]: host-written input currents in state units
    saturations: dict[str, int] = field(default_factory=dict)  # pop → number of saturated state updates

    @property
    def tokens(self) -> int:
        return int(self.readout.shape[0])

    def layers(self) -> dict[str, np.ndarray]:
        return self.spikes

    def events(self) -> int:
        return layer_events(self.spikes)

    def firing_rate(self) -> dict[str, float]:
        """Fraction of (token, step, neuron) with a non-zero spike, per population."""
        return layer_firing_rates(self.spikes)

    def save(self, path: str | Path) -> Path:
        """Write the .npz (".npz" appended when missing, as numpy does) atomically: a failed write leaves any
        earlier file intact and no partial one."""
        path = Path(path)
        if path.suffix.lower() != ".npz":
            path = path.with_name(path.name + ".npz")
        arrays = {f"spikes/{k}": v for k, v in self.spikes.items()}
        arrays |= {f"saturations/{k}": np.array(v) for k, v in self.saturations.items()}

        def write(tmp: Path) -> None:
            with tmp.open("wb") as f:
                np.savez_compressed(f, readout=self.readout, logits=self.logits, inputs=self.inputs, **arrays)

        return atomic_write(path, write)

    @staticmethod
    def load(path: str | Path) -> Trace:
        try:
            with np.load(path) as z:
                spikes = {k.split("/", 1)[1]: z[k] for k in z.files if k.startswith("spikes/")}
                sats = {k.split("/", 1)[1]: int(z[k]) for k in z.files if k.startswith("saturations/")}
                return Trace(spikes=spikes, readout=z["readout"], logits=z["logits"], inputs=z["inputs"],
                             saturations=sats)
        except (OSError, KeyError, ValueError) as exc:
            raise ArtifactError(f"{path}: not a spikestack trace ({exc})") from None
