"""The one border where checkpoint files are read: nothing in a file is executed, and nothing is built from it
until it has been checked.

Place in the picture (STYLE.md): the *models/* end, where "untrusted input is checked at the border". A `.pt` is
a pickle; `torch.load(weights_only=False)` runs any `__reduce__` it holds, so `spikestack compile evil.pt` would
run code. Here every file is read with `weights_only=True` (tensors, dicts, lists, strings and numbers only),
and every failure, from a missing file to a refused pickle global, becomes one `CheckpointError` line that names
the file. After reading, `load_model` checks the dict against the family's `CheckpointSpec` in this order, so no
memory is spent on a file that lies about its size:

    family ∈ spec.families (each a name of registry.FAMILIES)
    config: exactly the spec's fields, each of its type and inside its range; the family's cross-field rules;
            the vocabulary string as long as the config's vocabulary size
    parameter count from the config alone ≤ MAX_PARAMETERS
    state_dict vs the model built on the meta device (no memory): first missing key, first unexpected key,
            first shape mismatch (both shapes), non-float tensor where a float belongs, non-finite weights
    only then the model gets the weights: the checked tensors assigned to the meta-built model (no copy), or,
            for a model with tied weights or non-persistent buffers, a real model built and the weights copied in

The families' specs live beside their models (`bispike_mlp`, `spikegpt_train`, `spikellm_train`,
`spikelm_train`); `registry.checkpoint_family` uses `read_checkpoint` and `family_of` to dispatch.
"""

from __future__ import annotations

import math
import os
import re
import warnings
import zipfile
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spikestack.errors import SpikestackError

# Caps on a checkpoint's config: far above every model this project trains or imports (LLaMA-2-70B has 8192
# hidden, 28672 FFN, 80 layers, a 32000 vocabulary), far below what would exhaust a workstation.
MAX_PARAMETERS = 2_000_000_000  # state-dict elements, estimated from the config before any model is built
MAX_VOCAB = 1_048_576  # ids of a vocabulary (2^20; LLaMA-3 has 128256)
MAX_WIDTH = 65_536  # channels of one layer: embedding, hidden, FFN, heads, classes
MAX_LAYERS = 1_024  # blocks of a network
MAX_CONTEXT = 1_048_576  # tokens or characters in one window
MAX_STEPS = 1_024  # T: time steps per token of a spiking site
MAX_LEVELS = 1_024  # K: spike levels -K..K of a bi-spiking site
MAX_BITS = 16  # bits of an activation code (2^bits levels are enumerated)
REQUIRED_KEYS = ("family", "config", "state_dict", "vocab")
NO_VOCAB = object()  # "vocab" absent: the checkpoint names its ids with a "tokenizer" instead
SHOWN_CHARS = 60  # a value quoted in an error message is cut here: a hostile file may hold huge strings


class CheckpointError(SpikestackError, ValueError):
    """A checkpoint file that cannot be loaded safely; the message names the file and the key, value or limit.

    Also a ValueError, which the families' loaders raised for a wrong family before this module existed."""


@dataclass(frozen=True, slots=True)
class Field:
    """One config field: its Python type and inclusive range (None: no bound on that side)."""

    kind: type  # int, float or bool; a float field also takes an int (asdict keeps `tau=2` an int)
    low: float | None = None
    high: float | None = None
    optional: bool = False  # None allowed (SpikeLLM's n_kv_heads)


def count(high: int, *, low: int = 1, optional: bool = False) -> Field:
    """An integer size from `low` (1 unless given) to `high`."""
    return Field(int, low, high, optional)


def real(low: float, high: float) -> Field:
    """A finite float in [low, high]."""
    return Field(float, low, high)


FLAG = Field(bool)


def _no_rules(family: str, config: dict) -> str | None:
    return None


@dataclass(frozen=True, slots=True)
class CheckpointSpec:
    """What the checkpoint of one model family must hold, and how to build its model from the config."""

    families: tuple[str, ...]  # the `family` values this loader accepts
    fields: Mapping[str, Field]  # exactly the config dataclass's fields
    vocab_field: str  # the config field that the vocabulary string's length must equal
    parameter_count: Callable[[dict], int]  # state-dict elements, from a config whose fields passed their checks
    build: Callable[[str, dict], nn.Module]  # (family, config) → model; also called under torch.device("meta")
    rules: Callable[[str, dict], str | None] = _no_rules  # cross-field rules: the first one broken, or None


def _short(value: Any) -> str:
    """repr of a value from the file, cut to SHOWN_CHARS so a hostile file cannot flood the one error line."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "…"


def _load_failure(exc: Exception) -> str:
    """Why torch.load refused a file, in a few words (torch's own messages span many lines)."""
    message = str(exc)
    refused = re.search(r"Unsupported global: GLOBAL (\S+)", message)
    if refused:
        return (f"refuses to unpickle {refused.group(1)[:SHOWN_CHARS]} (only tensors, dicts, lists, strings and "
                "numbers are loaded; nothing in a checkpoint is executed)")
    opcode = re.search(r"Unsupported operand (\d+)", message)
    if opcode:
        return f"not a torch checkpoint (pickle opcode {opcode.group(1)} is not accepted)"
    first_line = message.strip().splitlines()[0][:SHOWN_CHARS] if message.strip() else ""
    return f"not a readable checkpoint ({type(exc).__name__}{': ' + first_line if first_line else ''})"


@dataclass(frozen=True, eq=False)
class InMemoryCheckpoint(os.PathLike):
    """A native checkpoint dict converted in memory from a published file (models/published), standing where a
    checkpoint path is expected: `read_checkpoint` returns its dict, so it takes every check of `load_model`, and
    `Path(...)` of it is the published file, which error messages name. No temporary file is written."""

    path: Path
    checkpoint: dict = dataclass_field(repr=False)

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:  # f"{path}: …" in an error message names the published file
        return str(self.path)


def read_checkpoint(path: Path | str | InMemoryCheckpoint) -> dict:
    """The top-level dict of a checkpoint file, read without executing anything (torch `weights_only=True`).

    Zip checkpoints (every `torch.save` since torch 1.6) are memory-mapped, so the tensors of a file that fails
    a later check are never read into memory. Raises CheckpointError naming the file for anything else.
    """
    if isinstance(path, InMemoryCheckpoint):
        return path.checkpoint
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a checkpoint file (a folder or device)")
    try:
        with warnings.catch_warnings():  # torch warns about unusual pickle protocols: the error says enough
            warnings.simplefilter("ignore")
            checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as exc:  # noqa: BLE001 — a corrupt or hostile file makes torch raise almost any type
        raise CheckpointError(f"{path}: {_load_failure(exc)}") from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: top level is a {type(checkpoint).__name__}, expected a dict with keys "
                              f"{', '.join(REQUIRED_KEYS)}")
    return checkpoint


def read_state_dict(path: Path | str) -> dict:
    """The top-level dict of a published weights file (`.pth`, `.bin`: a raw state dict, or a dict holding one),
    read like `read_checkpoint`: `weights_only=True`, memory-mapped for zip files, one CheckpointError line naming
    the file. The caller (models/published) checks keys, sizes and shapes before anything is built from it."""
    return read_checkpoint(Path(path))


def family_of(checkpoint: dict, path: Path | str, known: Collection[str]) -> str:
    """The checkpoint's `family`, one of `known` (registry.FAMILIES passes itself: this module imports nothing
    from the registry, which imports it)."""
    family = checkpoint.get("family")
    if not isinstance(family, str) or family not in known:
        raise CheckpointError(f"{path}: unknown checkpoint family {_short(family)}; known: {', '.join(known)}")
    return family


def load_model(path: Path | str | InMemoryCheckpoint, spec: CheckpointSpec) -> tuple[nn.Module, dict]:
    """(model in eval mode with the file's weights, the checked checkpoint dict) for a family in `spec`."""
    checkpoint = read_checkpoint(path)  # before Path(): an InMemoryCheckpoint holds its dict
    path = Path(path)
    family = checkpoint.get("family")
    if not isinstance(family, str) or family not in spec.families:
        expected = " or ".join(repr(f) for f in spec.families)
        raise CheckpointError(f"{path}: checkpoint family is {_short(family)}, expected {expected}")
    for key in REQUIRED_KEYS:
        if key not in checkpoint and not (key == "vocab" and "tokenizer" in checkpoint):  # either names the ids
            raise CheckpointError(f"{path}: missing top-level key {key!r}")
    config = _checked_config(checkpoint["config"], checkpoint.get("vocab", NO_VOCAB), spec, family, path)
    _check_tokenizer(checkpoint, config[spec.vocab_field], spec.vocab_field, path)
    state_dict = checkpoint["state_dict"]
    if not isinstance(state_dict, dict):
        raise CheckpointError(f"{path}: 'state_dict' is a {type(state_dict).__name__}, expected a dict")
    with torch.device("meta"):
        reference = _built(spec, family, config, path)
    expected = reference.state_dict()
    _check_state_dict(state_dict, expected, path)
    try:
        weights = {k: _as_parameter(state_dict[k], want) for k, want in expected.items()}
        if _assignable(reference, expected) and _distinct(weights.values()):
            model = reference  # the checked tensors become its parameters: no random init, no second copy
            model.load_state_dict(weights, assign=True)
        else:
            model = _built(spec, family, config, path)
            model.load_state_dict(state_dict)
    except RuntimeError as exc:  # not expected after the checks above; kept as one line all the same
        raise CheckpointError(f"{path}: state_dict does not load ({str(exc).splitlines()[0][:SHOWN_CHARS]})") from None
    model.eval()
    return model, checkpoint


def _assignable(model: nn.Module, expected: Mapping[str, torch.Tensor]) -> bool:
    """The state dict names every tensor of `model` exactly once: no tied weights (SpikeLLM's head shares the
    embedding; assigning would untie them), no non-persistent buffers and no tensors kept as plain attributes
    (they would stay on the meta device). Then `load_state_dict(assign=True)` gives the same model as building it
    and copying the weights in."""
    if any(isinstance(v, torch.Tensor) for m in model.modules() for v in vars(m).values()):
        return False
    tensors = dict(model.named_parameters(remove_duplicate=False))
    tensors.update(model.named_buffers(remove_duplicate=False))
    distinct = len({id(t) for t in tensors.values()}) == len(tensors)
    return distinct and len(tensors) == len(expected) and set(tensors) == set(expected)


def _distinct(tensors: Collection[torch.Tensor]) -> bool:
    """No two tensors share memory (a file may store one storage under two keys): assigned, they would stay tied
    where copying unties them."""
    storages = [t.untyped_storage().data_ptr() for t in tensors if t.numel()]
    return len(set(storages)) == len(storages)


def _as_parameter(tensor: torch.Tensor, want: torch.Tensor) -> torch.Tensor:
    """`tensor` in the model's dtype, contiguous, as `load_state_dict`'s copy would leave it; no copy when it
    already is (a zip checkpoint's memory-mapped float32 tensors: SpikeGPT-216M's 0.86 GB are not duplicated)."""
    return tensor.detach().to(want.dtype).contiguous()


def _built(spec: CheckpointSpec, family: str, config: dict, path: Path) -> nn.Module:
    """The family's model; a config that its constructors refuse becomes one line naming the file."""
    try:
        return spec.build(family, config)
    except (ValueError, TypeError) as exc:  # the config dataclasses' own checks (SpikeLLMError is a ValueError)
        raise CheckpointError(f"{path}: config refused by the model: {str(exc).splitlines()[0]}") from None


def _checked_config(config: Any, vocab: Any, spec: CheckpointSpec, family: str, path: Path) -> dict:
    """The config dict after every field, rule, the vocabulary and the size cap are checked."""
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: 'config' is a {type(config).__name__}, expected a dict")
    for name in spec.fields:
        if name not in config:
            raise CheckpointError(f"{path}: config is missing field {name!r}")
    for name in config:
        if name not in spec.fields:
            raise CheckpointError(f"{path}: config has unexpected field {_short(name)}")
    for name, field in spec.fields.items():
        problem = _field_problem(config[name], field)
        if problem:
            raise CheckpointError(f"{path}: config field {name!r} = {_short(config[name])}: {problem}")
    broken = spec.rules(family, config)
    if broken:
        raise CheckpointError(f"{path}: config: {broken}")
    if vocab is NO_VOCAB:  # a checkpoint with a tokenizer instead (`_check_tokenizer`)
        pass
    elif not isinstance(vocab, str):
        raise CheckpointError(f"{path}: 'vocab' is a {type(vocab).__name__}, expected a string")
    elif len(vocab) != config[spec.vocab_field]:
        raise CheckpointError(f"{path}: 'vocab' has {len(vocab)} characters, config field {spec.vocab_field!r} "
                              f"says {config[spec.vocab_field]}")
    parameters = spec.parameter_count(config)
    if parameters > MAX_PARAMETERS:
        raise CheckpointError(f"{path}: config describes {parameters:,} parameters, over the limit of "
                              f"{MAX_PARAMETERS:,}")
    return config


def _check_tokenizer(checkpoint: dict, vocab_size: int, vocab_field: str, path: Path) -> None:
    """An optional "tokenizer" (tokenizer.json text, size-capped) must parse and have the config's vocabulary size
    (every id an embedding row, every row an id). Parsed once more by `checkpoint_tokenizer` where it is used."""
    if "tokenizer" not in checkpoint:
        return
    from .tokenizer import Tokenizer, TokenizerError

    try:
        tokenizer = Tokenizer.from_json(checkpoint["tokenizer"], "'tokenizer'")
    except TokenizerError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    if tokenizer.vocab_size != vocab_size:
        raise CheckpointError(f"{path}: 'tokenizer' ({tokenizer.kind}) has {tokenizer.vocab_size} tokens, config "
                              f"field {vocab_field!r} says {vocab_size} embedding rows")
    if tokenizer.chars is not None and isinstance(checkpoint.get("vocab"), str) and tokenizer.chars != checkpoint[
            "vocab"]:
        raise CheckpointError(f"{path}: 'tokenizer' and 'vocab' hold different characters; keep one of them")


def checkpoint_tokenizer(checkpoint: dict):
    """The checked checkpoint's Tokenizer: its "tokenizer", else the char tokenizer of its "vocab" string (every
    checkpoint before tokenizers travelled)."""
    from .tokenizer import Tokenizer

    if "tokenizer" in checkpoint:
        return Tokenizer.from_json(checkpoint["tokenizer"], "'tokenizer'")
    return Tokenizer.from_chars(checkpoint["vocab"])


def _field_problem(value: Any, field: Field) -> str | None:
    """Why `value` does not fit `field`, or None. bool is refused where an int belongs (it is an int subclass)."""
    if value is None:
        return None if field.optional else f"expected {field.kind.__name__}, got None"
    accepted: tuple[type, ...] = (int, float) if field.kind is float else (field.kind,)
    if isinstance(value, bool) is not (field.kind is bool) or not isinstance(value, accepted):
        return f"expected {field.kind.__name__}, got {type(value).__name__}"
    if isinstance(value, float) and not math.isfinite(value):
        return "not finite"
    if field.low is not None and value < field.low:
        return f"below the minimum {field.low}"
    if field.high is not None and value > field.high:
        return f"above the maximum {field.high}"
    return None


def _check_state_dict(given: dict, expected: dict[str, torch.Tensor], path: Path) -> None:
    """Keys, shapes, dtype kinds and finiteness of the file's tensors against the model's (meta) state dict."""
    for key in expected:
        if key not in given:
            raise CheckpointError(f"{path}: state_dict is missing key {key!r}")
    for key in given:
        if key not in expected:
            raise CheckpointError(f"{path}: state_dict has unexpected key {_short(key)}")
    for key, want in expected.items():
        tensor = given[key]
        if not isinstance(tensor, torch.Tensor) or tensor.layout != torch.strided:
            raise CheckpointError(f"{path}: state_dict key {key!r} is a {type(tensor).__name__}, expected a dense "
                                  "tensor")
        if tensor.shape != want.shape:
            raise CheckpointError(f"{path}: state_dict key {key!r} has shape {tuple(tensor.shape)}, the model "
                                  f"{tuple(want.shape)}")
        if want.is_floating_point() != tensor.is_floating_point() or (
                not want.is_floating_point() and tensor.dtype != want.dtype):
            raise CheckpointError(f"{path}: state_dict key {key!r} has dtype {tensor.dtype}, the model {want.dtype}")
        if tensor.is_floating_point() and not _all_finite(tensor):
            raise CheckpointError(f"{path}: state_dict key {key!r} holds non-finite values (NaN or inf)")


def _all_finite(tensor: torch.Tensor) -> bool:
    """No NaN or ±inf. `torch.aminmax` propagates NaN and returns ±inf when one is there, and it reads the tensor
    once without allocating a mask: 0.02 s against 0.4 s for `isfinite(t).all()` on a 50,277 × 768 float32 head
    (measured, 2-core VM); other float dtypes take the mask."""
    if tensor.numel() == 0:
        return True
    if tensor.dtype not in (torch.float32, torch.float64):
        return bool(torch.isfinite(tensor).all())
    low, high = torch.aminmax(tensor)
    return math.isfinite(float(low)) and math.isfinite(float(high))
