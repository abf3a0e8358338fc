"""Generation shows progress per token on a terminal and nothing in a pipe or under --quiet (issue #12: Lava
generate is seconds per token), for chain programs and hybrid ones."""

import io
from types import SimpleNamespace

import numpy as np
import pytest
from spikestack.runtime import reference
from spikestack.runtime.generate import generate
from spikestack.runtime.hybrid import verify as hybrid_verify

from spikestack import progress as progress_mod

VOCAB = "abcdefghijk"  # the conftest chain has 11 ids


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def quiet_restored():
    progress_mod.set_quiet(False)
    yield
    progress_mod.set_quiet(False)


def _terminal(monkeypatch) -> _Terminal:
    """stderr as a terminal; set inside the test, since pytest's capture replaces sys.stderr after fixtures."""
    err = _Terminal()
    monkeypatch.setattr("sys.stderr", err)
    return err


def test_chain_generate_shows_progress_on_a_terminal_only(program, monkeypatch, quiet_restored):
    terminal = _terminal(monkeypatch)
    text, ids = generate(program, VOCAB, "ab", 3, reference.run)
    assert len(ids) == 3 and text.startswith("ab") and len(text) == 5
    assert "\rgenerate:   0%|" in terminal.getvalue() and "0/3" in terminal.getvalue()
    terminal.seek(0)
    terminal.truncate()
    progress_mod.set_quiet(True)
    assert generate(program, VOCAB, "ab", 3, reference.run) == (text, ids)  # same tokens, no bar
    assert terminal.getvalue() == ""


class _Session:
    """Stands in for the executor's Session: logits favour id (last + 1) mod 5."""

    def __init__(self, *_args, **_kwargs) -> None:
        pass

    def step_token(self, tok: np.ndarray) -> np.ndarray:
        logits = np.zeros((1, 5))
        logits[0, (int(tok[0]) + 1) % 5] = 1.0
        return logits

    def close(self) -> None:
        pass


def test_hybrid_generate_shows_prompt_and_token_progress(monkeypatch, quiet_restored):
    terminal = _terminal(monkeypatch)
    monkeypatch.setattr(hybrid_verify, "Session", _Session)
    program = SimpleNamespace(time_axis="tokens")
    assert hybrid_verify.generate_ids(program, [0, 1], 4, chip=lambda: None) == [0, 1, 2, 3, 4, 0]
    shown = terminal.getvalue()
    assert "\rprompt:   0%|" in shown and "0/2" in shown and "\rgenerate:   0%|" in shown and "0/4" in shown
