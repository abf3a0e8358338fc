"""Dask scaling of evaluation (issue 17 item 4); prints one JSON object.

The shipped SpikeLLM character checkpoint, compiled for loihi2, runs `spikestack.run` and `spikestack.simulate`
over `--tokens` positions of the validation text (sequences of 64 characters, each an independent shard unit) in
one process and then on a LocalCluster of 1 and of 2 one-thread worker processes (started before timing; its
start-up is reported apart). `run` is timed as the CLI runs it without `--trace` (`keep_trace=False`: every
shard sends back its logits and per-layer counts) and `simulate` brings back only each shard's simulator counts
(spikestack/distributed.py). Every Dask result must equal the one-process result (the
whole run JSON: bits per character, bits per byte, events, firing rates; the whole simulator report); the bench
fails otherwise. Timings are the best of `--repeat` runs after a warm-up run.

Everything runs on one thread per process (BLAS variables set before numpy loads), as Dask's workers do.

    .venv/bin/python bench/dask_scaling.py [--tokens 4096] [--repeat 2]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # before numpy loads BLAS
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import spikestack  # noqa: E402
from spikestack.outputs import strict_json  # noqa: E402

CKPT = Path(__file__).resolve().parent.parent / "models" / "checkpoints" / "spikellm-char-tiny.pt"


def best_of(repeat: int, call) -> tuple[float, object]:
    """(best wall seconds of `repeat` timed calls after one warm-up call, the last result)."""
    result = call()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=16384)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    load = os.getloadavg()[0]  # other jobs on the machine, at the start
    from distributed import LocalCluster

    with tempfile.TemporaryDirectory() as tmp:
        path = spikestack.save(spikestack.compile(CKPT, target="loihi2"), Path(tmp) / "llm")
        program = spikestack.load(path)
        alone_s, alone = best_of(args.repeat, lambda: spikestack.run(program, tokens=args.tokens).to_dict())
        sim_s, sim = best_of(args.repeat, lambda: spikestack.simulate(program, tokens=args.tokens).to_dict())
        rows = {"1 process (no Dask)": {"run_s": round(alone_s, 3), "simulate_s": round(sim_s, 3),
                                        "run_speed_up": 1.0, "simulate_speed_up": 1.0}}
        for n in (1, 2):
            start = time.perf_counter()
            with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                              silence_logs=logging.ERROR) as cluster:
                started_s = time.perf_counter() - start
                run_s, result = best_of(args.repeat, lambda c=cluster: spikestack.run(
                    program, tokens=args.tokens, scheduler=c.scheduler_address, keep_trace=False).to_dict())
                dask_sim_s, report = best_of(args.repeat, lambda c=cluster: spikestack.simulate(
                    program, tokens=args.tokens, scheduler=c.scheduler_address).to_dict())
            if result != alone or report != sim:
                raise SystemExit(f"{n} Dask workers: result differs from the one-process run")
            rows[f"{n} Dask workers"] = {"run_s": round(run_s, 3), "simulate_s": round(dask_sim_s, 3),
                                         "cluster_start_s": round(started_s, 3),
                                         "run_speed_up": round(alone_s / run_s, 3),
                                         "simulate_speed_up": round(sim_s / dask_sim_s, 3), "identical": True}
    print(strict_json({"model": "spikellm-char-tiny (loihi2)", "tokens": args.tokens,
                       "sequences": -(-args.tokens // 64), "bpc": alone["bpc"], "repeat": args.repeat,
                       "load_avg_1min": round(load, 2),
                       "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                   "python": platform.python_version()},
                       "runs": rows}, "bench"))


if __name__ == "__main__":
    main()
