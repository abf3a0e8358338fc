"""Progress on a terminal, silence in a pipe: one switch for every long loop (demo, calibration, Lava verify and
generate, sweep, simulate on long inputs).

Why a module: the CLI's `--quiet` and a notebook's wish for quiet must reach loops deep in the library without
threading a flag through every call; bars go to stderr and only when stderr is a terminal, so piped output and
JSON on stdout stay clean.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = bool(quiet)


def showing() -> bool:
    """Whether progress is shown now: not --quiet, and stderr is a terminal."""
    return not _quiet and sys.stderr.isatty()


def progress(items: Iterable[T], desc: str, total: int | None = None) -> Iterator[T]:
    """`items`, with a tqdm bar on a terminal (nothing otherwise)."""
    if not showing():
        yield from items
        return
    from tqdm import tqdm

    tqdm.monitor_interval = 0  # no monitor thread: a big compile forks its ONNX export only when single-threaded
    yield from tqdm(items, desc=desc, total=total, leave=False, file=sys.stderr)
