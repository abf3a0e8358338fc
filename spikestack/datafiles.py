"""Targets and energy profiles are TOML data files, found by name in a package folder or given as a path.

One reader and one set of field checks for both, so that a misspelt name lists what exists and a malformed file
or value is one error line naming the file, the key, the value and the allowed range. These files are untrusted
input (a user passes their own with --target/--profile): everything downstream trusts what is checked here.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import tomli

from spikestack.errors import SpikestackError

NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")  # a plain identifier, never a path
MAX_FILE_BYTES = 1 << 20  # data files are a few KB; anything bigger is not one of ours


def available(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.toml"))


def is_plain_name(text: str) -> bool:
    return bool(NAME_PATTERN.fullmatch(text)) and text not in (".", "..")


def read_data_file(name_or_path: str, folder: Path, kind: str, error: type[SpikestackError]) -> tuple[Path, dict]:
    """(path, parsed TOML) of `name` in `folder` or of the file at `name_or_path`; `error` for anything wrong.

    A name without a suffix is looked up in `folder` only, so it must be a plain name: `../x` is neither a name
    nor (without .toml) a path, and must not reach outside the folder."""
    path = Path(name_or_path)
    if not path.suffix:
        if not is_plain_name(name_or_path):
            raise error(f"{kind} {name_or_path!r}: not a {kind} name (letters, digits, _ . -; at most 64) nor a "
                        "path to a .toml file")
        path = folder / f"{name_or_path}.toml"
        if not path.exists():
            raise error(f"unknown {kind} {name_or_path!r}; known: {', '.join(available(folder))}")
    if not path.exists():
        raise error(f"{path}: {kind} file not found")
    if not path.is_file():
        raise error(f"{path}: not a {kind} file (a folder?)")
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise error(f"{path}: {size} bytes; a {kind} file is at most {MAX_FILE_BYTES} bytes")
        return path, tomli.loads(path.read_text(encoding="utf-8"))
    except (tomli.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path}: not valid TOML ({exc})") from None
    except OSError as exc:
        raise error(f"{path}: cannot read {kind} file ({exc.strerror or exc})") from None


def table(data: dict, key: str, path: Path, error: type[SpikestackError]) -> dict:
    """The [key] table of a file (an empty one when absent); a non-table value is refused."""
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise error(f"{path}: {key} must be a [{key}] table, got {value!r}")
    return value


def name_field(data: dict, key: str, default: str, path: Path, error: type[SpikestackError]) -> str:
    """A name (of a target or profile): a plain identifier, because it is later looked up as a file name."""
    value = data.get(key, default)
    if not isinstance(value, str) or not is_plain_name(value):
        raise error(f"{path}: {key} = {value!r} must be a plain name (letters, digits, _ . -; at most 64 "
                    "characters; never a path)")
    return value


def text_field(data: dict, key: str, default: str, path: Path, error: type[SpikestackError]) -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise error(f"{path}: {key} must be a string, got {value!r}")
    return value


def bool_field(data: dict, key: str, default: bool, path: Path, error: type[SpikestackError]) -> bool:
    """TOML true/false only: `bool("false")` is True, so a string must not pass for a boolean."""
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise error(f"{path}: {key} must be true or false, got {value!r}")
    return value


def integer(value: object, where: str, lo: int, hi: int, error: type[SpikestackError], why: str = "") -> int:
    """An int (not a bool, not a float) in lo..hi; `where` names file, table and key."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"{where} must be an integer in {lo}..{hi}, got {value!r}")
    if not lo <= value <= hi:
        raise error(f"{where} = {value} is outside {lo}..{hi}{f' ({why})' if why else ''}")
    return value


def number(value: object, where: str, lo: float, hi: float, error: type[SpikestackError]) -> float:
    """A finite int or float (not a bool) in [lo, hi]; NaN and ±inf are refused by name."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise error(f"{where} must be a number in {lo:g}..{hi:g}, got {value!r}")
    if not math.isfinite(value):
        raise error(f"{where} = {value} is not a finite number (allowed {lo:g}..{hi:g})")
    if not lo <= value <= hi:
        raise error(f"{where} = {value:g} is outside {lo:g}..{hi:g}")
    return float(value)
