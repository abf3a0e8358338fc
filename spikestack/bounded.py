"""One bounded read of a user's file, for every small text input (tokenizer files, `--text`), and one
no-pickle loader of numpy arrays (`--input`, `--trace`).

Why: a size check from `stat` alone lets a file that grows (or a FIFO) be read without limit; reading at most
limit + 1 bytes keeps the bound whatever the file does. The caller's error class and label make the one line
the CLI prints name the option and the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spikestack.errors import SpikestackError


def read_bounded(path: Path, limit: int, error: type[SpikestackError], label: str) -> bytes:
    """At most `limit` bytes of a regular file; `error(label + reason)` for a missing, special or oversized one."""
    if not path.is_file():
        raise error(f"{label}: {'not a regular file' if path.exists() else 'file not found'}")
    size = path.stat().st_size
    if size > limit:
        raise error(f"{label}: {size:,} bytes, over the limit of {limit:,}")
    with path.open("rb") as f:
        data = f.read(limit + 1)  # a file that grows after stat is still bounded
    if len(data) > limit:
        raise error(f"{label}: over the limit of {limit:,} bytes")
    return data


def load_arrays(path: Path, error: type[SpikestackError], label: str) -> dict[str, np.ndarray]:
    """Every array of a .npy (under the name "") or .npz file, read once with numpy's loader and no pickles: an
    object array is refused, never executed. `error(label + reason)` for a file numpy cannot read."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return {"": loaded}
        with loaded:
            return {name: loaded[name] for name in loaded.files}
    except (ValueError, OSError, EOFError) as exc:
        text = " ".join(str(exc).split())
        reason = "it holds pickled Python objects, which are never loaded" if "allow_pickle" in text else text[:120]
        raise error(f"{label}: {reason}") from None
