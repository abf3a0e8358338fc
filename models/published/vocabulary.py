"""The vocabulary that travels with a converted checkpoint: a character string, or a tokenizer's JSON.

Place in the picture (STYLE.md): part of the *models/* border for published checkpoints. Upstream character
models ship a JSON vocabulary beside the weights (RWKV/SpikeGPT `vocab.json`: {"0": "\\n", "1": " ", …}, id →
character), and any other tokenizer file (`tokenizer.json`, SpikeGPT's `20B_tokenizer.json`, LLaMA's, BERT's
`vocab.txt`) is read by models/tokenizer.py (`read_tokenizer`) and stored as the native `tokenizer` key (characters
also as the `vocab` string, as our own checkpoints hold them). Its size must equal the embedding's rows.
"""

from __future__ import annotations

from pathlib import Path

from .base import PublishedFormatError, Source


def _size_error(path: Path, size: int, rows: int, what: str) -> PublishedFormatError:
    return PublishedFormatError(f"{path}: {what} has {size:,} tokens, the checkpoint's embedding {rows:,} rows")


def checked_tokenizer(source: Source, rows: int, *, missing: str):
    """The tokenizer beside the weights (or `--tokenizer`), read by models/tokenizer.py and refused unless it has
    exactly `rows` tokens (the embedding's rows); `missing` is the error's reason when no file was found."""
    from ..tokenizer import TokenizerError, read_tokenizer

    path = source.tokenizer_path
    if path is None:
        raise PublishedFormatError(f"{source.path}: {missing}")
    try:
        tokenizer = read_tokenizer(path)
    except TokenizerError as exc:
        raise PublishedFormatError(str(exc)) from None
    if tokenizer.vocab_size != rows:
        raise _size_error(path, tokenizer.vocab_size, rows, f"the {tokenizer.kind} tokenizer")
    return tokenizer


def vocabulary_entries(source: Source, rows: int, *, shipped: str | None = None) -> dict:
    """`tokenizer` (tokenizer.json text) and, for characters, `vocab` for a converted checkpoint whose embedding has
    `rows` rows, plus a `vocabulary` note saying where they came from. `shipped`: a character vocabulary to fall
    back on when no file is found and its size fits (the project's corpus); otherwise no file is an error."""
    if source.tokenizer_path is None and shipped is not None and len(shipped) == rows:
        return {"vocab": shipped, "vocabulary": "the shipped corpus's characters (no vocabulary file found)"}
    tokenizer = checked_tokenizer(source, rows, missing=(
        f"no vocabulary for its {rows:,} token ids; put the tokenizer (tokenizer.json, or vocab.json for "
        "characters) beside it or pass --tokenizer"))
    entries = {"tokenizer": tokenizer.to_json(),
               "vocabulary": f"{tokenizer.kind} tokenizer {source.tokenizer_path.name}"}
    if tokenizer.chars is not None:  # characters also as the `vocab` string every checkpoint held before
        entries["vocab"] = tokenizer.chars
    return entries
