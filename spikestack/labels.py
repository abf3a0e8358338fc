"""Labelled files for sentence classification: the user's examples, read and checked once at the border.

Format (one example per line, UTF-8):

    LABEL<TAB>TEXT

LABEL is a class index 0..classes-1, or one of the class names the checkpoint stores (a converted BERT
classifier's `id2label`, kept as the checkpoint's "labels"); TEXT is everything after the first tab, encoded by
the checkpoint's tokenizer as it is (a character model sees its spaces too). Blank lines are skipped. A BERT
encoder (`bert_heads`) reads [CLS] TEXT [SEP], as BERT's single-sentence input (Devlin et al. 2019, §3): its
classifier reads position 0.

Why refuse a text longer than the context instead of truncating it: a cut text is another example, and an
accuracy over silently cut examples says nothing the user can check; the error names the line and both lengths,
so the user decides where to cut. Every other problem (a line without a tab, an unknown label, an empty text, an
empty or non-UTF-8 file) is one LabelError line naming the file and the line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .text import TextError, read_text

FLAG = "--labels"
_INDEX = re.compile(r"[0-9]+")


class LabelError(TextError):
    """A labelled file that cannot be evaluated on: unreadable, not UTF-8, empty, or a malformed line."""


@dataclass(frozen=True, slots=True)
class LabelledText:
    """The examples of a labelled file: token ids per example, its class index, and the line it came from."""

    path: str
    ids: tuple[np.ndarray, ...]  # int64 [length] per example, special tokens included
    labels: np.ndarray  # int64 [examples]
    lines: tuple[int, ...]  # 1-based line numbers

    def __len__(self) -> int:
        return len(self.ids)

    def by_length(self) -> dict[int, np.ndarray]:
        """Example indices grouped by token count (a batch needs one length: no padding enters a mean)."""
        lengths = np.array([len(i) for i in self.ids])
        return {int(n): np.flatnonzero(lengths == n) for n in np.unique(lengths)}


def label_names(value: object, classes: int, where: str) -> tuple[str, ...]:
    """The checkpoint's "labels" (None: none stored): exactly `classes` distinct non-empty strings."""
    if value is None:
        return ()
    if (not isinstance(value, list | tuple) or len(value) != classes
            or not all(isinstance(v, str) and v.strip() for v in value) or len(set(value)) != len(value)):
        raise LabelError(f"{where}: 'labels' must be {classes} distinct class names (one per class), got "
                         f"{str(value)[:80]}")
    return tuple(value)


def _label(text: str, classes: int, names: tuple[str, ...], where: str) -> int:
    label = text.strip()
    if label in names:
        return names.index(label)
    if _INDEX.fullmatch(label) and int(label) < classes:
        return int(label)
    allowed = f"0..{classes - 1}" + (f" or a name ({', '.join(names)})" if names else "")
    raise LabelError(f"{where}: unknown label {label[:40]!r}; this checkpoint has {classes} classes: {allowed}")


def read_labelled(path: Path | str, tokenizer, *, classes: int, context: int, names: tuple[str, ...] = (),
                  wrap: tuple[int, int] | None = None) -> LabelledText:
    """The examples of `path` encoded by `tokenizer` (models/tokenizer.py); `wrap` = ([CLS], [SEP]) ids put around
    every text. Refuses (LabelError) what the module docstring lists; nothing is dropped or cut."""
    from spikestack.models.tokenizer import TokenizerError

    text = read_text(path, FLAG)
    ids: list[np.ndarray] = []
    labels: list[int] = []
    lines: list[int] = []
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        where = f"{FLAG} {path} line {number}"
        label, tab, body = line.partition("\t")
        if not tab:
            raise LabelError(f"{where}: no tab; each line is LABEL<TAB>TEXT")
        index = _label(label, classes, names, where)
        if not body.strip():
            raise LabelError(f"{where}: no text after the tab")
        try:
            tokens = tokenizer.encode(body, where)
        except TokenizerError as exc:
            raise LabelError(str(exc)) from None
        if wrap is not None:
            tokens = [wrap[0], *tokens, wrap[1]]
        if len(tokens) > context:
            special = " with [CLS] and [SEP]" if wrap is not None else ""
            raise LabelError(f"{where}: {len(tokens)} tokens{special}, over the model's context of {context}; "
                             "shorten the text (texts are not truncated)")
        if not tokens:
            raise LabelError(f"{where}: the tokenizer reads no token in the text")
        ids.append(np.asarray(tokens, dtype=np.int64))
        labels.append(index)
        lines.append(number)
    return LabelledText(path=str(path), ids=tuple(ids), labels=np.asarray(labels, dtype=np.int64),
                        lines=tuple(lines))


def pool_positions(logits: np.ndarray, pooling: str) -> np.ndarray:
    """Per-position class logits [B, L, classes] → [B, classes] by the graph's `spikestack.pooling` rule."""
    if pooling == "mean_over_positions":
        return logits.mean(axis=1)
    if pooling == "first_position":
        return logits[:, 0]
    raise ValueError(f"unknown pooling {pooling!r}")


def accuracy(logits: np.ndarray, labels: np.ndarray) -> tuple[int, float]:
    """(correct, fraction correct) of the argmax of class logits [N, classes] against labels [N]."""
    correct = int((np.asarray(logits).argmax(-1) == labels).sum())
    return correct, round(correct / max(len(labels), 1), 4)
