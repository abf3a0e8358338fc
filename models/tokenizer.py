"""Tokenizers that travel with a model: checkpoint → NIR metadata → artifact `tokenizer.json` → generate and the
evaluation of the user's text.

Place in the picture (STYLE.md): the *models/* end, at the border where untrusted files are read. Every kind is
held as one Hugging Face `tokenizers.Tokenizer`, so one representation (a tokenizer.json text) travels whatever
the model was trained with:

    char       our character checkpoints (`vocab` string) and upstream SpikeGPT's char JSON vocab
               ({"0": "\\n", ...} or {"\\n": 0, ...}): a WordLevel model over single characters, every character
               its own pre-token, decoded by concatenation
    bpe        a tokenizer.json with a BPE model (SpikeGPT-216M's GPT-NeoX 20B tokenizer, LLaMA's)
    wordpiece  a BERT vocab.txt (one token per line, the id is the line number) or a WordPiece tokenizer.json
    unigram, wordlevel   other tokenizer.json models, accepted as they are

Reading is bounded: a file over MAX_TOKENIZER_BYTES is refused from its size, never read whole, and anything the
`tokenizers` library refuses becomes one `TokenizerError` line naming the file.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers
from tokenizers import Tokenizer as HFTokenizer

from spikestack.errors import SpikestackError

# The largest published tokenizer.json files are a few MB (LLaMA-2 1.8 MB, GPT-NeoX-20B 2.1 MB, LLaMA-3 9 MB,
# Qwen2 7 MB); 32 MiB leaves room for any of them and refuses a hostile file before it is read.
MAX_TOKENIZER_BYTES = 32 * 1024 * 1024
MAX_TOKENIZER_CHARS = MAX_TOKENIZER_BYTES  # the same cap on a tokenizer.json text held in a checkpoint or NIR file
SHOWN = 60  # characters of a value quoted in an error line
CHAR_SPLIT = r"[\s\S]"  # every character, newlines included, is one pre-token of a char tokenizer


class TokenizerError(SpikestackError, ValueError):
    """A tokenizer file or text that cannot be used; the message names the file or the text that fails."""


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= SHOWN else text[:SHOWN] + "…"


class Tokenizer:
    """A `tokenizers.Tokenizer` plus its kind; `encode` refuses what it cannot represent rather than dropping it."""

    def __init__(self, hf: HFTokenizer, kind: str, unk: tuple[int | None] | None = None) -> None:
        """`unk`: (the unknown-token id,) when the caller has read it from the tokenizer.json (`from_json`);
        else `_unk_id` looks it up at the first encode."""
        self.hf = hf
        self.kind = kind
        self._chars: str | None = None
        self._unk = unk
        if kind == "char":
            vocab = hf.get_vocab()
            self._chars = "".join(sorted(vocab, key=vocab.__getitem__))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_chars(cls, vocab: str) -> Tokenizer:
        """The char tokenizer of a vocabulary string: character `vocab[i]` is id i (our checkpoints' `vocab`)."""
        if not vocab:
            raise TokenizerError("character vocabulary is empty")
        if len(set(vocab)) != len(vocab):
            repeated = next(c for i, c in enumerate(vocab) if c in vocab[:i])
            raise TokenizerError(f"character vocabulary repeats {repeated!r}")
        hf = HFTokenizer(models.WordLevel({c: i for i, c in enumerate(vocab)}, unk_token=vocab[0]))
        hf.pre_tokenizer = pre_tokenizers.Split(Regex(CHAR_SPLIT), behavior="isolated")
        hf.decoder = decoders.Fuse()
        return cls(hf, "char")

    @classmethod
    def from_json(cls, text: str, where: str = "tokenizer.json") -> Tokenizer:
        """A tokenizer.json text (as written by `to_json` or by Hugging Face); `where` names it in errors."""
        if not isinstance(text, str):
            raise TokenizerError(f"{where}: tokenizer is a {type(text).__name__}, expected tokenizer.json text")
        if len(text) > MAX_TOKENIZER_CHARS:
            raise TokenizerError(f"{where}: tokenizer.json text has {len(text):,} characters, over the limit of "
                                 f"{MAX_TOKENIZER_CHARS:,}")
        try:
            hf, kind, unk = _parsed(text)
        except TokenizerError as exc:
            raise TokenizerError(f"{where}: {exc}") from None
        return cls(hf, kind, (unk,))

    def to_json(self) -> str:
        """The tokenizer.json text that `from_json` reads back (compact: it travels in checkpoints and NIR)."""
        return self.hf.to_str()

    # ------------------------------------------------------------------ use
    @property
    def vocab_size(self) -> int:
        return int(self.hf.get_vocab_size(with_added_tokens=True))

    @property
    def chars(self) -> str | None:
        """The vocabulary string of a char tokenizer (id i is `chars[i]`), else None."""
        return self._chars

    def encode(self, text: str, what: str = "text") -> list[int]:
        """Token ids of `text`; TokenizerError naming the first pieces that the tokenizer cannot represent."""
        ids, _ = self.encode_with_offsets(text, what)
        return ids

    def encode_with_offsets(self, text: str, what: str = "text") -> tuple[list[int], list[tuple[int, int]]]:
        """(ids, character spans of `text` that each id covers); the spans let a metric count the scored bytes."""
        if self._chars is not None:
            known = set(self._chars)
            unknown = sorted({c for c in text if c not in known})
            if unknown:
                raise TokenizerError(f"{what}: {len(unknown)} unknown characters (not in the {len(self._chars)}-"
                                     f"character vocabulary), first {_short(''.join(unknown[:20]))}")
        try:
            encoding = self.hf.encode(text, add_special_tokens=False)
        except Exception as exc:  # noqa: BLE001 — Rust errors surface as bare Exception
            raise TokenizerError(f"{what}: cannot be encoded ({str(exc).splitlines()[0][:SHOWN]})") from None
        ids, offsets = list(encoding.ids), [tuple(o) for o in encoding.offsets]
        if self._chars is None:
            _check_covered(text, ids, offsets, self._unk_id(), what)
        return ids, offsets

    def decode(self, ids) -> str:
        return self.hf.decode([int(i) for i in ids], skip_special_tokens=False)

    def _unk_id(self) -> int | None:
        """The model's unknown-token id (None without one). Looked up once: it reads the whole tokenizer.json,
        0.5 s for SpikeGPT's 50,277-token BPE at every encode otherwise (bench/compile_published.py profile)."""
        if self._unk is None:
            self._unk = (_unk_of(json.loads(self.hf.to_str()).get("model", {}), self.hf),)
        return self._unk[0]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tokenizer) and self.kind == other.kind and self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash((self.kind, self.to_json()))

    def __repr__(self) -> str:
        return f"Tokenizer(kind={self.kind!r}, vocab_size={self.vocab_size})"


def _kind_of(spec: dict) -> str:
    """"char" for a WordLevel model of single characters split one by one (ours), else the model's type."""
    model = spec["model"]
    kind = str(model.get("type", "")).lower()
    pre = spec.get("pre_tokenizer") or {}
    vocab = model.get("vocab")
    if (kind == "wordlevel" and isinstance(vocab, dict) and all(len(t) == 1 for t in vocab)
            and pre.get("type") == "Split" and pre.get("pattern") == {"Regex": CHAR_SPLIT}):
        return "char"
    if kind not in ("bpe", "wordpiece", "unigram", "wordlevel"):
        raise TokenizerError(f"tokenizer model type {_short(model.get('type'))} is not one of BPE, WordPiece, "
                             "Unigram, WordLevel")
    return kind


def _check_covered(text: str, ids: list[int], offsets: list[tuple[int, int]], unk: int | None, what: str) -> None:
    """Refuse text that became the unknown token or that the model dropped (a BPE without unk drops silently);
    whitespace that a pre-tokenizer removes is not text lost."""
    lost = [text[a:b] for i, (a, b) in zip(ids, offsets, strict=True) if unk is not None and i == unk]
    covered = bytearray(len(text))
    for a, b in offsets:
        covered[a:b] = b"\1" * (b - a)
    lost += [c for c, seen in zip(text, covered, strict=True) if not seen and not c.isspace()]
    if lost:
        pieces = sorted(set(lost))
        raise TokenizerError(f"{what}: {len(pieces)} pieces cannot be encoded by this tokenizer, first "
                             f"{_short(pieces[:10])}")


# ---------------------------------------------------------------------- files
def _read_bounded(path: Path) -> str:
    """UTF-8 text of a tokenizer file, refused from its size before it is read."""
    from spikestack.bounded import read_bounded

    data = read_bounded(path, MAX_TOKENIZER_BYTES, TokenizerError, f"{path}: tokenizer file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TokenizerError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def read_tokenizer(path: Path | str) -> Tokenizer:
    """A tokenizer file: tokenizer.json (any model), an upstream char vocab JSON, or a BERT WordPiece vocab.txt."""
    path = Path(path)
    text = _read_bounded(path)
    if path.suffix != ".json":
        return _wordpiece_vocab(text, path)
    try:
        spec = json.loads(text)
    except ValueError as exc:
        raise TokenizerError(f"{path}: not JSON ({str(exc).splitlines()[0][:SHOWN]})") from None
    if isinstance(spec, dict) and "model" in spec:
        return Tokenizer.from_json(text, str(path))
    return _char_vocab(spec, path)


def _char_vocab(spec: object, path: Path) -> Tokenizer:
    """Upstream SpikeGPT's char vocab: {"id": "char"} (its vocab.json) or {"char": id}; ids must be 0..n-1."""
    if not isinstance(spec, dict) or not spec:
        raise TokenizerError(f"{path}: neither a tokenizer.json nor a character vocabulary object")
    by_id: dict[int, str] = {}
    for key, value in spec.items():
        if isinstance(value, str) and key.isdigit():
            token, index = value, int(key)
        elif isinstance(value, int) and not isinstance(value, bool):
            token, index = key, value
        else:
            raise TokenizerError(f"{path}: vocabulary entry {_short(key)}: {_short(value)} is neither "
                                 "\"id\": \"char\" nor \"char\": id")
        if len(token) != 1:
            raise TokenizerError(f"{path}: vocabulary entry {_short(token)} is not a single character")
        if index in by_id:
            raise TokenizerError(f"{path}: id {index} appears twice")
        by_id[index] = token
    missing = next((i for i in range(len(by_id)) if i not in by_id), None)
    if missing is not None:
        raise TokenizerError(f"{path}: ids must be 0..{len(by_id) - 1}; id {missing} is missing")
    try:
        return Tokenizer.from_chars("".join(by_id[i] for i in range(len(by_id))))
    except TokenizerError as exc:
        raise TokenizerError(f"{path}: {exc}") from None


def _wordpiece_vocab(text: str, path: Path) -> Tokenizer:
    """A BERT vocab.txt: one token per line, id = line number; lower-cased input when the vocabulary has no
    upper-case token (bert-base-uncased), as BERT's own tokenizer does."""
    tokens = text.split("\n")
    if tokens and tokens[-1] == "":
        tokens.pop()
    tokens = [t.rstrip("\r") for t in tokens]
    if not tokens:
        raise TokenizerError(f"{path}: empty WordPiece vocabulary")
    vocab: dict[str, int] = {}
    for i, token in enumerate(tokens):
        if not token or token in vocab:
            raise TokenizerError(f"{path}: line {i + 1}: {'empty token' if not token else 'repeated token'} "
                                 f"{_short(token)}")
        vocab[token] = i
    unk = "[UNK]" if "[UNK]" in vocab else tokens[0]
    hf = HFTokenizer(models.WordPiece(vocab, unk_token=unk))
    lowercase = not any(t != t.lower() for t in tokens if not (t.startswith("[") and t.endswith("]")))
    hf.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    hf.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    hf.decoder = decoders.WordPiece()
    return Tokenizer(hf, "wordpiece")


def continuation(tokenizer: Tokenizer, prompt: str, prompt_ids: list[int], new_ids: list[int]) -> str:
    """`prompt` followed by the text of `new_ids`. Decoded together with the prompt's ids where the decoded prompt
    is a prefix (a BPE token may finish a character the prompt began; LLaMA's decoder drops a leading space of
    the first token only), else on their own."""
    whole, head = tokenizer.decode(prompt_ids + new_ids), tokenizer.decode(prompt_ids)
    return prompt + (whole[len(head):] if whole.startswith(head) else tokenizer.decode(new_ids))


def _unk_of(model: dict, hf: HFTokenizer) -> int | None:
    """The unknown-token id of a tokenizer.json's "model" object, None without one."""
    if isinstance(model.get("unk_id"), int):  # Unigram names its unknown token by id
        return model["unk_id"]
    token = model.get("unk_token")
    return hf.token_to_id(token) if isinstance(token, str) else None


@functools.lru_cache(maxsize=8)
def _parsed(text: str) -> tuple[HFTokenizer, str, int | None]:
    """The checked parse of one tokenizer.json text, kept: a compile reads the same text from the checkpoint, the
    NIR graph and the artifact (five parses of SpikeGPT-216M's 1.1 MB, 0.8 s, bench/compile_published.py). Shared
    instances are only read (encode, decode, vocabulary), never configured. Errors are not cached."""
    try:
        spec = json.loads(text)
    except ValueError as exc:
        raise TokenizerError(f"not JSON ({str(exc).splitlines()[0][:SHOWN]})") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("model"), dict):
        raise TokenizerError("not a tokenizer.json (no 'model' object)")
    try:
        hf = HFTokenizer.from_str(text)
    except Exception as exc:  # noqa: BLE001 — the Rust library raises a bare Exception for any bad field
        raise TokenizerError(f"not a usable tokenizer.json ({str(exc).splitlines()[0][:SHOWN]})") from None
    return hf, _kind_of(spec), _unk_of(spec["model"], hf)  # the unknown id from this parse, not a second one
