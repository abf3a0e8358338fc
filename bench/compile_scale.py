"""Compiler scaling: bi-spike MLP chains of growing width with random weights (no checkpoint needed); prints JSON.

Issue 5 asks for SpikeGPT shapes up to 216M; the compiler lowers bi-spike and LIF chains today, so this measures
the same passes (quantize, partition, min-cut placement, artifact write) on chains of comparable synapse counts.
Each size runs in a fresh process so peak RSS is its own. Run: .venv/bin/python bench/compile_scale.py
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

SIZES = [(256, 4), (1024, 4), (2048, 6), (4096, 6), (4096, 14)]  # (width, hidden layers)


def one(width: int, layers: int) -> dict:
    from spikestack.compiler import artifact
    from spikestack.compiler.pipeline import compile_graph
    from spikestack.models.nir.synthetic import bispike_chain

    graph = bispike_chain(seed=0, vocab=1000, context=1, emb=width, hidden=(width,) * (layers - 1), out=width,
                          weight_std=None, bias_std=0.0, dtype=np.float32)
    t0 = time.perf_counter()
    program = compile_graph(graph, "loihi2")
    t_compile = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        artifact.save(program, f"{tmp}/art")
        t_save = time.perf_counter() - t0
    return {"width": width, "hidden_layers": layers, "synapses": int(sum(p.weight.size for p in program.projections)),
            "cores": len(program.cores), "chips": len({c.chip for c in program.cores}),
            "compile_s": round(t_compile, 2), "save_s": round(t_save, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main() -> None:
    if len(sys.argv) == 3:
        print(json.dumps(one(int(sys.argv[1]), int(sys.argv[2]))))
        return
    rows = []
    for width, layers in SIZES:
        out = subprocess.run([sys.executable, __file__, str(width), str(layers)], capture_output=True, text=True,
                             check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    print(json.dumps({"machine": f"{platform.machine()} {os.cpu_count()} cpus", "target": "loihi2",
                      "results": rows}, indent=1))


if __name__ == "__main__":
    main()
