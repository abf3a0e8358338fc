"""The tokenizer in a NIR graph's metadata: how it travels from checkpoint to compiler.

`spikestack.tokenizer` holds the tokenizer.json text (models/tokenizer.py) beside `spikestack.vocab_size`; NIR
writes graph metadata as HDF5 datasets, so a multi-megabyte BPE tokenizer fits (attributes would stop at 64 KiB).
Every export of a checkpoint writes it: the checkpoint's "tokenizer", else the char tokenizer of its "vocab"
string. A NIR file without it (any foreign graph, any file exported before tokenizers travelled) compiles as
before and its programs evaluate on the shipped corpus's characters.
"""

from __future__ import annotations

import functools

import nir

from spikestack.errors import NIRFormatError

from ..checkpoint import checkpoint_tokenizer
from ..tokenizer import Tokenizer, TokenizerError

TOKENIZER_KEY = "spikestack.tokenizer"


def attach_tokenizer(graph: nir.NIRGraph, checkpoint: dict) -> nir.NIRGraph:
    """`graph` with the checked checkpoint's tokenizer in its metadata (in place, as the exporters build it)."""
    graph.metadata = {**(graph.metadata or {}), TOKENIZER_KEY: checkpoint_tokenizer(checkpoint).to_json()}
    return graph


@functools.lru_cache(maxsize=4)
def _parsed(text: str) -> Tokenizer:
    """One parse per tokenizer text: `compile` asks for the graph's tokenizer three times (calibration text, layer
    error report, the artifact's copy), and a 50,277-token BPE tokenizer.json takes 0.3 s to parse
    (bench/compile_published.py). Tokenizers are only read from (encode, decode)."""
    return Tokenizer.from_json(text, f"graph metadata {TOKENIZER_KEY!r}")


def graph_tokenizer(graph: nir.NIRGraph) -> Tokenizer | None:
    """The graph's tokenizer, checked against its `spikestack.vocab_size`; None when the graph carries none."""
    meta = graph.metadata or {}
    text = meta.get(TOKENIZER_KEY)
    if text is None:
        return None
    if isinstance(text, bytes):  # nir.read gives HDF5 strings back as bytes
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise NIRFormatError(f"graph metadata {TOKENIZER_KEY!r} is not UTF-8 text") from None
    try:
        tokenizer = _parsed(text)
    except TokenizerError as exc:
        raise NIRFormatError(str(exc)) from None
    vocab = meta.get("spikestack.vocab_size")
    if vocab is not None and int(vocab) != tokenizer.vocab_size:
        raise NIRFormatError(f"graph metadata {TOKENIZER_KEY!r}: a {tokenizer.kind} tokenizer of "
                             f"{tokenizer.vocab_size} tokens, but 'spikestack.vocab_size' is {int(vocab)}")
    return tokenizer
