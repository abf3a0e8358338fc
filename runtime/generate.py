"""Token-by-token generation from a compiled program on any backend.

The spine network predicts the next character from a fixed context window, so generation slides the window:
each new token is one run of the program (T steps) on the chosen backend, greedy argmax of the decoded logits.
On Lava every token is one `run` of the process graph (≈ 1 s of start-up each on the CPU backend), so keep N small;
a terminal shows progress per token (spikestack/progress.py), a pipe or `--quiet` nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from spikestack.compiler.ir import Program

from spikestack.errors import SpikestackError
from spikestack.progress import progress

from .trace import Trace


def generate(program: Program, vocab: str, prompt: str, n_tokens: int,
             runner: Callable[[Program, np.ndarray], Trace]) -> tuple[str, list[int]]:
    """Greedy continuation; returns the text (prompt included) and the generated ids."""
    table = getattr(program.host_input, "table", None)
    if table is None:  # a foreign LIF chain reads input events: there is no token to feed back
        raise SpikestackError("this program reads input events, not tokens (a foreign LIF chain): it has no "
                              "vocabulary to generate from")
    if n_tokens < 0:
        raise SpikestackError(f"--tokens must be at least 0, got {n_tokens}")
    if len(vocab) != table.shape[0]:
        raise SpikestackError(f"vocabulary has {len(vocab)} symbols, the artifact {table.shape[0]}")
    index = {c: i for i, c in enumerate(vocab)}
    pad = index.get(" ", 0)
    ctx = program.host_input.context
    ids = [pad] * ctx + [index.get(c, pad) for c in prompt]
    generated = []
    for _ in progress(range(n_tokens), "generate"):
        window = np.array([ids[-ctx:]], dtype=np.int64)
        nxt = int(np.argmax(runner(program, window).logits[0]))
        ids.append(nxt)
        generated.append(nxt)
    return prompt + "".join(vocab[i] for i in generated), generated
