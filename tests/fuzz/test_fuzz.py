"""The fuzz suite: one test per kind of untrusted input, each running all of its cases and then listing every
failure grouped by cause (conftest.py says how to reproduce one). CI runs the counts below, `-m slow` ten times
as many (the CLI-number grid: every command x every value)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .cases import number_seeds, run_kind
from .harness import report, snapshot, write_results
from .seeds import Seeds

# Chosen so that the CI share is > 1,000 cases in about 2 minutes on 2 cores (measured: artifact and inspect
# cases ~0.05-0.3 s, compiles ~0.1-0.3 s, checkpoint cases ~0.2 s).
CI_CASES = {"nir": 250, "artifact": 400, "checkpoint": 150, "target": 80, "profile": 80}
SLOW_FACTOR = 10
TIERS = [pytest.param(1, id="ci"), pytest.param(SLOW_FACTOR, id="slow", marks=pytest.mark.slow)]


def _fuzz(kind: str, case_seeds: list[int], seeds: Seeds, root: Path) -> None:
    seeds_before = snapshot(seeds.folder)
    results = run_kind(kind, case_seeds, seeds, root)
    write_results(results, root / f"{kind}-results.json")
    failures = [r for r in results if r.problems]
    assert not failures, report(kind, results, root / f"{kind}-results.json")
    assert snapshot(seeds.folder) == seeds_before, "a case changed the shared seed inputs"
    assert len(results) == len(case_seeds)


# pytest-timeout is off here: each case has its own 20 s limit (harness.CASE_TIMEOUT_S) and a watchdog.
@pytest.mark.timeout(0)
@pytest.mark.parametrize("factor", TIERS)
def test_nir_files(factor: int, fuzz_seeds: Seeds, fuzz_root: Path) -> None:
    _fuzz("nir", list(range(CI_CASES["nir"] * factor)), fuzz_seeds, fuzz_root)


@pytest.mark.timeout(0)
@pytest.mark.parametrize("factor", TIERS)
def test_artifacts(factor: int, fuzz_seeds: Seeds, fuzz_root: Path) -> None:
    _fuzz("artifact", list(range(CI_CASES["artifact"] * factor)), fuzz_seeds, fuzz_root)


@pytest.mark.timeout(0)
@pytest.mark.parametrize("factor", TIERS)
def test_checkpoints(factor: int, fuzz_seeds: Seeds, fuzz_root: Path) -> None:
    _fuzz("checkpoint", list(range(CI_CASES["checkpoint"] * factor)), fuzz_seeds, fuzz_root)


@pytest.mark.timeout(0)
@pytest.mark.parametrize("factor", TIERS)
def test_targets(factor: int, fuzz_seeds: Seeds, fuzz_root: Path) -> None:
    _fuzz("target", list(range(CI_CASES["target"] * factor)), fuzz_seeds, fuzz_root)


@pytest.mark.timeout(0)
@pytest.mark.parametrize("factor", TIERS)
def test_profiles(factor: int, fuzz_seeds: Seeds, fuzz_root: Path) -> None:
    _fuzz("profile", list(range(CI_CASES["profile"] * factor)), fuzz_seeds, fuzz_root)


@pytest.mark.timeout(0)
@pytest.mark.parametrize("ci", [pytest.param(True, id="ci"), pytest.param(False, id="slow", marks=pytest.mark.slow)])
def test_cli_numbers(ci: bool, fuzz_seeds: Seeds, fuzz_root: Path) -> None:
    _fuzz("numbers", number_seeds(ci), fuzz_seeds, fuzz_root)
