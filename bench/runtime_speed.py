"""Runtime speed (issue 6); prints one JSON object.

Two sections, each on the same artifact and inputs for every backend it compares, with the outputs checked:

* `spine` (`--spine`, default on): the shipped bispike-mlp artifact. Reference executor vs Lava fixed_pt (Lava
  steps/s; each token is T steps) and vs the torch float model (tokens/s); Lava's output must equal the
  reference's.
* `families` (`--families`, default on): every LM family's shipped checkpoint compiled to a hybrid program
  (spikegpt, spikegpt with `--dataflow`, spikelm-dec, spikellm; calibration on 4 × 16 validation ids, as
  hwtests/test_lava_hybrid.py).
  - Reference executor (`runtime/hybrid/executor.run`, numpy chip, onnxruntime host stages) vs the float NIR
    model (`nir_to_module(graph, dtype=float32)` + `run_tokens`) on 4 × 64 other validation ids, tokens/s (SpikeGPT
    streams one token per call in both). They compute different things (integer chip vs float), so the check
    is agreement of the next-token argmax over all positions.
  - Reference vs Lava fixed_pt (`LavaChip`) on 1 × 4 ids (Lava is slow): chip steps per second, where a chip step
    is one neuron step of one layer (Σ_layers calls · steps per call, the same count for both backends), timed
    for the whole executor and for the chip segments alone; Lava once with its network build (first run) and
    once on the built networks (second run). Lava must agree bit for bit: every payload, chip → host tensor,
    logit and saturation count.
  - `profile`: where the reference executor's time goes, per part (host stages in onnxruntime, chip neuron
    steps, chip projections, the rest: the executor's Python loop and conversions), best of `--repeat` runs.

Everything runs on one CPU thread (torch, onnxruntime's sessions, and BLAS through the variables set below,
before numpy loads it): the float model is timed on one thread, and on the shared 2-core machine extra BLAS
threads only contend. Timings are the best of `--repeat` runs after a warm-up; the reference and the float model
it is compared with run alternately (`best_of_pair`), so that both see the same load.

    .venv/bin/python bench/runtime_speed.py [--no-spine] [--no-families] [--no-lava] [--repeat 5]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # before numpy loads BLAS
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from importlib import metadata  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = ROOT / "models" / "checkpoints"
# (label, NIR family, checkpoint, compile_hybrid(dataflow=...))
FAMILIES = (
    ("spikegpt", "spikegpt", "spikegpt-char-2x64", False),
    ("spikegpt-dataflow", "spikegpt", "spikegpt-char-2x64", True),
    ("spikelm-dec", "spikelm-dec", "spikelm-dec-tiny", False),
    ("spikellm", "spikellm", "spikellm-char-tiny", False),
)
BENCH_SHAPE = (4, 64)  # sequences × tokens for reference vs float
LAVA_SHAPE = (1, 4)  # sequences × tokens for reference vs Lava


def best_of_pair(a: Callable[[], object], b: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Least wall times of `a` and `b` over `repeats` calls each, alternating a, b, a, b, … after one warm-up of
    each: on a shared machine both sides then see the same stretches of load, so their ratio is fair even when
    the load changes during the run (timing all of a, then all of b, measured ratios of 0.7-1.5 for the same
    code, one thread each, under a load of 4-5 on 2 cores)."""
    a()
    b()
    times_a, times_b = [], []
    for _ in range(repeats):
        for fn, times in ((a, times_a), (b, times_b)):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return min(times_a), min(times_b)


def machine() -> dict:
    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    return {"platform": f"{platform.machine()} {platform.system()}", "cpus": os.cpu_count(),
            "python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
            "onnxruntime": version("onnxruntime"), "lava": version("lava-nc"), "threads": 1}


# --- spine (bispike-mlp chain program)


def spine(repeats: int, lava: bool) -> dict:
    from spikestack.compiler.pipeline import compile_graph
    from spikestack.models.bispike_mlp import evaluation_set, load_checkpoint
    from spikestack.models.nir.export import bispike_mlp_to_nir
    from spikestack.runtime import reference

    from spikestack.demo import SHIPPED

    model, _ = load_checkpoint(SHIPPED)
    program = compile_graph(bispike_mlp_to_nir(model), "loihi2")
    x, _ = evaluation_set(4096)
    steps = program.steps

    ref = reference.run(program, x)
    with torch.no_grad():
        ref_s, torch_s = best_of_pair(lambda: reference.run(program, x), lambda: model(torch.from_numpy(x)), repeats)
    ref_steps_per_s = len(x) * steps / ref_s
    out = {
        "artifact": "bispike-mlp on loihi2",
        "tokens": len(x),
        "reference_tokens_per_s": round(len(x) / ref_s, 1),
        "reference_steps_per_s": round(ref_steps_per_s, 1),
        "torch_float_tokens_per_s": round(len(x) / torch_s, 1),
        "reference_over_torch_tokens": round(torch_s / ref_s, 3),
        "saturations": sum(ref.saturations.values()),
    }
    if lava:
        from spikestack.runtime.lava import backend as lava_backend
        from spikestack.runtime.verify import first_divergence

        n_lava = 64
        t0 = time.perf_counter()
        lava_trace = lava_backend.run(program, x[:n_lava])
        lava_s = time.perf_counter() - t0
        ref_small = reference.run(program, x[:n_lava])
        lava_steps = n_lava * steps + len(program.populations)
        out |= {
            "lava_tokens": n_lava,
            "lava_fixed_pt_steps_per_s": round(lava_steps / lava_s, 1),
            "lava_includes_startup_s": True,
            "reference_over_lava_steps": round(ref_steps_per_s / (lava_steps / lava_s), 1),
            "lava_equals_reference": first_divergence(program, ref_small, lava_trace, ("reference", "lava")) is None,
        }
    return out


# --- LM families (hybrid programs)


class TimedChip:
    """A chip backend that forwards to `inner` and adds up the wall time of its segments (the chip-only time)."""

    def __init__(self, inner) -> None:
        self.inner, self.seconds = inner, 0.0
        self.name = inner.name

    def reset(self, program, lead) -> None:
        self.inner.reset(program, lead)

    def segment(self, layers, inputs, call):
        t0 = time.perf_counter()
        try:
            return self.inner.segment(layers, inputs, call)
        finally:
            self.seconds += time.perf_counter() - t0

    def saturations(self) -> dict[str, int]:
        return self.inner.saturations()

    def close(self) -> None:
        self.inner.close()


def chip_steps(program, calls: int) -> int:
    """Neuron steps of all chip layers over `calls` calls (one step per call for lif, bispike and relay)."""
    from spikestack.runtime.lava.hybrid_chip import call_steps

    return calls * sum(call_steps(layer) for layer in program.layers)


def identical(program, a, b) -> bool:
    """Bit for bit: payloads (every layer, call, step, position) and logits, chip → host tensors, saturations."""
    from spikestack.runtime.hybrid.verify import first_divergence

    return (first_divergence(program, a, b, ("a", "b")) is None
            and a.host_tensors.keys() == b.host_tensors.keys()
            and all(np.array_equal(a.host_tensors[n], b.host_tensors[n]) for n in a.host_tensors)
            and a.saturations == b.saturations)


def profile(program, ids: np.ndarray, repeats: int) -> dict:
    """Milliseconds per part of one reference run (the fastest of `repeats`): host stages (onnxruntime), chip
    neuron steps (and the chip's bookkeeping), chip projections (float matmuls), and the rest of the run (the
    executor's loop, dtype conversions, state roll, trace stacking, session set-up)."""
    from spikestack.runtime.hybrid import chip, executor

    totals: dict[str, float] = {}

    def timed(owner, name: str, key: str):
        fn = getattr(owner, name)

        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[key] = totals.get(key, 0.0) + time.perf_counter() - t0
        return fn, wrapper

    patches = [(executor.HostRunner, "stage", "host_stages"), (executor.ReferenceChip, "segment", "chip"),
               (chip, "project", "chip_projections")]
    originals = []
    for owner, name, key in patches:
        fn, wrapper = timed(owner, name, key)
        originals.append((owner, name, fn))
        setattr(owner, name, wrapper)
    try:
        executor.run(program, ids)
        best = None
        for _ in range(repeats):
            totals.clear()
            t0 = time.perf_counter()
            executor.run(program, ids)
            total = time.perf_counter() - t0
            if best is None or total < best[0]:
                best = (total, dict(totals))
    finally:
        for owner, name, fn in originals:
            setattr(owner, name, fn)
    total, parts = best
    proj = parts.get("chip_projections", 0.0)
    neurons = parts["chip"] - proj
    ms = {"total": total, "host_stages_onnxruntime": parts["host_stages"], "chip_neuron_steps": neurons,
          "chip_projections": proj, "executor_rest": total - parts["host_stages"] - parts["chip"]}
    return {k: round(v * 1e3, 2) for k, v in ms.items()} | {
        "host_stage_calls": len(program.stages) * _calls(program, ids),
        "chip_layer_calls": len(program.layers) * _calls(program, ids)}


def _calls(program, ids: np.ndarray) -> int:
    if program.time_axis == "tokens":
        return ids.shape[1]
    return program.steps_per_token if program.time_axis == "steps" else 1


def family(label: str, nir_family: str, checkpoint: str, dataflow: bool, repeats: int, lava: bool) -> dict:
    from spikestack.compiler.hybrid.compile import compile_hybrid
    from spikestack.models.data import load_corpus
    from spikestack.models.nir.export import model_to_nir
    from spikestack.models.nir.to_torch import nir_to_module, run_tokens
    from spikestack.runtime.hybrid.executor import ReferenceChip, Session, run

    val = load_corpus().val_ids
    calib = val[:64].reshape(4, 16)
    ids = val[64:64 + int(np.prod(BENCH_SHAPE))].reshape(BENCH_SHAPE)
    graph = model_to_nir(nir_family, CHECKPOINTS / f"{checkpoint}.pt")
    t0 = time.perf_counter()
    program = compile_hybrid(graph, "loihi2", calib, dataflow=dataflow)
    compile_s = time.perf_counter() - t0

    tokens = ids.size
    ref = run(program, ids)
    module = nir_to_module(graph, dtype=torch.float32)
    ids_t = torch.from_numpy(ids)
    with torch.no_grad():
        float_logits = run_tokens(module, ids_t).numpy()
        ref_s, float_s = best_of_pair(lambda: run(program, ids), lambda: run_tokens(module, ids_t), repeats)
    out = {
        "time_axis": program.time_axis, "chip_layers": len(program.layers), "host_stages": len(program.stages),
        "compile_s": round(compile_s, 2),
        "float": {
            "ids": "x".join(map(str, ids.shape)),
            "reference_tokens_per_s": round(tokens / ref_s, 1),
            "float_tokens_per_s": round(tokens / float_s, 1),
            "reference_over_float": round(float_s / ref_s, 3),
            "argmax_agreement": round(float((ref.logits.argmax(-1) == float_logits.argmax(-1)).mean()), 4),
        },
        "profile_ms": profile(program, ids, repeats),
    }
    if not lava:
        return out

    from spikestack.runtime.lava.hybrid_chip import LavaChip

    small = ids[:LAVA_SHAPE[0], :LAVA_SHAPE[1]]

    def timed_run(chip) -> tuple[float, float, object]:
        """(executor s, chip-only s, trace) of one run of `small` on a fresh Session over `chip`."""
        timed = TimedChip(chip)
        session = Session(program, timed, batch=small.shape[0])  # no close: the networks outlive the session
        t_start = time.perf_counter()
        trace = session.trace(session.forward(small))
        return time.perf_counter() - t_start, timed.seconds, trace

    ref_small = run(program, small)
    steps = chip_steps(program, ref_small.calls)
    best = (float("inf"), float("inf"))
    for _ in range(repeats + 1):  # the first is the warm-up
        total, chip_only, _ = timed_run(ReferenceChip())
        best = min(best, (total, chip_only))
    ref_total, ref_chip = best
    lava_chip = LavaChip()
    try:
        first_total, first_chip, first = timed_run(lava_chip)  # builds one Lava network per layer
        steady_total, steady_chip, steady = timed_run(lava_chip)  # same program and lead: networks reused
    finally:
        lava_chip.close()
    out["lava"] = {
        "ids": "x".join(map(str, small.shape)),
        "chip_steps": steps,
        "reference_steps_per_s": round(steps / ref_total, 1),
        "reference_chip_only_steps_per_s": round(steps / ref_chip, 1),
        "lava_first_run_s": round(first_total, 2),
        "lava_steps_per_s": round(steps / steady_total, 2),
        "lava_chip_only_steps_per_s": round(steps / steady_chip, 2),
        "reference_over_lava": round(steady_total / ref_total, 1),
        "reference_over_lava_chip_only": round(steady_chip / ref_chip, 1),
        "reference_over_lava_with_build": round(first_total / ref_total, 1),
        "lava_equals_reference": identical(program, ref_small, first) and identical(program, ref_small, steady),
    }
    return out


def main() -> None:
    from spikestack.models.threads import one_torch_thread

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spine", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--families", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--lava", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    result: dict = {"machine": machine()}
    with one_torch_thread():
        if args.spine:
            result["spine"] = spine(args.repeat, args.lava)
        if args.families:
            result["families"] = {label: family(label, fam, ckpt, dataflow, args.repeat, args.lava)
                                  for label, fam, ckpt, dataflow in FAMILIES}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
