"""Exporting a program's host stages to ONNX, on two cores when the model is big.

Why: `torch.onnx.export` costs about a millisecond per ONNX node, whatever the weights (torch's symbolic functions
and per-node shape inference), and SpikeGPT-216M's 74 stages hold ~10,000 nodes: 11 s of one core, the largest
single part of `spikestack compile SpikeGPT-216M.pth --dataflow` (bench/compile_published.py). The stages are
independent once their example inputs are known (the dry run of `build_stages` gives every stage's inputs and
outputs), so a forked child exports half of them while this process exports the other half.

Every stage is exported by the same `export_onnx` call on the same module and the same example tensors in either
process, so the bytes are those of the serial export (tests/compiler/test_compile_published_speed.py). The child is
a plain `os.fork` (torch modules are not picklable to a fresh interpreter cheaply, and a spawned one would pay
torch's import again); it sets one torch thread first, as torch's DataLoader workers do, since an OpenMP pool does
not survive a fork. It sends `(index, length, bytes)` frames through a pipe: raw ONNX bytes, nothing unpickled. If
it fails or stalls, this process exports its stages itself: the result is the same, only slower.
"""

from __future__ import annotations

import os
import select
import struct
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .host_stages import StageModule, TracedStage, export_onnx
from .ir import QChipLayer

# Weights (parameters and buffers) of all stage modules from which the export forks a child: the 216M shape's
# stages hold tens of millions (its 50,277 × 768 embedding alone is 38.6 M); every shipped checkpoint is far below
# and exports in one process, where a fork (~0.1 s) would cost more than it saves.
PARALLEL_MIN_WEIGHTS = 10_000_000
CHILD_STALL_S = 120.0  # no frame for this long: the child is taken as hung, killed, and its stages exported here
_FRAME = struct.Struct("<IQ")  # stage index, byte count


@dataclass(frozen=True)
class ExportedStage:
    """One stage's ONNX bytes with the names the schedule needs (the module itself is dropped after export)."""

    onnx: bytes
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    nodes: tuple[str, ...]


def export_stages(modules: list[StageModule], example: dict[str, Tensor], traced: list[TracedStage],
                  accumulators: set[str], chip_example: Callable[[QChipLayer, Tensor], Tensor],
                  parallel: bool | None = None) -> list[ExportedStage]:
    """Every stage's ONNX, in order. Each stage's example inputs are the outputs of the stages before it on
    `example` (the dry run's, or a fresh run when the dry run read other values). `parallel`: None decides by
    size (PARALLEL_MIN_WEIGHTS, two CPUs, Linux); True or False force it (tests). Empties `modules` as it goes:
    each stage's torch copy of its weights can go once exported."""
    env = dict(example)
    feeds: list[dict[str, Tensor]] = []
    outputs: list[tuple[Tensor, ...]] = []
    with torch.no_grad():
        for k, module in enumerate(modules):
            args = tuple(env[n] for n in module.inputs)
            outs = traced[k].outputs(module, args)  # the dry run's, when it read these very values
            if outs is None:
                outs = module(*args)
            feeds.append(dict(zip(module.inputs, args, strict=True)))
            outputs.append(outs)
            env.update(zip(module.outputs, outs, strict=True))
            for la in module.send:
                env[la.output] = chip_example(la, env[la.input])
    names = [(tuple(m.inputs), tuple(m.outputs), tuple(m.nodes)) for m in modules]

    def export(k: int) -> bytes:
        module, modules[k] = modules[k], None
        with torch.no_grad():
            return export_onnx(module, feeds[k], accumulators, outputs[k])

    if parallel is None:
        parallel = _worth_forking(modules)
    onnx = _export_two(export, _costs(modules)) if parallel else [export(k) for k in range(len(modules))]
    return [ExportedStage(onnx=b, inputs=i, outputs=o, nodes=n) for b, (i, o, n) in zip(onnx, names, strict=True)]


def _worth_forking(modules: list[StageModule]) -> bool:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    weights = sum(t.numel() for m in modules for t in (*m.parameters(), *m.buffers()))
    return sys.platform == "linux" and _alone() and cpus >= 2 and len(modules) >= 2 and weights >= PARALLEL_MIN_WEIGHTS


def _alone() -> bool:
    """No other thread but fork-safe ones: a fork copies no other thread, and a lock one of them held stays held in
    the child; a thread marked `fork_safe` takes no lock the child could need (stream.py's page releaser, which
    only calls madvise)."""
    return all(t is threading.current_thread() or getattr(t, "fork_safe", False) for t in threading.enumerate())


def _costs(modules: list[StageModule]) -> list[float]:
    """Export time estimates: ~1 ms per host node and ~8 ms per million weights (measured on the 216M shape's
    stages: 0.3 s for a block's 150-200 nodes, 1.3 s for the embedding's stage)."""
    return [len(m.nodes) + 8e-6 * sum(t.numel() for t in (*m.parameters(), *m.buffers())) for m in modules]


def _split(costs: list[float]) -> tuple[list[int], list[int]]:
    """Two balanced halves: the costliest stage first, each to the lighter half (greedy; stage order kept)."""
    mine: list[int] = []
    theirs: list[int] = []
    load = [0.0, 0.0]
    for k in sorted(range(len(costs)), key=lambda k: -costs[k]):
        half = 0 if load[0] <= load[1] else 1
        (mine if half == 0 else theirs).append(k)
        load[half] += costs[k]
    return sorted(mine), sorted(theirs)


def _export_two(export: Callable[[int], bytes], costs: list[float]) -> list[bytes]:
    """`export(k)` for every stage, half of them in a forked child; any stage the child did not deliver is
    exported here afterwards."""
    mine, theirs = _split(costs)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: export its half, send it, and leave without running this process's exit handlers
        status = 1
        try:
            os.close(read_fd)
            _child_start()
            with os.fdopen(write_fd, "wb") as pipe:
                for k in theirs:
                    data = export(k)
                    pipe.write(_FRAME.pack(k, len(data)))
                    pipe.write(data)
            status = 0
        finally:
            os._exit(status)
    os.close(write_fd)
    done: dict[int, bytes] = {}
    try:
        for k in mine:
            done[k] = export(k)
        done.update(_frames(read_fd, pid))
    finally:
        os.close(read_fd)
        _reap(pid)
    for k in range(len(costs)):  # the child failed or stalled: the same export here
        if k not in done:
            done[k] = export(k)
    return [done[k] for k in range(len(costs))]


def _child_start() -> None:
    """One torch thread in the forked child: the parent's OpenMP pool does not survive a fork (a matmul there hangs,
    tried), and torch's DataLoader workers do the same."""
    torch.set_num_threads(1)


def _frames(fd: int, pid: int) -> dict[int, bytes]:
    """The child's complete frames until it closes the pipe (or stalls for CHILD_STALL_S, when it is killed)."""
    frames: dict[int, bytes] = {}
    while True:
        head = _read_exactly(fd, _FRAME.size, pid)
        if head is None:
            return frames
        k, size = _FRAME.unpack(head)
        data = _read_exactly(fd, size, pid)
        if data is None:
            return frames  # a cut-off last frame: that stage is exported again here
        frames[k] = data


def _read_exactly(fd: int, size: int, pid: int) -> bytes | None:
    """`size` bytes from the pipe, or None at its end; a child silent for CHILD_STALL_S is killed (then None)."""
    buf = bytearray(size)
    view, at = memoryview(buf), 0
    while at < size:
        ready, _, _ = select.select([fd], [], [], CHILD_STALL_S)
        if not ready:
            os.kill(pid, 9)
            return None
        got = os.readv(fd, [view[at:]])
        if got == 0:
            return None
        at += got
    return bytes(buf)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
