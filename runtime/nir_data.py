"""Event traces as NIR recordings: each spiking layer's signed levels as `nir.ValuedEventData`.

NIR's data format has events with values (REFERENCE.md §4.2: the nearest thing to a graded spike stream), so
other NIR tools can read what a compiled program did. One sample per token (or foreign sample); time = step
index × dt; value = the signed level s (the graded payload is s · amplitude[t], recoverable from the artifact).
Written with stock `nir.write_data`; `spikestack run ART --trace FILE.nir` chooses it by the suffix.
"""

from __future__ import annotations

from pathlib import Path

import nir
import numpy as np

from spikestack.outputs import atomic_write

from .trace import Trace


def layer_events(levels: np.ndarray, dt: float) -> nir.ValuedEventData:
    """levels int [samples, steps, n] → ValuedEventData padded with idx -1, time inf, value 0."""
    n_samples, steps, n = levels.shape
    counts = (levels != 0).reshape(n_samples, -1).sum(1)
    width = max(int(counts.max(initial=0)), 1)
    idx = np.full((n_samples, width), -1, np.int64)
    time = np.full((n_samples, width), np.inf)
    value = np.zeros((n_samples, width))
    for i in range(n_samples):
        t, j = np.nonzero(levels[i])  # row-major: ordered by time, then neuron
        idx[i, : len(t)], time[i, : len(t)], value[i, : len(t)] = j, t * dt, levels[i, t, j]
    return nir.ValuedEventData(idx=idx, time=time, value=value, n_neurons=n, t_max=steps * dt)


def to_nir_data(trace: Trace, dt: float = 1.0) -> nir.NIRGraphData:
    return nir.NIRGraphData(nodes={
        pop: nir.NIRNodeData(observables={"spikes": layer_events(np.asarray(levels), dt)})
        for pop, levels in trace.spikes.items()
    })


def write_nir_data(trace: Trace, path: str | Path, dt: float = 1.0) -> Path:
    """Stock `nir.write_data`, atomically (a temporary sibling renamed into place)."""
    return write_graph_data(to_nir_data(trace, dt), path)


def write_graph_data(data: nir.NIRGraphData, path: str | Path) -> Path:
    return atomic_write(path, lambda tmp: nir.write_data(str(tmp), data))


def hybrid_nir_data(payloads: dict[str, np.ndarray], dt: float = 1.0) -> nir.NIRGraphData:
    """A hybrid trace (runtime/hybrid: payloads [calls, steps, *positions, width]) as NIR recordings: one sample
    per position, time = (call · steps + step) · dt, value = the graded payload."""
    nodes = {}
    for layer, p in payloads.items():
        calls, steps, width = p.shape[0], p.shape[1], p.shape[-1]
        per_position = np.asarray(p).reshape(calls * steps, -1, width).transpose(1, 0, 2)
        nodes[layer] = nir.NIRNodeData(observables={"spikes": layer_events(per_position, dt)})
    return nir.NIRGraphData(nodes=nodes)
