"""Targets and energy profiles are TOML data files, found by name in a package folder or given as a path.

One reader for both, so that a misspelt name lists what exists and a malformed file is one error line naming it.
"""

from __future__ import annotations

from pathlib import Path

import tomli

from spikestack.errors import SpikestackError


def available(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.toml"))


def read_data_file(name_or_path: str, folder: Path, kind: str, error: type[SpikestackError]) -> tuple[Path, dict]:
    """(path, parsed TOML) of `name` in `folder` or of the file at `name_or_path`; `error` for anything wrong."""
    path = Path(name_or_path)
    if not path.suffix:
        path = folder / f"{name_or_path}.toml"
        if not path.exists():
            raise error(f"unknown {kind} {name_or_path!r}; known: {', '.join(available(folder))}")
    if not path.exists():
        raise error(f"{path}: {kind} file not found")
    try:
        return path, tomli.loads(path.read_text())
    except (tomli.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path}: not valid TOML ({exc})") from None
