"""Training text that ships with Python: the standard library's `pydoc_data.topics`.

Why this corpus: CI and every developer machine have it with no download (DEVELOPERS.md: no hub access at run
time), it is ~0.5 MB of English prose and code, and its content is pinned by the Python version (3.10 here).
All model families share this one character vocabulary and one deterministic train/validation split so their
bits-per-character numbers are comparable.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

VALIDATION_FRACTION = 0.1  # last 10 % of the text is held out


@dataclass(frozen=True, slots=True)
class CharCorpus:
    """The corpus as integer ids plus the vocabulary that maps them back to characters."""

    vocab: str
    train_ids: np.ndarray  # int64 [n_train]
    val_ids: np.ndarray  # int64 [n_val]

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.vocab)}
        unknown = index.get(" ", 0)
        return np.array([index.get(c, unknown) for c in text], dtype=np.int64)

    def decode(self, ids: np.ndarray | list[int]) -> str:
        return "".join(self.vocab[int(i)] for i in ids)


def _raw_text() -> str:
    from pydoc_data import topics

    # Sorted keys: dict order is insertion order in the module, but sorting makes the text independent of it.
    return "\n".join(topics.topics[k] for k in sorted(topics.topics))


@functools.lru_cache(maxsize=1)
def load_corpus() -> CharCorpus:
    """The pydoc topics text, restricted to printable ASCII plus newline (non-ASCII characters become spaces)."""
    text = _raw_text()
    text = "".join(c if (c == "\n" or 32 <= ord(c) < 127) else " " for c in text)
    vocab = "".join(sorted(set(text)))
    index = {c: i for i, c in enumerate(vocab)}
    ids = np.array([index[c] for c in text], dtype=np.int64)
    n_val = int(len(ids) * VALIDATION_FRACTION)
    return CharCorpus(vocab=vocab, train_ids=ids[:-n_val], val_ids=ids[-n_val:])


def random_windows(ids: np.ndarray, length: int, batch: int, rng: np.random.Generator) -> np.ndarray:
    """`batch` windows of `length + 1` consecutive ids (inputs and next-character targets), int64 [batch, length+1]."""
    starts = rng.integers(0, len(ids) - length - 1, size=batch)
    return np.stack([ids[s : s + length + 1] for s in starts])
