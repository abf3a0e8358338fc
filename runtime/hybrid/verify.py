"""Verification and generation for hybrid programs: the same inputs through every chip backend, compared at
every layer, call, step, position and neuron; greedy generation token by token on any backend.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from spikestack.compiler.hybrid.ir import HybridProgram

from spikestack.progress import progress

from ..verify import compare_all
from .executor import ChipBackend, HybridTrace, ReferenceChip, Session, run

BACKENDS = ("torch", "reference", "lava")


def chip_backend(name: str) -> ChipBackend:
    if name == "reference":
        return ReferenceChip()
    if name == "torch":
        from .torch_chip import TorchChip

        return TorchChip()
    if name == "lava":
        from ..lava.hybrid_chip import LavaChip

        return LavaChip()
    raise ValueError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")


def first_divergence(program: HybridProgram, a: HybridTrace, b: HybridTrace, names: tuple[str, str]) -> str | None:
    """None if the traces agree everywhere; else one line: layer, call, step, position, neuron and both values.

    Layers are scanned in schedule order and, within a layer, the earliest call and step first: that is where a
    divergence starts (later ones follow from it through the host)."""
    for la in sorted(program.layers, key=lambda layer: layer.segment):
        pa, pb = a.payloads.get(la.name), b.payloads.get(la.name)
        if pa is None or pb is None:
            return f"layer {la.name}: missing from the {names[0] if pa is None else names[1]} trace"
        if pa.shape != pb.shape:
            return f"layer {la.name}: payload shapes differ {pa.shape} vs {pb.shape}"
        diff = np.argwhere(pa != pb)
        if diff.size:
            idx = tuple(min(diff.tolist()))
            call, step, *pos, neuron = idx
            return (f"layer {la.name}, call {call}, step {step}, position {tuple(pos)}, neuron {neuron}: "
                    f"{names[0]}={int(pa[idx])} {names[1]}={int(pb[idx])}")
    if not np.array_equal(a.logits, b.logits):
        idx = tuple(np.argwhere(a.logits != b.logits)[0].tolist())
        return f"logits {idx}: {names[0]}={a.logits[idx]!r} {names[1]}={b.logits[idx]!r}"
    return None


def verify(program: HybridProgram, ids: np.ndarray, backends: tuple[str, ...] = BACKENDS
           ) -> tuple[dict[str, HybridTrace], list[str]]:
    traces = {name: run(program, ids, chip_backend(name)) for name in backends}
    return traces, compare_all(program, traces, backends, first_divergence)


def generate_ids(program: HybridProgram, prompt: list[int], n_tokens: int,
                 chip: Callable[[], ChipBackend] = ReferenceChip) -> list[int]:
    """Greedy continuation of `prompt` (ids). SpikeGPT streams (state carries, one call per token); SpikeLLM and
    the SpikeLM decoder decode one position per call against their KV caches when prompt and continuation fit the
    context (SpikeLM: T calls per position, one cache per step); otherwise every new token re-runs the last
    `max_positions` ids. Progress per token on a terminal (spikestack/progress.py): on Lava a token is one or more
    Lava runs per chip layer, seconds each."""
    if not prompt:
        raise ValueError("the prompt must hold at least one token")
    session = Session(program, chip(), batch=1, keep_trace=False)
    out = list(prompt)
    try:
        if program.time_axis == "tokens":
            logits = None
            for tok in progress(prompt, "prompt"):
                logits = session.step_token(np.array([tok]))
            for _ in progress(range(n_tokens), "generate"):
                out.append(int(np.argmax(logits[0])))
                logits = session.step_token(np.array([out[-1]]))
            return out
        fits = not program.max_positions or len(prompt) + n_tokens - 1 <= program.max_positions  # last not fed
        if program.decode_stages and fits:
            logits = None
            for tok in progress(prompt, "prompt"):  # the prompt goes through the cache too: position by position
                logits = session.decode_token(np.array([tok]))
            for k in progress(range(n_tokens), "generate"):
                out.append(int(np.argmax(logits[0])))
                if k + 1 < n_tokens:
                    logits = session.decode_token(np.array([out[-1]]))
            return out
        window = program.max_positions or len(prompt) + n_tokens
        for _ in progress(range(n_tokens), "generate"):
            ids = np.asarray(out[-window:], np.int64)[None]
            out.append(int(np.argmax(session.sequence(ids)[0, -1])))
        return out
    finally:
        session.close()
