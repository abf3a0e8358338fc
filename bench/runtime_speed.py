"""Runtime speed on the shipped spine artifact; prints one JSON object.

Compares, on the same artifact and inputs (outputs checked identical): the reference executor vs Lava fixed_pt
(Lava steps/s; each token is T steps) and the reference executor vs the torch float model (tokens/s).
Run: .venv/bin/python bench/runtime_speed.py
"""

from __future__ import annotations

import json
import os
import platform
import time

import torch


def main() -> None:
    from spikestack.compiler.pipeline import compile_graph
    from spikestack.models.bispike_mlp import evaluation_set, load_checkpoint
    from spikestack.models.nir.export import bispike_mlp_to_nir
    from spikestack.runtime import reference
    from spikestack.runtime.lava import backend as lava_backend
    from spikestack.runtime.verify import first_divergence

    from spikestack.demo import SHIPPED

    torch.set_num_threads(1)
    model, _ = load_checkpoint(SHIPPED)
    program = compile_graph(bispike_mlp_to_nir(model), "loihi2")
    x, _ = evaluation_set(4096)
    steps = program.steps

    def best_of(fn, repeats: int = 3) -> float:
        fn()  # warm-up: onnxruntime session, BLAS buffers, torch dispatch caches
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    ref = reference.run(program, x)
    ref_s = best_of(lambda: reference.run(program, x))
    with torch.no_grad():
        torch_s = best_of(lambda: model(torch.from_numpy(x)))

    n_lava = 64
    t0 = time.perf_counter()
    lava = lava_backend.run(program, x[:n_lava])
    lava_s = time.perf_counter() - t0
    ref_small = reference.run(program, x[:n_lava])
    identical = first_divergence(program, ref_small, lava, ("reference", "lava")) is None
    lava_steps = n_lava * steps + len(program.populations)

    ref_steps_per_s = len(x) * steps / ref_s
    print(json.dumps({
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, {platform.python_version()}",
        "artifact": "bispike-mlp on loihi2",
        "tokens": len(x),
        "reference_tokens_per_s": round(len(x) / ref_s, 1),
        "reference_steps_per_s": round(ref_steps_per_s, 1),
        "lava_fixed_pt_steps_per_s": round(lava_steps / lava_s, 1),
        "lava_includes_startup_s": True,
        "reference_over_lava_steps": round(ref_steps_per_s / (lava_steps / lava_s), 1),
        "torch_float_tokens_per_s": round(len(x) / torch_s, 1),
        "reference_over_torch_tokens": round(torch_s / ref_s, 3),
        "lava_equals_reference": identical,
        "saturations": sum(ref.saturations.values()),
    }, indent=1))


if __name__ == "__main__":
    main()
