"""Energy per token of the SpikeGPT-216M shape over a long text (issue 17 item 5); prints one JSON object.

The artifact is the folded 216M layout that `bench/compile_published.py` makes (random weights under upstream's
key names, `spikestack compile SpikeGPT-216M.pth --dataflow --calibrate 0`): 91 relay layers, 413 M chip
synapses, about 3,300 cores on 26 Loihi 2 chips. Pass `--artifact DIR` to reuse one (the `art` folder that
`compile_published.py --keep DIR` leaves), else it is built in a temp folder first (not timed).

Timed, in a child process from start to exit, is the user's command

    spikestack simulate art --tokens 1024 --streams 16 [--workers N]

(load the artifact, run the reference executor over the validation text, count and price every event). SpikeGPT
streams one position per call, so one stream of 1,024 tokens is 1,024 calls that each read all 1.65 GB of the
folded products for one row; `--streams 16` reads the text as 16 independent streams of 64 batched in each call
(spikestack/evaluation.py `hybrid_inputs`), and they are the units `--workers` shards. The peak RSS is the child's
(`os.wait4`); the JSON carries the 1-minute load average at the start and the child's CPU seconds, since wall time
grows with other jobs on a shared machine.

Goal (issue 17): <= 60 s for 1,024 tokens on a 2-core machine.
Run: .venv/bin/python bench/simulate_scale.py [--artifact DIR] [--tokens 1024] [--streams 16] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from compile_published import run_timed  # the sibling bench (this script's folder is on sys.path)

BENCH = Path(__file__).resolve().parent


def build(folder: Path) -> Path:
    """The folded 216M artifact in `folder`/art (compile_published.py, --calibrate 0: the mapped artifact alone)."""
    subprocess.run([sys.executable, str(BENCH / "compile_published.py"), "--keep", str(folder), "--calibrate", "0"],
                   check=True, stdout=subprocess.DEVNULL)
    return folder / "art"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifact", help="a folded 216M artifact folder (default: build one in a temp folder)")
    ap.add_argument("--tokens", type=int, default=1024, help="validation tokens simulated")
    ap.add_argument("--streams", type=int, default=16, help="independent streams the tokens are read as")
    ap.add_argument("--workers", type=int, help="shard the streams on a local Dask cluster of N workers")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        art = Path(args.artifact) if args.artifact else build(Path(tmp))
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "spikestack.cli", "simulate", str(art), "--tokens", str(args.tokens),
               "--streams", str(args.streams), "--json"]
        if args.workers:
            cmd += ["--workers", str(args.workers)]
        load = os.getloadavg()[0]
        seconds, rss_gb, cpu_s, _ = run_timed(cmd + ["--quiet"], report)
        r = json.loads(report.read_text())
    print(json.dumps({
        "command": " ".join(["spikestack simulate art", *cmd[5:]]),
        "tokens": r["tokens"], "streams": args.streams, "workers": args.workers or 0,
        "seconds": round(seconds, 1), "cpu_s": round(cpu_s, 1), "peak_rss_gb": round(rss_gb, 2),
        "tokens_per_s": round(r["tokens"] / seconds, 1), "energy_per_token_j": r["energy_per_token_j"],
        "cores": r.get("cores"), "machine": f"{platform.machine()} {os.cpu_count()} cpus, {platform.python_version()}",
        "load_avg_1min": round(load, 2), "goal": "<= 60 s for 1,024 tokens on 2 cores (issue 17)"}, indent=1))


if __name__ == "__main__":
    main()
