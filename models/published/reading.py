"""Reading a published checkpoint from disk into a `Source`: nothing executed, sizes capped, weights memory-mapped.

Place in the picture (STYLE.md): the *models/* border ("untrusted input is checked at the border"). `.pth`/`.pt`/
`.bin` go through models/checkpoint.py `read_state_dict` (torch `weights_only=True`, the one place torch.load is
called); `.safetensors` through the `safetensors` library (`safe_open`, a JSON header and raw little-endian
buffers: no code path at all); a Hugging Face directory's sharded index may name only files inside that directory.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch

from ..checkpoint import MAX_PARAMETERS, MAX_VOCAB, read_state_dict
from .base import PublishedFormatError, Source

MAX_JSON_BYTES = 16 * 1024 * 1024  # config.json (LLaMA's: under 1 KB) and shard indexes (LLaMA-70B's: ~70 KB)
MAX_KEYS = 100_000  # tensors in one checkpoint (LLaMA-2-70B has 723; a 1,024-layer model a few 10,000)
MAX_KEY_CHARS = 1_000
MAX_SHARDS = 1_024
MAX_DIMS = 8  # tensor rank (published layouts hold rank ≤ 3)
TOKENIZER_FILES = ("tokenizer.json", "20B_tokenizer.json", "vocab.json", "vocab.txt", "tokenizer.model")
HF_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                   "pytorch_model.bin.index.json")
NESTED_STATE_KEYS = ("state_dict", "model", "module")  # training scripts often save {"state_dict": {...}, ...}


def read_json(path: Path, what: str) -> dict:
    """A JSON object file of at most MAX_JSON_BYTES, or one PublishedFormatError line naming it."""
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise PublishedFormatError(f"{path}: {what} is {size:,} bytes, over the limit of {MAX_JSON_BYTES:,}")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PublishedFormatError(f"{path}: {what} is not UTF-8 JSON ({str(exc).splitlines()[0][:60]})") from None
    if not isinstance(value, dict):
        raise PublishedFormatError(f"{path}: {what} holds a {type(value).__name__}, expected a JSON object")
    return value


def read_config(folder: Path) -> dict | None:
    """`config.json` in `folder` (Hugging Face), or None when there is none."""
    path = folder / "config.json"
    return read_json(path, "config.json") if path.is_file() else None


def tokenizer_beside(folder: Path) -> Path | None:
    """The first tokenizer or vocabulary file of TOKENIZER_FILES in `folder`, or None."""
    return next((folder / name for name in TOKENIZER_FILES if (folder / name).is_file()), None)


class _SafetensorsState(Mapping):
    """Tensors of one or more `.safetensors` files, read on access from memory-mapped files (`safe_open`)."""

    def __init__(self, where: dict[str, object]) -> None:
        self._where = where  # key → open safe_open handle

    def __getitem__(self, key: str) -> torch.Tensor:
        return self._where[key].get_tensor(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


# Memory-mapped safetensors: a tensor is read only when a consumer asks for its key (the streaming compile holds
# one decoder block), so their cap is a model far larger than a pickled file's, which is read whole: LLaMA-2-70B
# has 69 G parameters. Building a whole model in memory stays capped by checkpoint.py's MAX_PARAMETERS.
MAX_MAPPED_PARAMETERS = 100_000_000_000


def _check_shape(path: Path, key: object, shape: tuple[int, ...], total: int, limit: int | None = None) -> int:
    """Key type and length, rank and rows against the caps (`limit`: of parameters, default MAX_PARAMETERS);
    returns the running element count."""
    limit = MAX_PARAMETERS if limit is None else limit
    if not isinstance(key, str) or len(key) > MAX_KEY_CHARS:
        raise PublishedFormatError(f"{path}: a key {str(key)[:60]!r} is not a string of at most {MAX_KEY_CHARS} "
                                   "characters")
    if len(shape) > MAX_DIMS:
        raise PublishedFormatError(f"{path}: key {key!r} has rank {len(shape)}, over the limit of {MAX_DIMS}")
    if shape and shape[0] > MAX_VOCAB:
        raise PublishedFormatError(f"{path}: key {key!r} has {shape[0]:,} rows, over the limit of {MAX_VOCAB:,}")
    numel = 1
    for n in shape:
        numel *= int(n)
    total += numel
    if total > limit:
        raise PublishedFormatError(f"{path}: more than {limit:,} parameters, over the limit")
    return total


def _safetensors(paths: list[Path], keys_of: dict[Path, set[str]] | None = None) -> Mapping[str, torch.Tensor]:
    from safetensors import safe_open

    where: dict[str, object] = {}
    total = 0
    for path in paths:
        try:
            handle = safe_open(str(path), framework="pt")
            keys = list(handle.keys())
        except Exception as exc:  # noqa: BLE001 — a corrupt header makes the Rust reader raise its own types
            raise PublishedFormatError(f"{path}: not a readable safetensors file ({str(exc).splitlines()[0][:60]})"
                                       ) from None
        if len(where) + len(keys) > MAX_KEYS:
            raise PublishedFormatError(f"{path}: more than {MAX_KEYS:,} tensors, over the limit")
        for key in keys:
            if keys_of is not None and key not in keys_of[path]:
                continue  # a shard holds keys its index does not assign to it: the index decides
            total = _check_shape(path, key, tuple(handle.get_slice(key).get_shape()), total, MAX_MAPPED_PARAMETERS)
            where[key] = handle
    return _SafetensorsState(where)


def _torch_file(path: Path) -> dict[str, torch.Tensor]:
    top = read_state_dict(path)
    nested = [k for k in NESTED_STATE_KEYS if isinstance(top.get(k), dict)]
    if nested and not any(isinstance(v, torch.Tensor) for v in top.values()):
        top = top[nested[0]]
    if len(top) > MAX_KEYS:
        raise PublishedFormatError(f"{path}: {len(top):,} entries, over the limit of {MAX_KEYS:,}")
    total = 0
    for key, value in top.items():
        if not isinstance(value, torch.Tensor) or value.layout != torch.strided:
            raise PublishedFormatError(f"{path}: key {str(key)[:60]!r} holds a {type(value).__name__}, expected a "
                                       "dense tensor (a raw state dict)")
        total = _check_shape(path, key, tuple(value.shape), total)
    return top


def _inside(folder: Path, name: object, index: Path) -> Path:
    """A shard named by an index: a plain file name inside `folder` (no separators, no '..', no links out)."""
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in (".", ".."):
        raise PublishedFormatError(f"{index}: shard {str(name)[:60]!r} is not a file name inside {folder}")
    shard = folder / name
    if not shard.resolve().is_relative_to(folder.resolve()):
        raise PublishedFormatError(f"{index}: shard {name!r} points outside {folder}")
    if not shard.is_file():
        raise PublishedFormatError(f"{index}: shard {name!r} not found in {folder}")
    return shard


def _sharded(index: Path) -> Mapping[str, torch.Tensor]:
    weight_map = read_json(index, "shard index").get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise PublishedFormatError(f"{index}: no 'weight_map' object naming each key's shard")
    if len(weight_map) > MAX_KEYS:
        raise PublishedFormatError(f"{index}: {len(weight_map):,} keys, over the limit of {MAX_KEYS:,}")
    keys_of: dict[Path, set[str]] = {}
    for key, name in weight_map.items():
        keys_of.setdefault(_inside(index.parent, name, index), set()).add(key)
    if len(keys_of) > MAX_SHARDS:
        raise PublishedFormatError(f"{index}: {len(keys_of):,} shards, over the limit of {MAX_SHARDS:,}")
    if index.name.endswith(".safetensors.index.json"):
        state = _safetensors(list(keys_of), keys_of)
    else:
        state = {}
        for shard, keys in keys_of.items():
            state.update({k: v for k, v in _torch_file(shard).items() if k in keys})
    missing = next((k for k in weight_map if k not in state), None)
    if missing is not None:
        raise PublishedFormatError(f"{index}: key {missing!r} is not in its shard {weight_map[missing]!r}")
    return state


def _hf_directory(folder: Path) -> Mapping[str, torch.Tensor]:
    for name in HF_WEIGHT_FILES:
        path = folder / name
        if not path.is_file():
            continue
        if name.endswith(".index.json"):
            return _sharded(path)
        return _safetensors([path]) if name.endswith(".safetensors") else _torch_file(path)
    raise PublishedFormatError(f"{folder}: a folder without weights; expected one of {', '.join(HF_WEIGHT_FILES)}")


def read_source(path: Path | str, *, tokenizer: Path | str | None = None, text: Path | str | None = None) -> Source:
    """A published checkpoint file or Hugging Face directory, read safely; `tokenizer` overrides the one found,
    `text` is the user's text for layouts that calibrate on it."""
    path = Path(path)
    if not path.exists():
        raise PublishedFormatError(f"{path}: checkpoint not found")
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise PublishedFormatError(f"{path}: a folder without config.json (a Hugging Face model folder holds "
                                       "config.json and its weights)")
        state, folder = _hf_directory(path), path
    elif path.suffix == ".safetensors":
        state, folder = _safetensors([path]), path.parent
    else:
        state, folder = _torch_file(path), path.parent
    if not state:
        raise PublishedFormatError(f"{path}: holds no tensors")
    tokenizer_path = Path(tokenizer) if tokenizer is not None else tokenizer_beside(folder)
    if tokenizer_path is not None and not tokenizer_path.is_file():
        raise PublishedFormatError(f"{tokenizer_path}: tokenizer file not found")
    text_path = Path(text) if text is not None else None
    if text_path is not None and not text_path.is_file():
        raise PublishedFormatError(f"{text_path}: text file not found")
    return Source(path=path, state=state, config=read_config(folder), tokenizer_path=tokenizer_path,
                  text_path=text_path)
