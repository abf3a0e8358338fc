"""Evaluation and sweeps on a Dask cluster (`dask.distributed`): `run`, `simulate` and `sweep` with `scheduler=`
(an existing cluster's address) or `workers=` (a `LocalCluster` of that many one-thread processes started here).

Where it sits: beside the API (orchestration), between the artifact and the runtime. The program is shipped to the
workers once (`Client.scatter`, broadcast: a loaded program is numpy arrays and ONNX bytes and pickles), so workers
need spikestack installed but not the artifact folder.

Why the results are identical to one process, floats to the last bit: the inputs are cut into contiguous shards
along their independent axis (chain: token windows or input samples; language models: sequences), every shard runs
the same executor the single-process path runs (the reference executor computes each window, sample or sequence
on its own), and the shard traces are concatenated in shard order into the trace one process would have produced
(partial = a shard's trace, merge = `merge_traces`, finalize = the unchanged single-process code). Every metric and
every float reduction (bits per character/byte, firing rates, the simulator's latency means, energy sums) is then
computed by the same code on the same array in the same order. Integer counts are exact either way. A program that
streams one sequence whose state carries across tokens (SpikeGPT on the default text: one row) has nothing
independent to cut: it runs as one shard on one worker, no faster than locally, unless `streams=N` (`--streams`)
reads its text as N independent streams, which shard like sequences.

What the trade costs: for `run`, shard traces travel back to the client (int8 spikes, int payloads and the
logits), so the client holds the whole trace, as the single-process run does; only the execution is spread —
unless the caller does not keep the trace (`keep_trace=False`, the CLI without `--trace`): then a language model's
shards send back their logits and per-layer counts (runtime/trace.py `TraceSummary`), which give the same figures. For
`simulate` of a language model, each worker also counts its shard's events (simulators/hybrid_counts.py) and only
the counts travel back: per core, step and call, independent of how many positions the shard held; the client adds
them up (`merge_counts`, exact: integer totals) and prices them, the single-process report to the last bit.

Failures: a scheduler that cannot be reached within CONNECT_TIMEOUT_S, or one without workers, is one
`ClusterError` line. A worker that dies mid-run has its shard rescheduled by Dask on another worker (the
scheduler's `allowed-failures`, 3 by default); past that, `KilledWorker` becomes one `ClusterError` line. Nothing is
written before every shard is back (outputs are written by the caller, atomically), so no partial result exists.
Errors raised inside a shard (a `SpikestackError`) come back as themselves. Dask is imported only when used.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from spikestack.errors import SpikestackError

CONNECT_TIMEOUT_S = 10.0  # how long a scheduler address may stay silent before the run gives up
SHARDED_BACKENDS = ("reference",)  # the backend whose per-window independence the tests prove bit-exact


class ClusterError(SpikestackError):
    """A Dask cluster that cannot be reached or used: bad address, no workers, a worker lost too often."""


def check_choice(scheduler: str | None, workers: int | None) -> None:
    """One of the two ways to get a cluster, and a sane worker count."""
    if scheduler is not None and workers is not None:
        raise SpikestackError(f"scheduler={scheduler!r} and workers={workers}: give one of them (an existing "
                              "cluster, or a local one of N processes)")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise SpikestackError(f"workers={workers!r}: must be an integer >= 1")


def _import_distributed():
    try:
        import distributed
    except ImportError as exc:
        raise ClusterError(f"Dask is not installed ({exc}); pip install 'dask[distributed]'") from None
    return distributed


@contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None) -> Iterator[Any]:
    """A `distributed.Client` on the scheduler at `scheduler`, or on a LocalCluster of `workers` one-thread
    processes (closed on exit); it waits up to CONNECT_TIMEOUT_S for at least one worker."""
    check_choice(scheduler, workers)
    if scheduler is None and workers is None:
        raise SpikestackError("a Dask run needs scheduler=ADDRESS or workers=N")
    distributed = _import_distributed()
    if scheduler is None:
        with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                      dashboard_address=None, silence_logs=logging.ERROR) as cluster, \
                distributed.Client(cluster, set_as_default=False) as client:
            yield client
        return
    try:
        client = distributed.Client(scheduler, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError, ValueError, TypeError) as exc:  # refused, unresolvable, bad scheme, timeout
        raise ClusterError(f"cannot reach Dask scheduler at {scheduler}: {_reason(exc)}") from None
    try:
        try:
            client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            raise ClusterError(f"Dask scheduler at {scheduler} has no workers after {CONNECT_TIMEOUT_S:g} s "
                               f"({_reason(exc)}); start some with `dask worker {scheduler}`") from None
        yield client
    finally:
        client.close()


def _reason(exc: BaseException) -> str:
    return " ".join((str(exc) or type(exc).__name__).split())


def gather(client: Any, futures: list, what: str) -> list:
    """Results in submission order; a lost worker or scheduler becomes one ClusterError naming `what`."""
    distributed = _import_distributed()
    try:
        return client.gather(futures)
    except distributed.KilledWorker as exc:
        raise ClusterError(f"{what}: a Dask worker died running it, on every retry the scheduler allows "
                           f"({_reason(exc)}); nothing was written") from None
    except (OSError, TimeoutError) as exc:  # CommClosedError is an OSError: the scheduler went away
        raise ClusterError(f"{what}: lost the Dask cluster ({_reason(exc)}); nothing was written") from None


def map_ordered(function: Callable, arguments: Sequence[tuple], *, scheduler: str | None = None,
                workers: int | None = None, what: str = "sweep") -> list:
    """`[function(*a) for a in arguments]`, one Dask task per tuple, results in the order given (sweep points)."""
    with dask_client(scheduler, workers) as client:
        futures = [client.submit(function, *a, pure=False) for a in arguments]
        return gather(client, futures, what)


# ----------------------------------------------------------------------------------------------- run, simulate
def shard_bounds(n: int, shards: int) -> list[tuple[int, int]]:
    """Contiguous [start, stop) ranges covering 0..n in order, sizes differing by at most one, none empty."""
    shards = max(1, min(shards, n))
    edges = [n * k // shards for k in range(shards + 1)]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def run_shard(program, inputs: np.ndarray, backend: str):
    """One shard on a worker: exactly what `api._traces` runs in one process."""
    from spikestack.evaluation import is_hybrid

    if is_hybrid(program):
        from spikestack.runtime.hybrid.executor import run as run_hybrid
        from spikestack.runtime.hybrid.verify import chip_backend

        return run_hybrid(program, inputs, chip_backend(backend))
    from spikestack.runtime.verify import backend_runner

    return backend_runner(backend)(program, inputs)


def count_shard(program, inputs: np.ndarray):
    """One language-model shard on a worker: the reference run and its simulator counts (not its trace)."""
    from spikestack.simulators.hybrid_counts import count_hybrid

    return count_hybrid(program, run_shard(program, inputs, "reference").payloads)


def sharded_counts(program, inputs, *, scheduler: str | None = None, workers: int | None = None):
    """The simulator counts of a language model's reference run over `inputs`, counted on the workers, shard by
    shard, and merged (module docstring: identical to one process's `count_hybrid`)."""
    from spikestack.simulators.hybrid_counts import merge_counts

    check_choice(scheduler, workers)
    inputs = np.asarray(inputs)
    if inputs.ndim < 1 or inputs.shape[0] < 1:
        raise SpikestackError(f"inputs of shape {inputs.shape}: nothing to shard")
    with dask_client(scheduler, workers) as client:
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        shipped = client.scatter(program, broadcast=True, hash=False)
        bounds = shard_bounds(int(inputs.shape[0]), n_workers)
        futures = [client.submit(count_shard, shipped, inputs[lo:hi], pure=False) for lo, hi in bounds]
        return merge_counts(gather(client, futures, f"simulation over {len(bounds)} shards"))


def summary_shard(program, inputs: np.ndarray, backend: str):
    """One shard's run on a worker, sent back as its `TraceSummary` (logits and per-layer counts)."""
    from spikestack.runtime.trace import TraceSummary

    return TraceSummary.of(run_shard(program, inputs, backend))


def merge_summaries(parts: Sequence[Any]):
    """Shard summaries (in shard order) → the whole run's: logits concatenated along the sequences, counts added."""
    from spikestack.runtime.trace import TraceSummary

    first = parts[0]
    return TraceSummary(logits=np.concatenate([p.logits for p in parts], axis=0),
                        nonzero={k: sum(p.nonzero[k] for p in parts) for k in first.nonzero},
                        slots={k: sum(p.slots[k] for p in parts) for k in first.slots},
                        saturations={k: sum(int(p.saturations[k]) for p in parts) for k in first.saturations})


def merge_traces(traces: Sequence[Any]):
    """Shard traces (in shard order) → the trace of the whole input: arrays concatenated along the sharded axis,
    saturation counts added. Chain `Trace`: every array's axis 0 (tokens or samples). `HybridTrace`: logits and
    host tensors on axis 0 (sequences), payloads [calls, steps, sequences, …] on axis 2."""
    from spikestack.runtime.hybrid.executor import HybridTrace
    from spikestack.runtime.trace import Trace

    first = traces[0]
    if len(traces) == 1:
        return first
    sats = {k: sum(int(t.saturations[k]) for t in traces) for k in first.saturations}

    def cat(get: Callable[[Any], np.ndarray], axis: int = 0) -> np.ndarray:
        return np.concatenate([get(t) for t in traces], axis=axis)

    if isinstance(first, HybridTrace):
        return HybridTrace(logits=cat(lambda t: t.logits),
                           payloads={k: cat(lambda t, k=k: t.payloads[k], 2) for k in first.payloads},
                           host_tensors={k: cat(lambda t, k=k: t.host_tensors[k]) for k in first.host_tensors},
                           saturations=sats, calls=first.calls)
    return Trace(spikes={k: cat(lambda t, k=k: t.spikes[k]) for k in first.spikes}, readout=cat(lambda t: t.readout),
                 logits=cat(lambda t: t.logits), inputs=cat(lambda t: t.inputs), saturations=sats)


def sharded_traces(program, inputs, backends: Sequence[str], *, scheduler: str | None = None,
                   workers: int | None = None, keep_trace: bool = True) -> dict[str, Any]:
    """`api._traces` on a Dask cluster: per backend, the inputs in one contiguous shard per worker, the shard
    traces merged in order (module docstring: identical to one process). `keep_trace=False`: a language model's
    shards send back `TraceSummary`s instead, merged the same way."""
    from spikestack.evaluation import is_hybrid

    summarize = not keep_trace and is_hybrid(program)
    check_choice(scheduler, workers)
    for b in backends:
        if b not in SHARDED_BACKENDS:
            raise SpikestackError(f"backend {b!r} with a Dask cluster (--workers/--scheduler): only "
                                  f"{', '.join(SHARDED_BACKENDS)} is sharded; run {b} in one process")
    inputs = np.asarray(inputs)
    if inputs.ndim < 1 or inputs.shape[0] < 1:
        raise SpikestackError(f"inputs of shape {inputs.shape}: nothing to shard")
    out = {}
    with dask_client(scheduler, workers) as client:
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        shipped = client.scatter(program, broadcast=True, hash=False)
        bounds = shard_bounds(int(inputs.shape[0]), n_workers)
        for b in backends:
            task, merge = (summary_shard, merge_summaries) if summarize else (run_shard, merge_traces)
            futures = [client.submit(task, shipped, inputs[lo:hi], b, pure=False) for lo, hi in bounds]
            out[b] = merge(gather(client, futures, f"{b} run over {len(bounds)} shards"))
    return out
