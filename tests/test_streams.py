"""`streams`: a token-streaming program (SpikeGPT) reads --tokens as independent streams, batched per call.

Batching must not change a bit: each stream's logits equal the stream run alone. Programs that read windows
(whole-sequence, step and chain programs) refuse the option by name.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import spikestack
from spikestack.errors import SpikestackError
from spikestack.evaluation import eval_inputs

CKPT = Path(__file__).resolve().parent.parent / "models" / "checkpoints"


@pytest.fixture(scope="module")
def gpt():
    return spikestack.compile(CKPT / "spikegpt-char-2x64.pt", target="loihi2", calibrate=0)


def test_streams_split_the_text_and_batching_changes_no_bit(gpt):
    from spikestack.models.data import load_corpus
    from spikestack.runtime.hybrid.executor import run

    data = eval_inputs(gpt, 48, streams=3)
    assert data.inputs.shape == (3, 16)  # 48 tokens as 3 streams of 16, consecutive windows of the text
    np.testing.assert_array_equal(data.inputs.ravel(), load_corpus().val_ids[:48])
    np.testing.assert_array_equal(data.targets.ravel(), load_corpus().val_ids[1:49])
    assert eval_inputs(gpt, 48).inputs.shape == (1, 48)  # the default: one stream
    batched = run(gpt, data.inputs).logits
    for r in range(3):
        np.testing.assert_array_equal(batched[r], run(gpt, data.inputs[r:r + 1]).logits[0])
    result = spikestack.run(gpt, tokens=48, streams=3).to_dict()
    assert result["tokens"] == 48 and result["bpc"] is not None
    report = spikestack.simulate(gpt, tokens=48, streams=3).to_dict()
    assert report["tokens"] == 48


def test_streams_refused_where_programs_read_windows():
    llm = spikestack.compile(CKPT / "spikellm-char-tiny.pt", target="loihi2", calibrate=0)
    with pytest.raises(SpikestackError, match=r"--streams 2: only token-streaming programs .*spikellm.* windows of"):
        spikestack.run(llm, tokens=32, streams=2)
    chain = spikestack.compile(CKPT / "bispike-mlp.pt", target="loihi2")
    with pytest.raises(SpikestackError, match="--streams 2: only token-streaming programs"):
        spikestack.simulate(chain, tokens=32, streams=2)


def test_cli_streams_bad_value_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "spikestack.cli", "run", str(tmp_path), "--streams", "0"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--streams" in proc.stderr.strip().splitlines()[-1]
