"""What a compiled program is evaluated on, and how well it did: library logic shared by the public API
(`spikestack.api`), the CLI, the demo and `sweep`.

Token programs (the bi-spike spine and the language models) read windows of the shipped corpus's validation split
(pydoc_data.topics); a program whose vocabulary is not the corpus's gets seeded random ids and no targets, said as
such in its result (`source`). Foreign LIF chains ("delayed" timing) get seeded Bernoulli input events.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spikestack.errors import SpikestackError

INPUT_EVENT_RATE = 0.2  # fraction of input channels active per step for foreign (LIF) programs
INPUT_SEED = 0
MAX_INPUT_VALUES = 1 << 26  # seeded input events of a foreign LIF program held at once (512 MiB as int64)
RANDOM_IDS_SEED = 0
CALIBRATION_SEQUENCES = 4
CALIBRATION_POSITIONS = 32
CALIBRATION_OFFSET = 20_000  # validation characters skipped before calibration windows (disjoint from `run`'s)


@dataclass(frozen=True, slots=True)
class EvalInputs:
    """Inputs for a program and, when the text is known, the next-token targets.

    `source` says where the inputs came from, so that no result is ever silently computed on random ids."""

    inputs: np.ndarray  # ids [tokens, context] (chain), ids [B, L] (hybrid) or events [samples, steps, n]
    targets: np.ndarray | None
    source: str  # "validation text", "seeded random ids", "seeded Bernoulli events", "user"


def is_hybrid(program: object) -> bool:
    from spikestack.compiler.hybrid.ir import HybridProgram

    return isinstance(program, HybridProgram)


def bpc(logits: np.ndarray, targets: np.ndarray) -> float:
    """Bits per character of next-token `logits` [..., vocab] against `targets` [...]."""
    z = logits - logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return float(-np.take_along_axis(logp, targets[..., None], -1).mean() / np.log(2))


class ForeignVocabularyError(SpikestackError):
    """A token program whose vocabulary is not the shipped corpus's: there is no validation text for it."""


def chain_inputs(program, n_tokens: int) -> EvalInputs:
    """Chain programs: the first n_tokens (context, next char) pairs of the validation split, exactly (token
    timing), or n_tokens samples of seeded Bernoulli input events without targets (delayed timing)."""
    if n_tokens < 1:
        raise SpikestackError(f"--tokens must be at least 1, got {n_tokens}")
    if program.timing == "delayed":
        per_sample = program.steps * program.host_input.size
        if n_tokens * per_sample > MAX_INPUT_VALUES:
            raise SpikestackError(f"--tokens {n_tokens}: {n_tokens} samples x {program.steps} steps x "
                                  f"{program.host_input.size} inputs exceed the limit of {MAX_INPUT_VALUES} input "
                                  f"values; use at most {MAX_INPUT_VALUES // per_sample} --tokens")
        rng = np.random.default_rng(INPUT_SEED)
        shape = (n_tokens, program.steps, program.host_input.size)
        return EvalInputs((rng.random(shape) < INPUT_EVENT_RATE).astype(np.int64), None, "seeded Bernoulli events")

    from spikestack.models.bispike_mlp import context_windows
    from spikestack.models.data import load_corpus

    corpus = load_corpus()
    if program.host_input.table.shape[0] != corpus.vocab_size:
        raise ForeignVocabularyError(f"artifact vocabulary has {program.host_input.table.shape[0]} ids, the corpus "
                                     f"{corpus.vocab_size}; this artifact was not trained on the shipped corpus")
    ctx = program.host_input.context
    available = len(corpus.val_ids) - ctx
    if n_tokens > available:
        raise SpikestackError(f"--tokens {n_tokens}: the validation text, which has {available} windows of "
                              f"{ctx} characters, bounds it; use at most {available}")
    ids, targets = context_windows(corpus.val_ids[: n_tokens + ctx], ctx)
    return EvalInputs(ids, targets, "validation text")


def sample_ids(vocab_size: int, context: int, n_tokens: int, offset: int = 0) -> EvalInputs:
    """ids [B, L] and targets: n_tokens next-token predictions (rounded up to whole windows of at most `context`
    positions) from the validation split, starting `offset` characters in; seeded random ids (no targets) for a
    vocabulary that is not the corpus's. The text bounds the positions of random ids too, so that no --tokens
    value runs unbounded."""
    from spikestack.models.data import load_corpus

    if n_tokens < 1:
        raise SpikestackError(f"--tokens must be at least 1, got {n_tokens}")
    corpus = load_corpus()
    length = max(1, min(context or n_tokens, n_tokens))
    rows = -(-n_tokens // length)
    available = len(corpus.val_ids) - offset - 1
    if rows * length > available:
        raise SpikestackError(f"{rows * length} positions asked of the validation text, which has {available} "
                              f"after offset {offset}; use fewer --tokens")
    if vocab_size != corpus.vocab_size:
        rng = np.random.default_rng(RANDOM_IDS_SEED)
        return EvalInputs(rng.integers(0, max(vocab_size, 1), (rows, length)), None, "seeded random ids")
    stream = corpus.val_ids[offset: offset + rows * length + 1]
    ids = np.stack([stream[r * length: (r + 1) * length] for r in range(rows)])
    targets = np.stack([stream[r * length + 1: (r + 1) * length + 1] for r in range(rows)])
    return EvalInputs(ids, targets, "validation text")


def hybrid_inputs(program, tokens: int) -> EvalInputs:
    context = program.max_positions if program.time_axis != "tokens" else 0
    return sample_ids(program.vocab_size, context, tokens, offset=0)


def eval_inputs(program, tokens: int) -> EvalInputs:
    """The default inputs of `run`, `verify` and `simulate` for any program."""
    return hybrid_inputs(program, tokens) if is_hybrid(program) else chain_inputs(program, tokens)


def calibration_ids(graph, n_positions: int = CALIBRATION_POSITIONS) -> np.ndarray:
    """Language-model graphs: a few short validation windows that fix the integer units of every chip layer."""
    from spikestack.compiler.hybrid.compile import graph_context

    meta = graph.metadata or {}
    vocab = int(meta.get("spikestack.vocab_size", 0))
    context = int(meta.get("spikestack.max_seq_len", 0)) or graph_context(graph) or n_positions
    length = min(context, n_positions)
    return sample_ids(vocab, length, CALIBRATION_SEQUENCES * (length - 1)).inputs
