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
    layer_spike_counts: dict[str, list] | None = None  # delayed-timing programs: per layer, spikes per neuron
    text: str | None = None  # which text the ids came from: a --text path, the shipped corpus, or why none
    bits_per_byte: float | None = None  # total next-token bits / UTF-8 bytes of the scored text (any tokenizer)
    perplexity: float | None = None  # per token of the program's tokenizer: 2^(mean bits per token)

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
        for key in ("text", "bpc", "bits_per_byte", "perplexity"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.output_spike_counts is not None:
            out["output_spike_counts"] = self.output_spike_counts
        if self.layer_spike_counts is not None:
            out["layer_spike_counts"] = self.layer_spike_counts
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
    float_agreement: dict[str, Any] | None = None  # vs the NIR graph's float equations (runtime/float_reference.py)
    text: str | None = None  # which text the ids came from (RunResult.text)

    @property
    def bit_exact(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        out = {"bit_exact": self.bit_exact, "backends": list(self.backends), "family": self.family,
               "tokens": self.tokens,
               "layers": self.layers, "events": self.events, "problems": list(self.problems)}
        if self.text is not None:
            out["text"] = self.text
        if self.float_agreement is not None:
            out["float_agreement"] = self.float_agreement
        return out

    def summary(self) -> str:
        """The one line `spikestack verify` prints (raises nothing: check `bit_exact` first)."""
        verdict, outputs = ("yes", "equal") if self.bit_exact else ("NO", "differ")
        line = (f"bit-exact: {verdict} ({', '.join(self.backends)}; {self.family}, {self.tokens} positions, "
                f"{self.layers} spiking layers, {self.events} events, outputs {outputs})")
        if self.float_agreement is not None:
            counts = self.float_agreement["output_count_agreement"]
            line += (f"; float reference: {self.float_agreement['raster_agreement']:.2%} of raster entries equal, "
                     f"output spike counts {min(counts, default=1.0):.2%}+ per neuron")
        return line


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
