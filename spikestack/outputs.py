"""Where the CLI writes: output paths checked before any work, files replaced atomically, JSON kept strict.

Why one module: every command that writes (export, run --trace, simulate --plots/--report, sweep -o, train -o,
demo) follows the same rules, so a user's file is never lost to a typo:
* a file output's folder must exist (we refuse, naming the missing folder, rather than guess a tree to create);
* an existing file is replaced only with --force, and a command's own input never, not even with --force;
* a folder output (plots, demo) may be created, but never through or over a file;
* a file is written to a temporary sibling and `os.replace`d into place, so a failure leaves the old file (or
  nothing) and no partial file behind.
Library callers get the atomic write; the checks are the CLI's, made before anything runs.
"""

from __future__ import annotations

import json
import math
import os
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from spikestack.errors import SpikestackError


def _same_file(a: Path, b: Path) -> bool:
    """True when both paths name one file (hard links and symlinks included), or resolve to the same path."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def _existing_ancestor(path: Path) -> Path:
    """The nearest ancestor of `path` (itself excluded) that exists."""
    for parent in path.absolute().parents:
        if parent.exists():
            return parent
    return Path(path.absolute().anchor)


def check_file_output(path: str | Path, option: str, *, inputs: Iterable[str | Path] = (), force: bool = False,
                      suffixes: tuple[str, ...] = (), created: Iterable[Path] = ()) -> Path:
    """Refuse, before any work, an output file that would land in a missing folder, replace a folder, an input
    or (without --force) an existing file; `suffixes` (lower case) restricts the file kind. `created`: folders
    the command itself creates (checked with check_folder_output) before it writes this file."""
    path = Path(path)
    if suffixes and path.suffix.lower() not in suffixes:
        raise SpikestackError(f"{option} {path}: the file name must end in {' or '.join(suffixes)}")
    for source in inputs:
        if _same_file(path, Path(source)):
            raise SpikestackError(f"{option} {path}: is this command's input {source}; refusing to overwrite it "
                                  "(even with --force)")
    folder = path.parent
    made = {p.absolute() for c in created for p in (Path(c), *Path(c).parents)}
    if not folder.exists() and folder.absolute() not in made:
        raise SpikestackError(f"{option} {path}: its folder does not exist ({folder}); create it first")
    if folder.exists() and not folder.is_dir():
        raise SpikestackError(f"{option} {path}: {folder} is a file, not a folder")
    if path.is_dir():
        raise SpikestackError(f"{option} {path}: is a folder; give a file name")
    if path.exists() and not force:
        raise SpikestackError(f"{option} {path}: exists; refusing to overwrite it (add --force to replace it)")
    return path


def check_folder_output(path: str | Path, option: str) -> Path:
    """A folder we may create (with missing parents): neither it nor any existing ancestor may be a file."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise SpikestackError(f"{option} {path}: is a file, not a folder")
    ancestor = _existing_ancestor(path)
    if not ancestor.is_dir():
        raise SpikestackError(f"{option} {path}: {ancestor} is a file, not a folder")
    return path


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Call `write(tmp)` on a temporary sibling of `path` (same suffix), then move it into place.

    The temporary file sits in the same folder so that `os.replace` is a rename on one file system (atomic); it is
    removed on any failure. An OSError (disk full, permission denied) becomes one error naming `path`.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise SpikestackError(f"{path}: cannot write ({exc.strerror or exc})") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Atomically write `text` (UTF-8)."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _first_nonfinite(obj: Any, key: str = "") -> tuple[str, float] | None:
    """(dotted key, value) of the first NaN or ±inf in a JSON-like structure, depth first."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return key or "(top level)", obj
    if isinstance(obj, dict):
        items: Iterable[tuple[str, Any]] = ((f"{key}.{k}" if key else str(k), v) for k, v in obj.items())
    elif isinstance(obj, (list, tuple)):
        items = ((f"{key}[{i}]", v) for i, v in enumerate(obj))
    else:
        return None
    for sub_key, value in items:
        found = _first_nonfinite(value, sub_key)
        if found:
            return found
    return None


def _nonfinite_as_strings(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)  # "nan", "inf", "-inf"
    if isinstance(obj, dict):
        return {k: _nonfinite_as_strings(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nonfinite_as_strings(v) for v in obj]
    return obj


def strict_json(obj: Any, what: str, *, indent: int | None = 1, sort_keys: bool = False,
                nonfinite: str = "error") -> str:
    """JSON without the NaN/Infinity tokens that strict parsers reject.

    nonfinite="error": a non-finite number is a bug in what produced `obj`: one error naming `what` and the key.
    nonfinite="string": written as the strings "nan", "inf", "-inf" (IR dumps, where they can be legitimate).
    """
    if nonfinite == "string":
        obj = _nonfinite_as_strings(obj)
    found = _first_nonfinite(obj)
    if found:
        key, value = found
        raise SpikestackError(f"{what}: {key} is {value}, not a finite number; strict JSON cannot hold it "
                              "(a bug: please report it)")
    return json.dumps(obj, indent=indent, sort_keys=sort_keys, allow_nan=False)
