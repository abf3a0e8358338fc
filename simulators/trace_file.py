"""A saved event trace (`spikestack run --trace FILE.npz`) read back for `simulate --trace`, checked against the
program it is priced with.

Why: simulating a small artifact took seconds of start-up and re-execution against milliseconds of counting
(issue 15); a saved trace skips the executor. The file is untrusted input: numpy's loader without pickles, then
every array's shape and dtype checked here, once, against the program (a trace of another artifact would price
nonsense), each error naming the file, the array and the expected shape.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spikestack.bounded import load_arrays
from spikestack.errors import SpikestackError


class TraceFileError(SpikestackError):
    """A trace file that cannot be read or does not belong to the program."""


def _arrays(path: Path) -> dict[str, np.ndarray]:
    if path.suffix.lower() != ".npz":
        raise TraceFileError(f"{path}: --trace reads a .npz trace written by `spikestack run --trace FILE.npz`")
    return load_arrays(path, TraceFileError, f"{path}: not a spikestack trace")


def _check(path: Path, name: str, a: np.ndarray | None, tail: tuple[int, ...], lead: int | None = None) -> int:
    """The array exists, is integer, ends in `tail` and agrees with the other arrays' first axis; returns it."""
    if a is None:
        raise TraceFileError(f"{path}: no array {name!r}; the trace belongs to another program")
    if a.dtype.kind not in "iub" or a.ndim != 1 + len(tail) or tuple(a.shape[1:]) != tail:
        raise TraceFileError(f"{path}: array {name!r} has shape {a.shape} ({a.dtype}); this program needs "
                             f"[n, {', '.join(map(str, tail))}] integers")
    if lead is not None and a.shape[0] != lead:
        raise TraceFileError(f"{path}: array {name!r} holds {a.shape[0]} samples, the others {lead}")
    return int(a.shape[0])


def load_chain_trace(program, path: Path):
    from spikestack.runtime.trace import Trace

    z = _arrays(path)
    n = None
    spikes = {}
    for pop in program.populations:
        key = f"spikes/{pop.name}"
        if key in z:
            n = _check(path, key, z[key], (program.steps, pop.size), n)
            spikes[pop.name] = z[key]
    if not spikes:
        raise TraceFileError(f"{path}: no spikes of any population of this program; it belongs to another program")
    inputs = z.get("inputs")
    tail = (program.steps, program.host_input.size) if program.timing == "delayed" else (program.host_input.size,)
    _check(path, "inputs", inputs, tail, n)
    for key in ("readout", "logits"):
        if key not in z:
            raise TraceFileError(f"{path}: no array {key!r}; not a spikestack trace")
    return Trace(spikes=spikes, readout=z["readout"], logits=z["logits"], inputs=inputs)


def load_hybrid_trace(program, path: Path):
    from spikestack.runtime.hybrid.executor import HybridTrace

    z = _arrays(path)
    payloads = {}
    for layer in program.layers:
        a = z.get(f"payload:{layer.name}")
        if a is None or a.dtype.kind not in "iub" or a.ndim < 3 or a.shape[-1] != layer.width:
            got = None if a is None else a.shape
            raise TraceFileError(f"{path}: payload of chip layer {layer.name!r} is {got}; this program needs "
                                 f"[calls, steps, ..., {layer.width}] integers")
        payloads[layer.name] = a
    return HybridTrace(logits=z.get("logits", np.zeros(0)), payloads=payloads)


def load_trace(program, path: str | Path):
    """The trace saved at `path`, checked against `program` (chain or hybrid)."""
    path = Path(path)
    if not path.is_file():
        raise TraceFileError(f"{path}: trace file not found")
    if hasattr(program, "layers") and hasattr(program, "stages"):
        return load_hybrid_trace(program, path)
    return load_chain_trace(program, path)
