"""ArtifactWriter: an artifact folder written in pieces, for a program whose arrays do not fit in memory together.

Place in the picture (STYLE.md): part of the one artifact format (`compiler/artifact.py` owns it; get a writer from
`artifact.writer_for` and finish with `artifact.save(program, out_dir, writer)`). The streaming compile
(compiler/hybrid/stream.py) adds each chip layer's arrays as soon as they are quantized and keeps reading them
through read-only maps of the written files; `release_pages` keeps those maps out of the resident set.
"""

from __future__ import annotations

import mmap
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from spikestack.errors import ArtifactError

from .artifact_files import map_npy
from .artifact_output import new_temp, remove_stale_temps


class ArtifactWriter:
    """An artifact written in pieces: arrays as they are produced (a streaming compile, compiler/hybrid/stream.py),
    then the rest by `save(..., writer=)`; same temporary sibling, hashes, bytes and swap as a one-shot `save`."""

    def __init__(self, out_dir: Path, before: tuple[int, int] | None,
                 save_npy: Callable[[np.ndarray, Path], str]) -> None:
        """`before`: what is at `out_dir` now (artifact.py `writer_for` checked it may be replaced); `save_npy`
        writes one array and returns its sha256 (artifact.py `_save_npy`)."""
        self.out_dir, self.before, self.save_npy = out_dir, before, save_npy
        try:
            self.out_dir.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ArtifactError(f"{self.out_dir.parent}: cannot create the output's folder ({exc.strerror})") from None
        remove_stale_temps(self.out_dir)
        self.tmp, self.written, self.maps = new_temp(self.out_dir), {}, []
        try:
            (self.tmp / "arrays").mkdir()
        except BaseException:
            self.abort()
            raise

    def _store(self, key: str, a: np.ndarray) -> Path:
        rel = f"arrays/{key}.npy"
        self.written[key] = {"file": rel, "dtype": str(a.dtype), "shape": list(a.shape),
                             "sha256": self.save_npy(a, self.tmp / rel)}
        return self.tmp / rel

    def add(self, key: str, a: np.ndarray) -> np.ndarray:
        """Write array `key` now; returns it mapped read-only from the file, so the caller can drop its copy."""
        mapped, mapping = map_npy(self._store(key, a), a.dtype, a.shape)
        self.maps += [mapping] if mapping is not None else []
        return mapped

    def release_pages(self) -> None:
        """Drop the mapped arrays' pages from the resident set (the page cache keeps them for the next read)."""
        for mapping in self.maps:
            mapping.madvise(mmap.MADV_DONTNEED)

    def entry(self, key: str, a: np.ndarray) -> dict[str, Any]:
        """The manifest entry of `key`: written now, or checked against what `add` wrote."""
        if key not in self.written:
            self._store(key, a)
        done = self.written[key]
        if done["dtype"] != str(a.dtype) or done["shape"] != list(a.shape):
            raise ArtifactError(f"array {key!r}: written as {done['dtype']} {done['shape']}, the program holds "
                                f"{a.dtype} {list(a.shape)}")
        return done

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
