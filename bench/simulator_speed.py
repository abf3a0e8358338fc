"""Simulator speed (issue 7): synaptic events accounted per second, printed as JSON.

Two workloads, both on one CPU thread (the machine is shared, 2 cores):

* the shipped model (`models/checkpoints/bispike-mlp.pt`) compiled for loihi2, on validation-text tokens;
* a 256 → 256 → 128 dense chain (conftest-style NIR factory, random seeded weights), T = 4 steps per token,
  250 tokens = 1,000 steps;
* a 1024 → 1024 → 512 chain on the `generic` target (64 neurons per core → 112 cores), for the per-core loops.

"Events" are the dataflow synaptic ops the simulator accounts for (non-zero event × non-zero synapse pairs);
the timed part is the simulator only (counts, conventions, energy, latency, report), given a trace. The
reference executor's time to produce that trace is reported beside it, not inside it. Goal: >= 1e8 events/s.

    .venv/bin/python bench/simulator_speed.py [--tokens 1024] [--repeat 3]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # before numpy loads BLAS
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import nir  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "models" / "checkpoints" / "bispike-mlp.pt"


def dense_chain(d_in: int = 256, hidden: int = 256, out: int = 128, steps: int = 4, vocab: int = 95,
                context: int = 2, seed: int = 0) -> nir.NIRGraph:
    """Input → Embedding → Flatten → BiSpike(d_in) → Affine → BiSpike(hidden) → Affine(out) → Output; embedding
    width d_in / context so the first spiking layer has d_in neurons (spikestack.models.nir.synthetic)."""
    from spikestack.models.nir.synthetic import bispike_chain

    return bispike_chain(seed=seed, vocab=vocab, context=context, emb=d_in // context, hidden=(hidden,), out=out,
                         steps=steps)


def timed(fn, repeat: int) -> tuple[float, object]:
    """Best of `repeat` wall times (s): the minimum is the least disturbed by other users of the machine."""
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def measure(program, ids: np.ndarray, repeat: int) -> dict:
    from spikestack.runtime.reference import run
    from spikestack.simulators.conventions import counting_conventions
    from spikestack.simulators.counts import count_events
    from spikestack.simulators.model import simulate
    from spikestack.simulators.profiles import load_profile

    profile = load_profile("loihi1_sanafe_calibrated")
    run_s, trace = timed(lambda: run(program, ids), 1)
    sim_s, report = timed(lambda: simulate(program, trace, profile), repeat)
    counts_s, _ = timed(lambda: count_events(program, trace), repeat)
    conv_s, _ = timed(lambda: counting_conventions(program, trace, {"fp32": 4.6}), repeat)
    events = report["sops"]
    return {
        "tokens": trace.tokens, "steps": trace.tokens * program.steps, "cores": report["cores"],
        "synaptic_events": events, "simulate_s": round(sim_s, 4),
        "events_per_s": float(f"{events / sim_s:.3g}"),
        # density-independent: counting is matmuls over spike tensors, so cost follows neuron-steps, not events
        "neuron_steps_per_s": float(f"{sum(s.size for s in trace.spikes.values()) / sim_s:.3g}"),
        "breakdown_s": {"count_events": round(counts_s, 4), "counting_conventions": round(conv_s, 4),
                        # timed separately (best of repeat); other users' load can make the pieces exceed the whole
                        "rest (energy, latency, ANN comparison, report)":
                            round(max(0.0, sim_s - counts_s - conv_s), 4)},
        "reference_executor_s": round(run_s, 4),
    }


def main() -> None:
    import torch

    torch.set_num_threads(1)
    from spikestack.compiler.pipeline import compile_graph
    from spikestack.models.nir.export import export_checkpoint

    from spikestack.evaluation import eval_inputs

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=1024, help="tokens of the shipped model")
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        nir_path = Path(tmp) / "bispike-mlp.nir"
        export_checkpoint(CHECKPOINT, nir_path)
        shipped = compile_graph(nir_path, "loihi2")
    ids = eval_inputs(shipped, args.tokens).inputs
    dense = compile_graph(dense_chain(), "loihi2")
    dense_ids = np.random.default_rng(1).integers(0, 95, size=(250, 2))  # 250 tokens × T = 4 = 1,000 steps
    out = {
        "goal_events_per_s": 1e8,
        "threads": 1,
        "shipped_bispike_mlp_loihi2": measure(shipped, ids, args.repeat),
        "dense_256_256_128_1000_steps": measure(dense, dense_ids, args.repeat),
        # many cores: 64-neuron cores spread a 1024 → 1024 → 512 chain over 112 cores on 2 chips
        "dense_1024_1024_512_generic_64_tokens": measure(compile_graph(dense_chain(1024, 1024, 512), "generic"),
                                                         dense_ids[:64], args.repeat),
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
