"""One torch thread for the tiny models of this repository, restored afterwards.

Why: these models run many tiny ops per step, where extra intra-op threads only add synchronisation (measured on
the shared 2-core machine: 2 threads 5-11 s per SpikeGPT step, 1 thread 0.2-0.4 s), and a fixed thread count
makes training bit-reproducible with the same torch build. Training, evaluation and the tests all use this.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
