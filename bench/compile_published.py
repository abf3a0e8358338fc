"""The user's way to a mapped SpikeGPT-216M (issue 13, item 6): one command from a published `.pth` to an artifact.

A child process writes a random state dict with the published key names and shapes of SpikeGPT-216M
(upstream's `GPT(model_type='RWKV')`, 18 layers × 768, vocab 50,277, float embedding; ridgerchu/SpikeGPT) to a
temp folder as `SpikeGPT-216M.pth`. Then the one command runs in its own process, timed from start to exit:

    spikestack compile SpikeGPT-216M.pth --dataflow -o art

with the CLI's defaults, so `--calibrate 256`: the per-layer error report, which at this size runs on the
positions its weight budget allows (spikestack/compilation.py LAYER_ERROR_WEIGHT_POSITIONS: 4 here; the row says
how many it used). Before that budget it ran all 256 positions token by token: 390 s and 11.6 GB, measured.
`--calibrate 0` times the mapped artifact alone.

Its peak RSS comes from `os.wait4` (that child alone, not the writer; the child's own forked ONNX exporter,
compiler/hybrid/host_export.py, counts as the larger of the two, not their sum, and shares its pages).
Afterwards the artifact is loaded and simulated for `--tokens` tokens (reference executor, the target's default
profile) for energy per token; that part is not timed. Prints JSON {seconds, cpu_s, peak_rss_gb, cores, chips,
energy_per_token_j, machine, load_avg_1min}.

Goal (issue 13): <= 30 s and <= 4 GB on a 2-core machine. Wall time grows with other jobs' load: the row carries
the 1-minute load average at the start and the child's CPU seconds.
Run: .venv/bin/python bench/compile_published.py [--shape L:C:V] [--tokens N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PUBLISHED_216M = (18, 768, 50277)  # SpikeGPT-216M: n_layer, n_embd, vocab (REFERENCE.md §3.2)


def bpe_tokenizer_json(size: int) -> str:
    """A BPE tokenizer.json of exactly `size` ids, standing in for upstream's `20B_tokenizer.json` (50,277 ids):
    printable ASCII and newline, then two- and three-character merges."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    base = [chr(c) for c in range(32, 127)] + ["\n"]
    vocab = {t: i for i, t in enumerate(base)}
    merges: list[tuple[str, str]] = []
    pairs = [(a, b) for a in base for b in base]
    pairs += [(a + b, c) for a, b in pairs for c in base]
    for a, b in pairs:
        if len(vocab) >= size:
            break
        if a + b not in vocab:
            vocab[a + b] = len(vocab)
            merges.append((a, b))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Split(" ", behavior="isolated")
    return tok.to_str()


def write_published(path: Path, n_layer: int, n_embd: int, vocab: int) -> None:
    """Random weights under upstream's key names (our SpikeGPT's state dict uses them), float32, float embedding,
    and a BPE tokenizer.json of the same size beside it (how the user's folder looks)."""
    import torch
    from spikestack.models.spikegpt import SpikeGPT, SpikeGPTConfig

    torch.manual_seed(0)
    cfg = SpikeGPTConfig(vocab_size=vocab, n_layer=n_layer, n_embd=n_embd, ctx_len=1024, binary_embedding=False)
    with torch.no_grad():
        state = SpikeGPT(cfg).float().state_dict()
    torch.save({k: v.contiguous() for k, v in state.items()}, path)
    (path.parent / "tokenizer.json").write_text(bpe_tokenizer_json(vocab))


def run_timed(cmd: list[str], stdout: Path | None = None) -> tuple[float, float, float, str]:
    """(wall seconds, peak RSS GB, CPU seconds, stderr) of one child process; its stdout into `stdout` if given
    (bench/simulate_scale.py reads the JSON it prints), else discarded."""
    start = time.perf_counter()
    with open(stdout, "w") if stdout is not None else open(os.devnull, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE, text=True)
        stderr = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {stderr.strip().splitlines()[-1:]}")
    return seconds, usage.ru_maxrss / 1024**2, usage.ru_utime + usage.ru_stime, stderr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default=":".join(map(str, PUBLISHED_216M)), help="n_layer:n_embd:vocab")
    ap.add_argument("--tokens", type=int, default=4, help="tokens simulated for the energy figure (not timed)")
    ap.add_argument("--calibrate", type=int, default=256,
                    help="compile --calibrate N (default 256, the CLI's; the report takes fewer positions at this "
                         "size and the row says how many; 0: the mapped artifact alone)")
    ap.add_argument("--keep", help="write the .pth and the artifact here instead of a temp folder")
    ap.add_argument("--write-only", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.write_only:
        path, *shape = args.write_only
        write_published(Path(path), *map(int, shape))
        return
    shape = [int(x) for x in args.shape.split(":")]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        pth, art = folder / "SpikeGPT-216M.pth", folder / "art"
        subprocess.run([sys.executable, __file__, "--write-only", str(pth), *map(str, shape)], check=True)
        load = os.getloadavg()[0]
        cli = [sys.executable, "-m", "spikestack.cli", "compile", str(pth), "--dataflow", "--calibrate",
               str(args.calibrate), "-o", str(art)]
        seconds, rss_gb, cpu_s, _ = run_timed(cli)

        import spikestack as api

        program = api.load(art)
        report = api.simulate(program, tokens=args.tokens).to_dict()
        positions = (program.report.get("calibration") or {}).get("positions", 0)
        row = {"command": f"spikestack compile {pth.name} --dataflow --calibrate {args.calibrate} -o art",
               "shape": args.shape, "calibration_positions": positions,
               "seconds": round(seconds, 1), "cpu_s": round(cpu_s, 1), "peak_rss_gb": round(rss_gb, 2),
               "cores": len(program.cores), "chips": len({c.chip for c in program.cores}),
               "relay_layers": sum(la.kind == "relay" for la in program.layers),
               "energy_per_token_j": report.get("energy_per_token_j"), "simulated_tokens": args.tokens,
               "machine": f"{platform.machine()} {os.cpu_count()} cpus, {platform.python_version()}",
               "load_avg_1min": round(load, 2), "goal": "<= 30 s and <= 4 GB peak RSS (issue 13)"}
    print(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
