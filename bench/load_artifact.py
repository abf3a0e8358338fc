"""Peak memory of loading a big artifact and running a few tokens, eager against lazy (issue 17); prints JSON.

What it does: for each mode, a fresh child process imports spikestack, runs `spikestack.load(ARTIFACT)` and one
run of `--tokens` positions of one sequence on the reference executor, and reports seconds and memory from
/proc/self/status after import, after load and after the run: VmHWM (peak resident set so far), VmRSS, RssAnon
(the process's own memory) and RssFile (pages of mapped files: the lazy arrays, reclaimable page cache).

* ``lazy``: `load` as shipped: arrays of at least 1 MiB (compiler/artifact_files.py `MAP_MIN_BYTES`) are mapped
  read-only after their sha256 is streamed, the checks scan them piece by piece.
* ``eager``: the same code with `MAP_MIN_BYTES` raised above every array, so every array is read into memory
  after its hash, as `load` did before arrays were mapped (host programs are handled alike in both modes; the
  earlier loader also kept a second copy of a host program shared by prefill and decode, and re-serialized each
  one for the ONNX checker).

Measured 2026-12-03 on the shared 2-core, 23 GB VM (load 4-5), the 2-layer LLaMA-7B-shaped artifact of
`bench/compile_7b.py` (2.9 GB: 0.8 GB of chip weights mapped, 2.1 GB of host ONNX), 2 tokens: lazy 1.66 GB
resident after load (peak 2.19 GB), 3.93 GB peak after the run; eager 2.47 GB (peak 2.99 GB), 4.08 GB; the loader
before this change 3.52 GB, 5.13 GB. Same logits in every mode. Load seconds (12-25 s, of which 5 s import torch
for the verifier) varied more with the load than between modes.

The run uses the reference chip without its per-layer float weight cache, as bench/compile_7b.py does (7B's
cached float weights would not fit in memory). Every file of the artifact is read once before the children start,
so both modes find it in the page cache. Host programs (ONNX) are read whole in both modes: the runtime builds its
onnxruntime sessions from bytes.

Make a big artifact with `bench/compile_7b.py --shape 2:4096:11008:32000 --tokens 0 --keep --dir DIR` (the folder
it keeps holds `artifact/`) or `bench/compile_scale.py`. Run: .venv/bin/python bench/load_artifact.py ARTIFACT
[--tokens 2] [--modes eager,lazy]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

_STATUS_KEYS = ("VmHWM", "VmRSS", "RssAnon", "RssFile")


def _memory() -> dict[str, int]:
    """The process's memory figures in bytes (/proc/self/status gives kB)."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in _STATUS_KEYS:
            out[f"{key}_bytes"] = int(value.split()[0]) * 1024
    return out


def _child(art: Path, mode: str, tokens: int) -> None:
    """Load and run in this process; print one JSON line."""
    import numpy as np
    from spikestack.compiler import artifact_files
    from spikestack.runtime.hybrid.executor import ReferenceChip
    from spikestack.runtime.hybrid.executor import run as run_hybrid

    import spikestack as ss

    if mode == "eager":
        artifact_files.MAP_MIN_BYTES = 1 << 62  # above every array: all read, the path before lazy loading
    figures: dict = {"mode": mode, "after_import": _memory()}
    start = time.perf_counter()
    program = ss.load(art)
    figures.update(load_s=round(time.perf_counter() - start, 2), after_load=_memory())
    arrays = [a for la in program.layers for a in (la.projection.weight if la.projection else None,) if a is not None]
    figures["mapped_weight_bytes"] = sum(a.nbytes for a in arrays if artifact_files.mapping_of(a) is not None)
    figures["weight_bytes"] = sum(a.nbytes for a in arrays)

    class OneLayerAtATime(ReferenceChip):
        """The reference chip without its per-layer float weight cache (bench/compile_7b.py says why)."""

        def segment(self, layers, inputs, call):
            out = super().segment(layers, inputs, call)
            for la in layers:
                self.states[la.name].extra.pop("weight", None)
            return out

    ids = np.arange(1, tokens + 1, dtype=np.int64)[None, :] * 7 % program.vocab_size  # as bench/compile_7b.py
    start = time.perf_counter()
    trace = run_hybrid(program, ids, OneLayerAtATime())
    figures.update(run_s=round(time.perf_counter() - start, 2), after_run=_memory(),
                   logits_sha256=hashlib.sha256(np.ascontiguousarray(trace.logits)).hexdigest())
    print(json.dumps(figures))


def _warm(art: Path) -> int:
    """Read every file once (page cache warm for both modes); returns the artifact's bytes on disk."""
    total = 0
    for path in sorted(art.rglob("*")):
        if path.is_file():
            with open(path, "rb") as f:
                while chunk := f.read(16 << 20):
                    total += len(chunk)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--tokens", type=int, default=2)
    parser.add_argument("--modes", default="eager,lazy")
    parser.add_argument("--child", choices=("eager", "lazy"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.artifact, args.child, args.tokens)
        return
    art = args.artifact.resolve()
    if not (art / "manifest.json").is_file():
        sys.exit(f"{art}: not an artifact folder (no manifest.json)")
    sizes = {"artifact_bytes": _warm(art),
             "array_bytes": sum(p.stat().st_size for p in (art / "arrays").glob("*.npy")),
             "host_bytes": sum(p.stat().st_size for p in (art / "host").glob("*.onnx"))}
    load_before = os.getloadavg()
    results = []
    for mode in args.modes.split(","):
        child = subprocess.run([sys.executable, __file__, str(art), "--tokens", str(args.tokens), "--child", mode],
                               capture_output=True, text=True, check=False)
        if child.returncode:
            sys.exit(f"{mode} child failed ({child.returncode}): {child.stderr.strip().splitlines()[-1:]}")
        results.append(json.loads(child.stdout.strip().splitlines()[-1]))
    print(json.dumps({"artifact": str(art), **sizes, "tokens": args.tokens, "results": results,
                      "same_logits": len({r["logits_sha256"] for r in results}) == 1,
                      "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                  "memory_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
                                  "load_average_1_5_15_before": [round(x, 2) for x in load_before],
                                  "load_average_1_5_15_after": [round(x, 2) for x in os.getloadavg()]}},
                     indent=1))


if __name__ == "__main__":
    main()
