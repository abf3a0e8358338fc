"""What a compiled program is evaluated on, and how well it did: library logic shared by the public API
(`spikestack.api`), the CLI, the demo and `sweep`.

Token programs (the bi-spike spine and the language models) read windows of a text (spikestack/text.py): the user's
file (`text=`, `--text FILE`) encoded by the program's tokenizer, else the shipped corpus's validation split
(pydoc_data.topics) — exactly its ids for a program of the corpus's characters, re-encoded by another tokenizer
that can encode it. Only a program with neither gets seeded random ids and no targets, and its result says so
(`source`, `text`): no quality metric exists for it. Foreign LIF chains ("delayed" timing) get seeded Bernoulli
input events.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spikestack.errors import SpikestackError

from .text import SHIPPED_LABEL, Text, shipped_text, user_text

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
    source: str  # "validation text", "user text", "seeded random ids", "seeded Bernoulli events", "user"
    text: str | None = None  # which text: the --text path, the shipped corpus, or why there is none
    scored_bytes: int | None = None  # UTF-8 bytes of the text the targets cover (bits per byte)
    per_char: bool = False  # one id per character: bits per character apply


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


NO_TEXT = ("none: ids are seeded random, so no quality metric exists; this vocabulary ({n} ids) has no tokenizer "
           "that encodes the shipped corpus; pass --text FILE")


def program_tokenizer(program):
    """The Tokenizer a program carries (compiler/artifact_tokenizer.py: `report["tokenizer"]["json"]`), or None."""
    section = (getattr(program, "report", None) or {}).get("tokenizer")
    if not isinstance(section, dict) or "json" not in section:
        return None
    from spikestack.models.tokenizer import Tokenizer

    return Tokenizer.from_json(section["json"], "the program's tokenizer")


def carry_tokenizer(program, graph):
    """`program` carrying its NIR graph's tokenizer (none: unchanged); the artifact writes it as tokenizer.json."""
    from dataclasses import replace

    from spikestack.models.nir.export_tokenizer import graph_tokenizer

    tokenizer = graph_tokenizer(graph)
    if tokenizer is None:
        return program

    section = {"kind": tokenizer.kind, "vocab_size": tokenizer.vocab_size, "json": tokenizer.to_json()}
    return replace(program, report=dict(program.report, tokenizer=section))


def resolve_text(vocab_size: int, tokenizer, text) -> Text | None:
    """The Text to evaluate on: the user's file (`text`: a path) encoded by `tokenizer`, else the shipped corpus
    (its own ids for its vocabulary; re-encoded by another tokenizer), else None (no text this vocabulary can
    read). A program without a tokenizer is taken to be of the corpus's characters when its size says so."""
    from spikestack.models.data import load_corpus

    if isinstance(text, Text):
        return text
    corpus = load_corpus()
    if tokenizer is None and vocab_size == corpus.vocab_size:
        from spikestack.models.tokenizer import Tokenizer

        tokenizer = None if text is None else Tokenizer.from_chars(corpus.vocab)
    elif tokenizer is None:
        if text is not None:
            raise SpikestackError(f"--text {text}: this program carries no tokenizer and its {vocab_size} ids are not "
                                  f"the shipped corpus's {corpus.vocab_size} characters; compile it from a "
                                  "checkpoint that holds its tokenizer")
        return None
    elif tokenizer.vocab_size != vocab_size:
        raise SpikestackError(f"the program's {tokenizer.kind} tokenizer has {tokenizer.vocab_size} tokens, the "
                              f"program {vocab_size} ids")
    return shipped_text(tokenizer) if text is None else user_text(text, tokenizer)


def vocab_size(program) -> int:
    """Token ids a program reads (a chain program's embedding rows)."""
    return int(program.vocab_size) if is_hybrid(program) else int(program.host_input.table.shape[0])


def calibrate_chain(graph, program, tokens: int, text=None):
    """A chain program with its per-layer quantisation error on `tokens` positions of the text in its report
    (unchanged when no text exists for its vocabulary: nothing to calibrate on)."""
    from dataclasses import replace

    from spikestack.compiler.from_nir import from_nir
    from spikestack.runtime.calibration import layer_errors

    try:
        ids = eval_inputs(program, tokens, text).inputs
    except ForeignVocabularyError:
        return program
    errors = layer_errors(from_nir(graph), program, ids)
    return replace(program, report=dict(program.report, calibration={"tokens": tokens, "layers": errors}))


def chain_inputs(program, n_tokens: int, text=None) -> EvalInputs:
    """Chain programs: the first n_tokens (context, next token) pairs of the text (token timing), or n_tokens
    samples of seeded Bernoulli input events without targets (delayed timing)."""
    if n_tokens < 1:
        raise SpikestackError(f"--tokens must be at least 1, got {n_tokens}")
    if program.timing == "delayed":
        if text is not None:
            raise SpikestackError(f"--text {text}: a foreign LIF program reads input events, not text")
        per_sample = program.steps * program.host_input.size
        if n_tokens * per_sample > MAX_INPUT_VALUES:
            raise SpikestackError(f"--tokens {n_tokens}: {n_tokens} samples x {program.steps} steps x "
                                  f"{program.host_input.size} inputs exceed the limit of {MAX_INPUT_VALUES} input "
                                  f"values; use at most {MAX_INPUT_VALUES // per_sample} --tokens")
        rng = np.random.default_rng(INPUT_SEED)
        shape = (n_tokens, program.steps, program.host_input.size)
        return EvalInputs((rng.random(shape) < INPUT_EVENT_RATE).astype(np.int64), None, "seeded Bernoulli events")

    from spikestack.models.bispike_mlp import context_windows

    vocab = program.host_input.table.shape[0]
    stream = resolve_text(vocab, program_tokenizer(program), text)
    if stream is None:
        raise ForeignVocabularyError(f"artifact vocabulary has {vocab} ids and no tokenizer that encodes the shipped "
                                     "corpus; this artifact was not trained on it: pass --text FILE")
    ctx = program.host_input.context
    available = len(stream.ids) - ctx
    if n_tokens > available:
        what = "the validation text" if stream.label == SHIPPED_LABEL else f"text {stream.label}"
        unit = "characters" if stream.per_char else "tokens"
        raise SpikestackError(f"--tokens {n_tokens}: {what}, which has {available} windows of {ctx} {unit}, bounds "
                              f"it; use at most {available}")
    ids, targets = context_windows(stream.ids[: n_tokens + ctx], ctx)
    return EvalInputs(ids, targets, stream.source, stream.label, stream.scored_bytes(ctx, ctx + n_tokens),
                      stream.per_char)


def sample_ids(vocab_size: int, context: int, n_tokens: int, offset: int = 0, *, tokenizer=None,
               text=None) -> EvalInputs:
    """ids [B, L] and targets: n_tokens next-token predictions (rounded up to whole windows of at most `context`
    positions) from the text (`resolve_text`), starting `offset` tokens in (0 for a user's text, which is all the
    user gave); seeded random ids (no targets) for a vocabulary without a text, said so in `text`. The shipped text
    bounds the positions of random ids too, so that no --tokens value runs unbounded."""
    from spikestack.models.data import load_corpus

    if n_tokens < 1:
        raise SpikestackError(f"--tokens must be at least 1, got {n_tokens}")
    stream = resolve_text(vocab_size, tokenizer, text)
    if stream is not None and stream.label != SHIPPED_LABEL:  # offsets count the shipped corpus's characters
        offset = 0
    length = max(1, min(context or n_tokens, n_tokens))
    rows = -(-n_tokens // length)
    ids_of = stream.ids if stream is not None else load_corpus().val_ids
    available = len(ids_of) - offset - 1
    if rows * length > available:
        what = "the validation text" if stream is None or stream.label == SHIPPED_LABEL else f"text {stream.label}"
        raise SpikestackError(f"{rows * length} positions asked of {what}, which has {available} after offset "
                              f"{offset}; use fewer --tokens")
    if stream is None:
        rng = np.random.default_rng(RANDOM_IDS_SEED)
        return EvalInputs(rng.integers(0, max(vocab_size, 1), (rows, length)), None, "seeded random ids",
                          NO_TEXT.format(n=vocab_size))
    window = stream.ids[offset: offset + rows * length + 1]
    ids = np.stack([window[r * length: (r + 1) * length] for r in range(rows)])
    targets = np.stack([window[r * length + 1: (r + 1) * length + 1] for r in range(rows)])
    scored = stream.scored_bytes(offset + 1, offset + rows * length + 1)
    return EvalInputs(ids, targets, stream.source, stream.label, scored, stream.per_char)


def hybrid_inputs(program, tokens: int, text=None, streams: int = 1) -> EvalInputs:
    """Windows of the model's context (whole-sequence and step models), or, for token-streaming programs
    (SpikeGPT), one stream of `tokens` positions, or `streams` independent streams of about tokens/streams each.
    Why streams: one stream is one position per call, so every call reads all of a large model's weights for one
    row (the 216M shape: 1.65 GB of float32 products per token); 16 streams share each read among 16 rows, and
    they are the unit Dask shards (spikestack/distributed.py). Each stream starts from the model's initial state,
    so the text's figures are those of shorter contexts."""
    if streams < 1:
        raise SpikestackError(f"--streams must be at least 1, got {streams}")
    if program.time_axis != "tokens":
        if streams != 1:
            raise SpikestackError(f"--streams {streams}: only token-streaming programs (SpikeGPT) take streams; "
                                  f"this {program.family} program reads windows of {program.max_positions} positions")
        context = program.max_positions
    else:
        context = 0 if streams == 1 else -(-tokens // streams)
    return sample_ids(program.vocab_size, context, tokens, offset=0, tokenizer=program_tokenizer(program), text=text)


def eval_inputs(program, tokens: int, text=None, streams: int = 1) -> EvalInputs:
    """The inputs of `run`, `verify` and `simulate` for any program: `text` (a path) or the default text;
    `streams` for token-streaming programs (`hybrid_inputs`)."""
    if is_hybrid(program):
        return hybrid_inputs(program, tokens, text, streams)
    if streams != 1:
        raise SpikestackError(f"--streams {streams}: only token-streaming programs (SpikeGPT) take streams; chain "
                              "programs evaluate independent token windows already")
    return chain_inputs(program, tokens, text)


def calibration_ids(graph, n_positions: int = CALIBRATION_POSITIONS, text=None) -> np.ndarray:
    return calibration_inputs(graph, n_positions, text).inputs


def calibration_inputs(graph, n_positions: int = CALIBRATION_POSITIONS, text=None) -> EvalInputs:
    """Language-model graphs: a few short windows (of `text`, else the default text) that fix the integer units of
    every chip layer; `.text` says which text it was."""
    from spikestack.compiler.hybrid.compile import graph_context
    from spikestack.models.nir.export_tokenizer import graph_tokenizer

    meta = graph.metadata or {}
    vocab = int(meta.get("spikestack.vocab_size", 0))
    context = int(meta.get("spikestack.max_seq_len", 0)) or graph_context(graph) or n_positions
    length = min(context, n_positions)
    return sample_ids(vocab, length, CALIBRATION_SEQUENCES * (length - 1), tokenizer=graph_tokenizer(graph),
                      text=text)
