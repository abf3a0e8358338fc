"""The typed results of the public API (`spikestack.api`): what `run`, `verify` and `simulate` return.

Both program kinds fill the same fields, so `to_dict()` has the same keys for a bi-spike chain and a language
model (firing rates per layer included)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spikestack.errors import SpikestackError


@dataclass(frozen=True)
class RunResult:
    """One backend's run of a program: its trace (chain `Trace` or `HybridTrace`), logits and metrics."""

    backend: str
    kind: str  # "chain" | "hybrid"
    family: str
    tokens: int  # token positions (or input samples) run
    trace: Any
    source: str  # where the inputs came from (EvalInputs.source)
    firing_rate: dict[str, float]
    events: int  # non-zero spikes/payloads over every layer, step and position
    saturations: dict[str, int]
    bpc: float | None = None
    output_spike_counts: list | None = None

    @property
    def logits(self) -> np.ndarray:
        return self.trace.logits

    def save_trace(self, path: str | Path) -> Path:
        """The event trace as .npz (spikestack's arrays) or .nir (NIR ValuedEventData), written atomically."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".npz", ".nir"):
            raise SpikestackError(f"{path}: traces are written as .npz or .nir (NIR ValuedEventData)")
        if self.kind == "chain":
            if suffix == ".nir":
                from spikestack.runtime.nir_data import write_nir_data

                return write_nir_data(self.trace, path)
            return self.trace.save(path)
        if suffix == ".nir":
            from spikestack.runtime.nir_data import hybrid_nir_data, write_graph_data

            return write_graph_data(hybrid_nir_data(self.trace.payloads), path)
        from spikestack.outputs import atomic_write

        payloads = {f"payload:{k}": v for k, v in self.trace.payloads.items()}

        def write(tmp: Path) -> None:
            with tmp.open("wb") as f:
                np.savez_compressed(f, logits=self.trace.logits, **payloads)

        return atomic_write(path, write)

    def to_dict(self) -> dict[str, Any]:
        out = {"backend": self.backend, "kind": self.kind, "family": self.family, "tokens": self.tokens,
               "inputs": self.source, "firing_rate": self.firing_rate, "events": self.events,
               "saturations": self.saturations}
        if self.bpc is not None:
            out["bpc"] = self.bpc
        if self.output_spike_counts is not None:
            out["output_spike_counts"] = self.output_spike_counts
        return out


@dataclass(frozen=True)
class VerifyResult:
    """Backends compared spike for spike; `problems` names the first divergence of each differing pair."""

    backends: tuple[str, ...]
    family: str
    tokens: int
    layers: int
    events: int
    problems: tuple[str, ...] = ()
    traces: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def bit_exact(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"bit_exact": self.bit_exact, "backends": list(self.backends), "family": self.family,
                "tokens": self.tokens,
                "layers": self.layers, "events": self.events, "problems": list(self.problems)}

    def summary(self) -> str:
        """The one line `spikestack verify` prints (raises nothing: check `bit_exact` first)."""
        verdict, outputs = ("yes", "equal") if self.bit_exact else ("NO", "differ")
        return (f"bit-exact: {verdict} ({', '.join(self.backends)}; {self.family}, {self.tokens} positions, "
                f"{self.layers} spiking layers, {self.events} events, outputs {outputs})")


@dataclass(frozen=True)
class Report:
    """The simulator's report (docs/simulator.md): SOPs, energy, latency, firing rates, conventions side by side."""

    data: dict[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    @property
    def sops(self) -> int:
        return int(self.data["sops"])

    @property
    def energy_j(self) -> float:
        return float(self.data["energy_j"])

    @property
    def energy_per_token_j(self) -> float:
        return float(self.data["energy_per_token_j"])

    @property
    def firing_rate(self) -> dict[str, float]:
        return dict(self.data["firing_rate"])

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(self.data, allow_nan=False))  # a deep, strict-JSON copy
