"""Writing an artifact's folder without destroying anything (the output side of `compiler/artifact.py`'s `save`).

`save` writes into a temporary sibling `.NAME.<random>` and renames it into place, so a crash never leaves a
half-written artifact at the output path. This module holds what makes that safe around other processes:

* a marker file in every temporary folder (pid, host, start time), so a later `save` recognises the leftovers of a
  killed compile as its own and removes them — and never a folder it did not write;
* a lock file `.NAME.lock`, created with O_EXCL, held only while the finished folder is swapped into place, so two
  compiles racing to one path cannot interleave their renames; the one that finds the output changed since it
  started (the other compile finished first) gives up with an ArtifactError instead of an OSError.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from spikestack.errors import ArtifactError

MARKER = ".spikestack-writer"  # inside a temporary folder; removed just before the folder becomes the artifact
STALE_TEMP_S = 30 * 60  # a temporary folder this old is abandoned even if its pid looks alive (pid reuse)
STALE_LOCK_S = 120  # the lock is held for a few renames; two minutes is an abandoned lock
_MARKER_MAX_BYTES = 4096


def _owner() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}


def write_marker(path: Path) -> None:
    path.write_text(json.dumps(_owner()))


def read_marker(path: Path) -> dict[str, Any] | None:
    """The marker's JSON if `path` is a small regular file holding one, else None (then it is not ours)."""
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size > _MARKER_MAX_BYTES:
            return None
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(info, dict) and isinstance(info.get("pid"), int) and isinstance(info.get("started"), (int, float))
    return info if ok else None


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def is_stale(info: dict[str, Any], max_age_s: float) -> bool:
    """Abandoned: its writer ran on this host and is gone, or it is older than `max_age_s` (a pid can be reused,
    and on a shared filesystem another host's pid says nothing here)."""
    if time.time() - info["started"] > max_age_s:
        return True
    return info.get("host") == socket.gethostname() and not _pid_alive(info["pid"])


def remove_stale_temps(out: Path) -> list[Path]:
    """Remove `.NAME.*` folders beside `out` that carry our marker and are abandoned; returns what was removed."""
    removed = []
    prefix = f".{out.name}."
    try:
        entries = list(os.scandir(out.parent))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(prefix) or not entry.is_dir(follow_symlinks=False):
            continue
        info = read_marker(Path(entry.path) / MARKER)
        if info is not None and is_stale(info, STALE_TEMP_S):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
    return removed


def new_temp(out: Path) -> Path:
    """A fresh `.NAME.<random>` folder beside `out`, marked as this process's."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    write_marker(tmp / MARKER)
    return tmp


def identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of what is at `path` now (None: nothing): a folder renamed into place has a new inode."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def conflict(out: Path, holder: str) -> ArtifactError:
    return ArtifactError(f"{out}: another compile wrote {out} at the same time ({holder}); its artifact was kept "
                         "and this one discarded")


@contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Hold `.NAME.lock` beside `out` (O_EXCL) while swapping; an abandoned lock is removed once and retried."""
    lock = out.parent / f".{out.name}.lock"
    fd = -1
    for attempt in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0), 0o644)
            break
        except FileExistsError:
            info = read_marker(lock)
            try:
                age = time.time() - os.lstat(lock).st_mtime
            except FileNotFoundError:  # released meanwhile
                continue
            stale = is_stale(info, STALE_LOCK_S) if info is not None else age > STALE_LOCK_S
            if attempt or not stale:
                raise conflict(out, f"pid {info['pid'] if info else '?'} holds {lock.name}") from None
            try:
                os.unlink(lock)
            except FileNotFoundError:
                pass
    if fd < 0:
        raise conflict(out, f"{lock.name} kept changing hands")
    try:
        os.write(fd, json.dumps(_owner()).encode())
        os.close(fd)
        yield
    finally:
        try:
            os.unlink(lock)
        except FileNotFoundError:
            pass


def swap_into_place(tmp: Path, out: Path, before: tuple[int, int] | None) -> None:
    """Rename the finished `tmp` to `out` under the lock. `before` is what was at `out` when this save started:
    if that changed, another compile finished first and keeps the path. An existing artifact is first moved into a
    marked temporary folder (removed afterwards, or by a later save if this process dies in between)."""
    trash = None
    with output_lock(out):
        if identity(out) != before:
            raise conflict(out, "the output changed while this compile ran")
        (tmp / MARKER).unlink()
        if before is not None:
            trash = new_temp(out)
            os.rename(out, trash / "old")
        try:
            os.rename(tmp, out)
        except OSError:
            if trash is not None:  # put the previous artifact back
                os.rename(trash / "old", out)
                shutil.rmtree(trash, ignore_errors=True)
            raise
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)
