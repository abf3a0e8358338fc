"""The text a program is evaluated on, as token ids of the program's own tokenizer, and the metrics of it.

Why bits per byte: bits per character compares character models only, perplexity per token only models that share
a tokenizer. The total negative log-likelihood in bits divided by the UTF-8 bytes of the text it scored is the
same quantity for a character model, SpikeGPT's 20B BPE and LLaMA's tokenizer (Gao et al. 2020, "The Pile",
§5; Radford et al. 2019 report the same per byte), so a user can compare them on one file. A token's bytes come
from the character spans the `tokenizers` library reports, so text that a pre-tokenizer drops (whitespace between
WordPiece words) still counts where it lies between scored tokens.

A user's file is read bounded (MAX_TEXT_BYTES), must be UTF-8 (another encoding, a binary file or an empty one is
one TextError line) and must be encodable by the tokenizer (a piece it cannot encode is named, never dropped).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spikestack.bounded import read_bounded
from spikestack.errors import SpikestackError

MAX_TEXT_BYTES = 64 * 1024 * 1024  # 64 MiB: ~16 M BPE tokens, minutes of reference execution per pass at most
SHIPPED_LABEL = "shipped corpus (pydoc_data.topics validation split)"


class TextError(SpikestackError):
    """A text file that cannot be evaluated on: missing, too large, binary, not UTF-8, empty, not encodable."""


@dataclass(frozen=True, slots=True)
class Text:
    """A token stream to cut evaluation windows from, and how many UTF-8 bytes of text each prefix covers."""

    label: str  # the file's path, or SHIPPED_LABEL (+ the tokenizer that encoded it)
    ids: np.ndarray  # int64 [n]: token ids of the whole text
    byte_ends: np.ndarray  # int64 [n]: UTF-8 bytes of the text up to the end of token i
    per_char: bool  # one id per character (a char tokenizer): bits per character apply
    source: str  # EvalInputs.source: "validation text" (the shipped corpus) or "user text"

    def scored_bytes(self, first: int, stop: int) -> int:
        """UTF-8 bytes of the text that the next-token targets ids[first:stop] cover (first >= 1)."""
        return int(self.byte_ends[stop - 1] - self.byte_ends[first - 1])


def read_text(path: Path | str, flag: str = "--text") -> str:
    """A user's text file: bounded read, strict UTF-8 (a leading BOM dropped), at least one non-space character;
    `flag` is the option that named the file (errors start with it: `--text`, `--labels`)."""
    path = Path(path)
    data = read_bounded(path, MAX_TEXT_BYTES, TextError, f"{flag} {path}")
    nul = data.find(b"\0")
    if nul >= 0:
        raise TextError(f"{flag} {path}: a binary file (NUL byte at offset {nul}), not text")
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise TextError(f"{flag} {path}: not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); save it "
                        "as UTF-8") from None
    if not text.strip():
        raise TextError(f"{flag} {path}: empty (no text to evaluate on)")
    return text


def byte_prefix(text: str) -> np.ndarray:
    """int64 [len(text) + 1]: UTF-8 bytes of text[:k] for every k (from the code points, no per-character loop)."""
    cp = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    per = 1 + (cp >= 0x80).astype(np.int64) + (cp >= 0x800) + (cp >= 0x10000)
    return np.concatenate([np.zeros(1, np.int64), np.cumsum(per)])


def tokenize(text: str, tokenizer, label: str, source: str, what: str) -> Text:
    """`text` as ids of `tokenizer` (models/tokenizer.py), with the byte position where every token ends; `what`
    names the text in errors."""
    from spikestack.models.tokenizer import TokenizerError

    try:
        ids, offsets = tokenizer.encode_with_offsets(text, what)
    except TokenizerError as exc:
        raise TextError(str(exc)) from None
    if len(ids) < 2:
        raise TextError(f"{what}: {len(ids)} token(s); evaluation needs at least 2 (an input and its next token)")
    ends = np.maximum.accumulate(np.array([b for _, b in offsets], dtype=np.int64))  # spans never run backwards
    return Text(label=label, ids=np.asarray(ids, dtype=np.int64), byte_ends=byte_prefix(text)[ends],
                per_char=tokenizer.chars is not None, source=source)


def user_text(path: Path | str, tokenizer) -> Text:
    return tokenize(read_text(path), tokenizer, str(path), "user text", f"--text {path}")


def shipped_text(tokenizer=None) -> Text | None:
    """The shipped corpus's validation split: exactly its ids without a tokenizer or with the corpus's own
    characters (the figures of the shipped checkpoints), re-encoded by another tokenizer that can encode it, None
    for one that cannot."""
    from spikestack.models.data import load_corpus

    corpus = load_corpus()
    if tokenizer is None or tokenizer.chars == corpus.vocab:
        ids = corpus.val_ids
        return Text(label=SHIPPED_LABEL, ids=ids, byte_ends=np.arange(1, len(ids) + 1, dtype=np.int64),
                    per_char=True, source="validation text")  # printable ASCII: one byte per character
    val = corpus.decode(corpus.val_ids)
    label = f"{SHIPPED_LABEL[:-1]}, re-encoded by the program's {tokenizer.kind} tokenizer)"
    try:
        return tokenize(val, tokenizer, label, "validation text", "the shipped corpus")
    except TextError:
        return None


def next_token_bits(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """−log2 p(target) of every position: float64 [...] from logits [..., vocab] and targets [...]."""
    z = logits.astype(np.float64) - logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return -np.take_along_axis(logp, targets[..., None], -1)[..., 0] / np.log(2)


def text_metrics(logits: np.ndarray, targets: np.ndarray, scored_bytes: int) -> dict[str, float]:
    """Bits per byte (total bits / UTF-8 bytes of the scored text) and perplexity per token (2^mean bits)."""
    bits = next_token_bits(logits, targets)
    return {"bits_per_byte": round(float(bits.sum()) / max(scored_bytes, 1), 4),
            "perplexity": round(float(2.0 ** bits.mean()), 4)}
