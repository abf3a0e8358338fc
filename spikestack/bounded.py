"""One bounded read of a user's file, for every small text input (tokenizer files, `--text`).

Why: a size check from `stat` alone lets a file that grows (or a FIFO) be read without limit; reading at most
limit + 1 bytes keeps the bound whatever the file does. The caller's error class and label make the one line
the CLI prints name the option and the file."""

from __future__ import annotations

from pathlib import Path

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
