"""Generation from a compiled program (`spikestack.generate` of an artifact): the prompt encoded and the text
decoded by the program's tokenizer (compiler/artifact_tokenizer.py), token by token on a backend.

Without a tokenizer (artifacts compiled before tokenizers travelled) the program is taken to read the shipped
corpus's characters, as before, and only a program of that size is. A prompt the tokenizer cannot encode is one
error line naming the pieces, for both program kinds.
"""

from __future__ import annotations

from spikestack.errors import SpikestackError

from .evaluation import is_hybrid, program_tokenizer
from .evaluation import vocab_size as _vocab_size


def generate_program(program, prompt: str, tokens: int, backend: str) -> str:
    """The prompt followed by the greedy continuation of `tokens` tokens (the caller checked kind and backend)."""
    tokenizer = _generation_tokenizer(program)
    prompt_ids = _check_prompt(prompt, tokenizer)
    if not is_hybrid(program):
        from spikestack.runtime.generate import generate as generate_chain
        from spikestack.runtime.verify import backend_runner

        if tokenizer.chars is None:
            raise SpikestackError(f"generate: a chain program reads a window of characters; its {tokenizer.kind} "
                                  "tokenizer is not a character one")
        text, _ = generate_chain(program, tokenizer.chars, prompt, tokens, backend_runner(backend))
        return text
    from spikestack.models.tokenizer import continuation
    from spikestack.runtime.hybrid.verify import chip_backend, generate_ids

    ids = generate_ids(program, prompt_ids, tokens, lambda: chip_backend(backend))
    return continuation(tokenizer, prompt, prompt_ids, ids[len(prompt_ids):])



def _generation_tokenizer(program):
    """The program's tokenizer; without one (artifacts compiled before tokenizers travelled), the shipped
    corpus's characters, for a program of that size only."""
    tokenizer = program_tokenizer(program)
    if tokenizer is not None:
        return tokenizer
    from spikestack.models.data import load_corpus
    from spikestack.models.tokenizer import Tokenizer

    vocab = load_corpus().vocab
    if _vocab_size(program) != len(vocab):  # one check for both kinds: the text they encode is the corpus's
        raise SpikestackError(f"artifact vocabulary has {_vocab_size(program)} ids and no tokenizer; the shipped "
                              f"corpus has {len(vocab)} characters")
    return Tokenizer.from_chars(vocab)


def _check_prompt(prompt: str, tokenizer) -> list[int]:
    """Both program kinds refuse what they cannot encode, rather than silently replacing it."""
    from spikestack.models.tokenizer import TokenizerError

    try:
        ids = tokenizer.encode(prompt, "prompt") if prompt else []
    except TokenizerError as exc:
        alphabet = " of the corpus alphabet" if tokenizer.chars is not None else ""
        raise SpikestackError(f"prompt must be non-empty text{alphabet}; {exc}") from None
    if not ids:
        raise SpikestackError(f"prompt must be non-empty text; {prompt!r} encodes to no token")
    return ids
