"""`ReferenceChip(lean=True)` (the compile's per-layer error report) keeps big projections as int16 mantissas and
converts them per call: the same integers as the float copies kept between calls."""

from pathlib import Path

import numpy as np
from spikestack.compiler.hybrid.compile import compile_hybrid
from spikestack.models.data import load_corpus
from spikestack.models.nir.export import model_to_nir
from spikestack.runtime.hybrid import chip
from spikestack.runtime.hybrid.executor import ReferenceChip, run

CKPT = Path(__file__).resolve().parents[2] / "models" / "checkpoints"


def test_lean_blocks_give_the_same_trace(monkeypatch):
    val = load_corpus().val_ids
    graph = model_to_nir("spikegpt", CKPT / "spikegpt-char-2x64.pt")
    program = compile_hybrid(graph, "loihi2", val[:64].reshape(4, 16), dataflow=True)
    monkeypatch.setattr(chip, "BLOCK_MIN_WEIGHTS", 1)  # every projection through group blocks
    relay = next(la for la in program.layers if la.kind == "relay")
    lean = chip.grouped_weight(relay, lean=True)
    assert all(b.dtype == np.int16 and not b.flags.owndata for _, b in lean)  # views, no copy
    ids = val[100:124].reshape(2, 12)
    a, b = run(program, ids, ReferenceChip()), run(program, ids, ReferenceChip(lean=True))
    np.testing.assert_array_equal(a.logits, b.logits)
    for name, payloads in a.layers().items():
        np.testing.assert_array_equal(payloads, b.layers()[name])
