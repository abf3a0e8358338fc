"""Fuzz suite for untrusted inputs (issue #11): seeded mutations of NIR files, artifacts, checkpoints,
target/profile files and CLI numbers, each run in-process through `spikestack.cli.main` and held to the CLI's
contract (tests/fuzz/harness.py says which promises, and why in-process).

A case is named `kind:seed`; the seed alone builds its input (random.Random(f"{kind}:{seed}")), so a failure
reproduces on any machine with the same code:

    .venv/bin/python -m tests.fuzz.replay artifact 123            # builds the seeds, runs the case, shows all
    .venv/bin/python -m tests.fuzz.replay artifact 123 --seeds /tmp/fuzz-seeds --keep   # reuse seeds, keep files

The whole suite (CI's share; the `slow` marker runs 10x as many cases):

    .venv/bin/python -m pytest -q tests/fuzz -p no:randomly
    .venv/bin/python -m pytest -q tests/fuzz -p no:randomly -m slow

A failing test prints the failures grouped by cause (problem and the file:line that raised) with examples, and
writes every case (exit code, problems, stderr tail) as JSON next to the kept case folders (the path is in the
message). Should the run end abruptly (a case stuck in C code for 90 s, past its SIGALRM), every thread's stack is
in watchdog.txt in that folder (pytest's basetemp/fuzz-cases0).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .seeds import Seeds, build_seeds


@pytest.fixture(scope="session")
def fuzz_seeds(tmp_path_factory: pytest.TempPathFactory) -> Seeds:
    """The valid inputs, built once per session (~10 s: the hybrid artifact is a full compile)."""
    return build_seeds(tmp_path_factory.mktemp("fuzz-seeds"))


@pytest.fixture(scope="session")
def fuzz_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the case folders go; failing cases keep theirs for a look."""
    return tmp_path_factory.mktemp("fuzz-cases")
