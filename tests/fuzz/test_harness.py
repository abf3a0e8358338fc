"""The harness must see every broken promise, or a green fuzz run proves nothing: fake `main`s that break one
promise each, and the malicious payload really running when a loader unpickles it."""

from __future__ import annotations

import pickle
import sys
import time
from pathlib import Path

import pytest

from . import harness
from .cases import case_dirs
from .checkpoint_cases import Touch
from .harness import Case, run_case


def _case(tmp_path: Path, output: bool = True, **kwargs) -> Case:
    scratch, outside = case_dirs(tmp_path, "self", 0)
    (scratch / "input.txt").write_text("x")
    return Case("self", 0, ["x"], scratch, outside, output=scratch / "out" if output else None, **kwargs)


def _with_main(monkeypatch: pytest.MonkeyPatch, fn) -> None:
    monkeypatch.setattr("spikestack.cli.main", fn)


def test_payload_is_live(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(Touch(marker), protocol=2))
    assert marker.exists()


def test_clean_error_passes(tmp_path, monkeypatch) -> None:
    def main(argv):
        print("spikestack: error: input.txt: bad", file=sys.stderr)
        return 2

    _with_main(monkeypatch, main)
    result = run_case(_case(tmp_path))
    assert result.problems == [] and result.rc == 2


@pytest.mark.parametrize("behaviour, problem", [
    ("raise", "exception ValueError: boom"),
    ("two_lines", "stderr not one 'spikestack: error:' line (2 lines, first 'warning')"),
    ("exit_1", "exit code 1"),
    ("write_then_fail", "output out written on failure"),
    ("litter", "scratch folder changed: +litter"),
    ("outside", "file outside the scratch folder touched: ~victim.txt"),
    ("temp", "temporary files left: leak"),
    ("payload", "malicious payload ran: ran created"),
    ("accept", "accepted an input that must be rejected"),
    ("nan_json", "stdout not strict JSON (non-standard JSON constant NaN)"),
    ("no_output", "exit 0 without output out"),
])
def test_each_broken_promise_is_reported(behaviour, problem, tmp_path, monkeypatch) -> None:
    case = _case(tmp_path, expect_error=behaviour == "accept", json_stdout=behaviour == "nan_json",
                 forbidden=(tmp_path / "ran",))

    def main(argv):
        import tempfile

        if behaviour == "raise":
            raise ValueError("boom")
        if behaviour == "two_lines":
            print("warning\nspikestack: error: x", file=sys.stderr)
            return 2
        if behaviour == "exit_1":
            return 1
        if behaviour == "write_then_fail":
            Path("out").mkdir()
            print("spikestack: error: x", file=sys.stderr)
            return 2
        if behaviour == "litter":
            Path("litter").write_text("x")
        if behaviour == "outside":
            (case.outside / "victim.txt").write_text("changed, and longer than before")
        if behaviour == "temp":
            Path(tempfile.gettempdir(), "leak").write_text("x")
        if behaviour == "payload":
            pickle.loads(pickle.dumps(Touch(tmp_path / "ran")))
        if behaviour == "nan_json":
            print('{"energy_j": NaN}')
        if behaviour != "no_output":
            Path("out").mkdir()
        return 0

    _with_main(monkeypatch, main)
    result = run_case(case)
    assert result.problems == [problem]


@pytest.mark.parametrize("category, lines", [(UserWarning, 3), (RuntimeWarning, 3), (DeprecationWarning, 1)])
def test_warnings_count_as_a_user_would_see_them(category, lines, tmp_path, monkeypatch) -> None:
    """A fresh process prints a UserWarning (2 lines) before the error, but no library DeprecationWarning."""
    import warnings

    def main(argv):
        warnings.warn("noise", category, stacklevel=1)
        print("spikestack: error: x", file=sys.stderr)
        return 2

    _with_main(monkeypatch, main)
    result = run_case(_case(tmp_path, output=False))
    assert len(result.stderr.strip().splitlines()) == lines
    assert bool(result.problems) == (lines > 1)


def test_hang_and_memory(tmp_path, monkeypatch) -> None:
    def hang(argv):
        while True:
            time.sleep(0.01)

    _with_main(monkeypatch, hang)
    result = run_case(_case(tmp_path, output=False), timeout_s=0.3)
    assert result.problems == ["hang"] and "test_harness.py" in result.origin

    def allocate(argv):
        return len(bytearray(harness.ADDRESS_HEADROOM_BYTES + (1 << 30)))

    _with_main(monkeypatch, allocate)
    result = run_case(_case(tmp_path, output=False))
    assert result.problems[0].startswith("exception MemoryError")
