"""The user's own inputs (`--input FILE` on run, verify and simulate; `inputs=` in `spikestack.api`), checked at
the border against the program they feed, so that no backend ever sees an input it would misread.

What a program takes (docs/foreign_snn.md, "Inputs"):

* delayed-timing (foreign LIF) programs: binary spike rasters [samples, steps, inputs] of 0/1 (bool, integer or
  float holding only 0.0 and 1.0). Their input is a spike input: the host sends events into the first projection's
  synapses (Lava's Dense `s_in`), exactly what a NIR `Input` feeding an `Affine` means. An analog current has no
  path into those synapses that the Lava run could reproduce, so analog values are refused with the first one
  named, rather than silently thresholded.
* token programs and language models: integer token ids, [tokens, context] (chain) or [sequences, positions]
  (hybrid), each in 0..vocabulary-1.

Files are `.npy` (one array) or `.npz` (one array, or the array named `inputs`), read with
`np.load(allow_pickle=False)` (a pickled object array is refused, never executed) after a size check.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spikestack.bounded import load_arrays
from spikestack.errors import SpikestackError

MAX_INPUT_FILE_BYTES = 1 << 29  # 512 MiB: the default-input cap (MAX_INPUT_VALUES int64 values), as a file size
INPUT_SUFFIXES = (".npy", ".npz")


class InputError(SpikestackError, ValueError):
    """An input file or array that does not fit the program (a ValueError too: the executors' old contract)."""


def read_input_file(path: str | Path) -> np.ndarray:
    """The one numeric array in a .npy/.npz file; refuses missing, oversized, pickled and ambiguous files."""
    path = Path(path)
    if path.suffix.lower() not in INPUT_SUFFIXES:
        raise InputError(f"{path}: input files are .npy or .npz arrays, got suffix {path.suffix!r}")
    if not path.is_file():
        raise InputError(f"{path}: input file not found")
    size = path.stat().st_size
    if size > MAX_INPUT_FILE_BYTES:
        raise InputError(f"{path}: {size} bytes, more than the {MAX_INPUT_FILE_BYTES} bytes an input file may have")
    arrays = load_arrays(path, InputError, f"{path}: not a readable numeric array")
    return arrays[""] if "" in arrays else _one_array(path, arrays)


def _one_array(path: Path, arrays: dict[str, np.ndarray]) -> np.ndarray:
    names = list(arrays)
    if "inputs" in names:
        return arrays["inputs"]
    if len(names) != 1:
        raise InputError(f"{path}: an .npz input holds one array or one named 'inputs', found {names[:8]}")
    return arrays[names[0]]


def check_input_array(program, x: np.ndarray, where: str = "inputs") -> np.ndarray:
    """`x` checked against what `program` takes (module doc); `where` names the file in every message."""
    from spikestack.evaluation import is_hybrid

    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise InputError(f"{where}: dtype {x.dtype} — expected bool, integer or float values")
    if not is_hybrid(program) and program.timing == "delayed":
        return _check_spikes(program, x, where)
    if is_hybrid(program):
        vocab, shape_text = int(program.vocab_size), "[sequences, positions]"
        ok_shape = x.ndim == 2
    else:
        vocab, context = int(program.host_input.table.shape[0]), int(program.host_input.context)
        shape_text, ok_shape = f"[tokens, {context}]", x.ndim == 2 and x.shape[1] == context
    if not ok_shape or x.size == 0:
        raise InputError(f"{where}: shape {list(x.shape)}, expected {shape_text} token ids")
    if x.dtype.kind == "f" and not np.all(np.isfinite(x) & (x == np.round(x))):
        raise InputError(f"{where}: token ids must be whole numbers")
    if x.min() < 0 or x.max() >= vocab:
        raise InputError(f"{where}: token ids span {int(x.min())}..{int(x.max())}, the vocabulary 0..{vocab - 1}")
    return x.astype(np.int64)


def _check_spikes(program, x: np.ndarray, where: str) -> np.ndarray:
    want = [program.steps, program.host_input.size]
    if x.ndim != 3 or list(x.shape[1:]) != want or x.shape[0] < 1:
        raise InputError(f"{where}: shape {list(x.shape)}, expected [samples, {want[0]}, {want[1]}] "
                         f"(samples ≥ 1, steps, inputs of {program.host_input.name!r})")
    bad = ~((x == 0) | (x == 1))
    if bad.any():
        at = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InputError(f"{where}: value {x[at]!r} at {list(at)}; input {program.host_input.name!r} is a spike "
                         "input (0/1 events into its synapses): analog currents are not accepted")
    return x.astype(np.int64)
