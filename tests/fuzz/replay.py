"""Replay fuzz cases by id: `python -m tests.fuzz.replay KIND SEED [SEED ...] [--seeds DIR] [--keep]`.

Prints the argv, the mutation, the exit code, all of stdout/stderr and the broken promises of each case; with
--keep the case folders stay (their paths are printed) for a closer look at the mutated input.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from .cases import cleanup, make_case
from .harness import run_case
from .seeds import Seeds, build_seeds, seed_paths


def _seeds(folder: Path) -> Seeds:
    if (folder / "art-hybrid" / "manifest.json").exists():  # built before: reuse (the hybrid compile takes ~7 s)
        return seed_paths(folder)
    return build_seeds(folder)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("kind", choices=["nir", "artifact", "checkpoint", "target", "profile", "numbers"])
    p.add_argument("seed", type=int, nargs="+")
    p.add_argument("--seeds", type=Path, help="folder for the seed inputs (built if empty, reused otherwise)")
    p.add_argument("--keep", action="store_true", help="keep the case folders")
    args = p.parse_args()
    seeds = _seeds(args.seeds or Path(tempfile.mkdtemp(prefix="fuzz-seeds-")))
    root = Path(tempfile.mkdtemp(prefix="fuzz-replay-"))
    failed = 0
    for seed in args.seed:
        result = run_case(make_case(args.kind, seed, seeds, root))
        print(f"=== {result.case.id}: {'FAIL' if result.problems else 'ok'} ({result.wall_s:.2f} s)\n"
              f"argv: {' '.join(result.case.argv)}\nmutation: {result.case.note}\nexit: {result.rc}\n"
              f"problems: {result.problems}\norigin: {result.origin}\n--- stdout\n{result.stdout[-4000:]}"
              f"--- stderr\n{result.stderr[-8000:]}")
        failed += bool(result.problems)
        if args.keep:
            print(f"kept: {result.case.scratch} {result.case.outside}")
        else:
            cleanup(result.case)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
