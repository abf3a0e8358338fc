"""Compiler scaling on SpikeGPT shapes up to the 216M model (issue 5), random weights, no checkpoint; prints JSON.

Section ``spikegpt`` (default): `SpikeGPT(SpikeGPTConfig(...))` with random weights → `spikegpt_to_nir` →
`compile_hybrid(graph, "loihi2", ids)` on a small calibration input → `artifact.save`, for growing width up to
18 layers × 768, vocab 50,277 (the 216M shape, REFERENCE.md §3.2). Per size: seconds per phase (model init,
export, cut, calibrate, quantize, host build, ONNX export, partition/place, save), peak RSS, the model's
parameters, the host parameters (Linear/Affine weights and embedding rows in the host stages), chip synapses
(weights of chip projections) and cores. Two modes, each its own list of results:

* ``honest`` (`spikegpt`): the honest cut (compiler/hybrid/cut.py). Every SpikeGPT Linear reads real values and
  runs on the host, so chip synapses are 0 and the chip holds only the 2·L LIF populations. The embedding is
  binary only at the character vocabulary, as in the published models.
* ``dataflow`` (`spikegpt_dataflow`): `compile_hybrid(..., dataflow=True)` (compiler/hybrid/fold.py), with the
  published embedding (real-valued above 77 ids: its LN0 output travels as 8-bit graded events; binary at the
  character vocabulary). Every Linear that reads the normed residual stream (time-mix key, value and
  receptance, channel-mix key and receptance, the head) becomes a ``relay`` chip projection whose weights stack
  the current-token and token-shifted branches (rows) and the e and S column groups, so its chip synapses are
  about twice the model's parameters (≈ 413 M at the 216M shape, on about 3,300 cores). Relays get their input
  from the host, so calibration (1 × 8 random ids) only sets the LIF units; random weights rarely make a LIF
  spike, which does not matter to the compiler's work.

Each mode fits total seconds against the weights it compiles (host parameters + chip synapses).

Section ``chains`` (`--chains`): the older benchmark, bi-spike MLP chains of growing width through the chain
compiler (quantize, partition, min-cut placement, artifact write), where every synapse is on chip.

Each size runs in a fresh process so peak RSS is its own. Goal (issue 5, the shared 2-core machine): the 216M
shape in <= 60 s and <= 6 GB. Run: .venv/bin/python bench/compile_scale.py [--quick] [--chains]
[--mode honest|dataflow|both] [--sizes L:C:V,...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

# (n_layer, n_embd, vocab): growing width at the 216M depth and vocab, then the 216M shape itself
SPIKEGPT_SIZES = [(18, 128, 50277), (18, 256, 50277), (18, 512, 50277), (18, 768, 50277)]
SPIKEGPT_QUICK = [(2, 64, 77), (4, 128, 5458), (6, 256, 50277)]
CHAIN_SIZES = [(256, 4), (1024, 4), (2048, 6), (4096, 6), (4096, 14)]  # (width, hidden layers)
CHAIN_QUICK = [(256, 4), (1024, 4)]
CALIBRATION_SHAPE = (1, 8)  # ids [B, L] for calibrate(): one short sequence


def _rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _cpu_s() -> float:
    """User + system CPU seconds of this process so far. `cpu_s` of a row spans the same work as `total_s`: on
    the shared machine, wall time grows with the other jobs' load (`load_avg_1min`), CPU time much less."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return round(usage.ru_utime + usage.ru_stime, 2)


def _dir_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def one_spikegpt(n_layer: int, n_embd: int, vocab: int, dataflow: bool = False) -> dict:
    import nir
    import torch
    from spikestack.compiler import artifact
    from spikestack.compiler.hybrid.compile import compile_hybrid
    from spikestack.models.nir.export_spikegpt import spikegpt_to_nir
    from spikestack.models.nir.nodes import Embedding
    from spikestack.models.spikegpt import SpikeGPT, SpikeGPTConfig
    from spikestack.models.threads import one_torch_thread

    phases: dict[str, float] = {}
    cpu0 = _cpu_s()
    t0 = time.perf_counter()
    torch.manual_seed(0)
    # float embedding for BPE vocabularies (REFERENCE.md §3.5); the dataflow fold takes both (fold.py)
    cfg = SpikeGPTConfig(vocab_size=vocab, n_layer=n_layer, n_embd=n_embd, ctx_len=1024,
                         binary_embedding=vocab <= 77)
    with torch.no_grad():
        model = SpikeGPT(cfg).eval()
    params = sum(p.numel() for p in model.parameters())
    phases["model_init"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    graph = spikegpt_to_nir(model)
    phases["export"] = time.perf_counter() - t0
    del model
    ids = np.random.default_rng(0).integers(0, vocab, size=CALIBRATION_SHAPE)
    t_compile = time.perf_counter()
    with one_torch_thread():
        program = compile_hybrid(graph, "loihi2", ids, timings=phases, dataflow=dataflow)
    t_compile = time.perf_counter() - t_compile
    host_names = {n for st in program.stages for n in st.ops}
    host_params = sum(int(np.asarray(node.weight).size) for name, node in graph.nodes.items()
                      if name in host_names and isinstance(node, nir.Linear | nir.Affine | Embedding))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        artifact.save(program, f"{tmp}/art")
        phases["save"] = time.perf_counter() - t0
        art_bytes = _dir_bytes(f"{tmp}/art")
    synapses = sum(int(np.asarray(la.projection.weight).size) for la in program.layers if la.projection is not None)
    total = sum(phases.values())
    return {"mode": "dataflow" if dataflow else "honest", "shape": f"{n_layer}x{n_embd}", "n_layer": n_layer,
            "n_embd": n_embd, "vocab": vocab, "params": params, "host_params": host_params, "chip_synapses": synapses,
            "relay_layers": sum(la.kind == "relay" for la in program.layers), "chip_layers": len(program.layers),
            "chip_neurons": sum(la.width for la in program.layers),
            "cores": len(program.cores), "chips": len({c.chip for c in program.cores}),
            "max_fan_in": max(c.axons_in for c in program.cores),  # loihi2: 4,096 input axons per core
            "min_neurons_per_core": min(c.hi - c.lo for c in program.cores),
            "host_stages": len(program.stages), "onnx_bytes": sum(len(st.onnx) for st in program.stages),
            "largest_onnx_bytes": max(len(st.onnx) for st in program.stages),  # protobuf's limit is 2 GiB
            "artifact_bytes": art_bytes, "compile_s": round(t_compile, 2),
            "total_s": round(total, 2), "cpu_s": round(_cpu_s() - cpu0, 2),
            "load_avg_1min": round(os.getloadavg()[0], 2),
            "phases_s": {k: round(v, 3) for k, v in phases.items()}, "peak_rss_mb": _rss_mb()}


def one_chain(width: int, layers: int) -> dict:
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
            "compile_s": round(t_compile, 2), "save_s": round(t_save, 2), "peak_rss_mb": _rss_mb()}


def _child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, "--one", *args], capture_output=True, text=True)
    if out.returncode:
        return {"args": args, "error": (out.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _linearity(rows: list[dict]) -> dict | None:
    """Least-squares total_s = a + b · (compiled weights in millions: host parameters + chip synapses) over the
    sizes, and the largest relative residual: small residuals mean time is linear in weights (with a fixed
    cost a)."""
    ok = [r for r in rows if "error" not in r]
    if len(ok) < 3:
        return None
    x = np.array([(r["host_params"] + r["chip_synapses"]) / 1e6 for r in ok])
    y = np.array([r["total_s"] for r in ok])
    b, a = np.polyfit(x, y, 1)
    return {"fixed_s": round(float(a), 3), "s_per_million_weights": round(float(b), 4),
            "max_relative_residual": round(float(np.max(np.abs(a + b * x - y) / y)), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small shapes only (about a minute)")
    ap.add_argument("--chains", action="store_true", help="also run the bi-spike chain section")
    ap.add_argument("--no-spikegpt", action="store_true", help="skip the SpikeGPT section")
    ap.add_argument("--mode", choices=("honest", "dataflow", "both"), default="both",
                    help="SpikeGPT compile mode: honest cut, dataflow fold, or both")
    ap.add_argument("--sizes", help="SpikeGPT shapes as L:C:V,L:C:V (overrides the defaults)")
    ap.add_argument("--one", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        kind, *rest = args.one
        if kind == "chain":
            row = one_chain(*map(int, rest))
        else:
            row = one_spikegpt(*map(int, rest), dataflow=kind == "dataflow")
        print(json.dumps(row))
        return
    out: dict = {"machine": f"{platform.machine()} {os.cpu_count()} cpus", "target": "loihi2",
                 "goal": "216M shape (18x768, vocab 50277) in <= 60 s and <= 6 GB peak RSS"}
    if not args.no_spikegpt:
        sizes = ([tuple(int(x) for x in s.split(":")) for s in args.sizes.split(",")] if args.sizes
                 else SPIKEGPT_QUICK if args.quick else SPIKEGPT_SIZES)
        for mode, key in (("honest", "spikegpt"), ("dataflow", "spikegpt_dataflow")):
            if args.mode in (mode, "both"):
                rows = [_child([mode, *map(str, s)]) for s in sizes]
                out[key] = {"mode": mode, "calibration_ids": list(CALIBRATION_SHAPE), "results": rows,
                            "time_vs_weights": _linearity(rows)}
    if args.chains:
        out["chains"] = {"results": [_child(["chain", str(w), str(n)])
                                     for w, n in (CHAIN_QUICK if args.quick else CHAIN_SIZES)]}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
