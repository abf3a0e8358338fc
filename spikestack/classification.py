"""Sentence classification by SpikeLM's encoder on a labelled file: the float spiking model's accuracy and, beside
it, the compiled program's (`spikestack.api.evaluate`, `spikestack evaluate --labels FILE`).

Why the compiled figure comes from a second export: a NIR graph here has one Output and the encoder's default
export is its MLM head (what `compile` of an encoder builds, unchanged). `spikelm_to_nir(model,
head="classification")` gives the class head at every position; the chip layers are the same as the MLM
program's (same backbone, same calibration windows), and the host pools the positions by the graph's
`spikestack.pooling` (ours: mean over positions, which an Affine head commutes with; BERT's: position 0, [CLS]).

How close the two figures are: for our encoder the compiled head is the float head up to the chip's integer
error (the per-step head and the mean over positions are affine: rounding only); a BERT head's tanh pooler reads
the mean of h over the T steps (models/nir/ops.py `StepMean`, the last call read), as the model does; a graph that
declares itself approximate (metadata `spikestack.approximate`) says so in `approximate`. `agreement` is the
fraction of examples whose predicted class is the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spikestack.errors import SpikestackError

from .labels import LabelledText, accuracy, label_names, pool_positions, read_labelled

FAMILY = "spikelm-enc"
BATCH = 64  # examples per forward: BERT-base at 512 positions and T = 4 holds ~0.8 GB per activation at this size


def _batches(examples: LabelledText):
    """(row indices, ids [rows, length]) of at most BATCH examples of one length (no padding enters a mean)."""
    for _, rows in examples.by_length().items():
        for start in range(0, len(rows), BATCH):
            chunk = rows[start:start + BATCH]
            yield chunk, np.stack([examples.ids[r] for r in chunk])


@dataclass(frozen=True, slots=True)
class ClassificationResult:
    """Accuracy on a labelled file: float spiking model, and the compiled program when asked."""

    labels: str  # the labelled file
    family: str
    examples: int
    classes: int
    correct: int
    accuracy: float  # float spiking encoder (torch)
    compiled_correct: int | None = None
    compiled_accuracy: float | None = None  # compiled program, numpy reference executor
    agreement: float | None = None  # fraction of examples with the same predicted class, compiled vs float
    target: str | None = None
    pooling: str | None = None
    approximate: str | None = None  # why the compiled head differs from the float one beyond integer error

    def to_dict(self) -> dict:
        keys = ("labels", "family", "examples", "classes", "correct", "accuracy")
        out = {k: getattr(self, k) for k in keys}
        if self.compiled_accuracy is not None:
            out.update(compiled_correct=self.compiled_correct, compiled_accuracy=self.compiled_accuracy,
                       agreement=self.agreement, target=self.target, pooling=self.pooling)
            if self.approximate:
                out["approximate"] = self.approximate
        return out


def _load_encoder(source, family: str | None):
    """(float encoder, its checkpoint dict) of a native or published checkpoint; refuses other families."""
    from spikestack.models.checkpoint import read_checkpoint
    from spikestack.models.registry import checkpoint_family
    from spikestack.models.spikelm import load_checkpoint

    from .importing import checkpoint_of, is_checkpoint

    path = Path(source)
    if not path.exists():
        raise SpikestackError(f"{path}: file not found")
    if not is_checkpoint(path):
        raise SpikestackError(f"{path}: --labels evaluates a {FAMILY} checkpoint (.pt, or a published SpikeLM BERT "
                              "folder/file), not an artifact or NIR file")
    checkpoint = checkpoint_of(path, family)
    found = checkpoint_family(checkpoint)
    if found != FAMILY:
        raise SpikestackError(f"{path}: --labels needs a {FAMILY} checkpoint (sentence classification), got family "
                              f"{found!r}")
    model, _ = load_checkpoint(checkpoint)
    return model, read_checkpoint(checkpoint), checkpoint


def _wrap(model, tokenizer) -> tuple[int, int] | None:
    """([CLS], [SEP]) ids for a BERT encoder whose tokenizer has them, else None (our character encoder)."""
    if not model.cfg.bert_heads:
        return None
    vocab = tokenizer.hf.get_vocab()
    return (vocab["[CLS]"], vocab["[SEP]"]) if "[CLS]" in vocab and "[SEP]" in vocab else None


def read_examples(model, checkpoint: dict, path, where: str) -> LabelledText:
    """The labelled file encoded as the checkpoint's encoder reads it."""
    from spikestack.models.checkpoint import checkpoint_tokenizer

    tokenizer = checkpoint_tokenizer(checkpoint)
    cfg = model.cfg
    names = label_names(checkpoint.get("labels"), cfg.classes, where)
    return read_labelled(path, tokenizer, classes=cfg.classes, context=cfg.context, names=names,
                         wrap=_wrap(model, tokenizer))


def float_logits(model, examples: LabelledText) -> np.ndarray:
    """Class logits [examples, classes] of the float encoder, one batch per text length."""
    from spikestack.models.spikelm_tasks import class_logits

    out = np.zeros((len(examples), model.cfg.classes))
    for rows, ids in _batches(examples):
        out[rows] = class_logits(model, ids)
    return out


def compiled_logits(program, examples: LabelledText, pooling: str) -> np.ndarray:
    """Class logits [examples, classes] of a compiled classification program on the reference executor."""
    from spikestack.runtime.hybrid.executor import run

    out = None
    for rows, ids in _batches(examples):
        pooled = pool_positions(run(program, ids).logits, pooling)
        out = np.zeros((len(examples), pooled.shape[-1])) if out is None else out
        out[rows] = pooled
    return out


def classification_program(model, checkpoint: dict, target="loihi2", *, encoding: str | None = None):
    """(compiled program of the encoder's class head, its graph's metadata). The checkpoint's tokenizer travels
    in the graph, so the calibration windows are the shipped text in the model's own tokens, as for `compile`."""
    from spikestack.models.nir.export_spikelm import spikelm_to_nir
    from spikestack.models.nir.export_tokenizer import attach_tokenizer

    from .compilation import compile_hybrid_graph

    graph = attach_tokenizer(spikelm_to_nir(model, head="classification"), checkpoint)
    program = compile_hybrid_graph(graph, target, encoding=encoding, dataflow=False, calibrate=0, dump_after=None,
                                   dump_dir=None)
    return program, dict(graph.metadata)


def evaluate_labels(source, labels, *, compiled: bool = False, target="loihi2", encoding: str | None = None,
                    family: str | None = None) -> ClassificationResult:
    """Accuracy of a `spikelm-enc` checkpoint (native or published) on the labelled file `labels`
    (spikestack/labels.py); with `compiled`, also of its class head compiled for `target`."""
    model, checkpoint, where = _load_encoder(source, family)
    examples = read_examples(model, checkpoint, labels, str(where))
    reference = float_logits(model, examples)
    correct, acc = accuracy(reference, examples.labels)
    result = ClassificationResult(labels=str(labels), family=FAMILY, examples=len(examples),
                                  classes=model.cfg.classes, correct=correct, accuracy=acc)
    if not compiled:
        return result
    program, meta = classification_program(model, checkpoint, target, encoding=encoding)
    chip = compiled_logits(program, examples, str(meta["spikestack.pooling"]))
    chip_correct, chip_acc = accuracy(chip, examples.labels)
    agree = round(float((chip.argmax(-1) == reference.argmax(-1)).mean()), 4)
    return ClassificationResult(**{**result.to_dict(), "compiled_correct": chip_correct,
                                   "compiled_accuracy": chip_acc, "agreement": agree, "target": program.target,
                                   "pooling": str(meta["spikestack.pooling"]),
                                   "approximate": meta.get("spikestack.approximate")})
