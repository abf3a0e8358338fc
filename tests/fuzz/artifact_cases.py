"""Artifact cases: manifest.json edits and file edits, each with and without re-hashing.

Without re-hashing an edit must be caught by the hashes (the case expects exit 2 whenever the hashed content
changed). With re-hashing (`content_sha256` over the canonical manifest, as compiler/artifact.py `_canonical`
computes it, and the edited file's `sha256` entry) the edit reaches the reader's own checks: then escapes from the
folder, .npy headers that disagree with the manifest, pickled .npy files and garbage ONNX must still be rejected.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from .cases import case_dirs, copy_in
from .checkpoint_cases import Touch
from .harness import Case
from .mutators import mutate_bytes
from .seeds import Seeds

DEEP_RAW = "\x00deep\x00"  # placeholder swapped for 100,000 nested lists after dumping (no dumper recurses so far)
INTERESTING = {"file", "sha256", "dtype", "shape", "kind", "version", "format", "target", "steps", "state_bits",
               "timing", "input_pop", "array", "name", "index", "inputs", "outputs", "max_positions", "vocab_size",
               "time_axis", "steps_per_token", "cores", "arrays", "host_programs", "stages", "layers", "populations",
               "projections", "report", "state_in", "state_out", "ops", "macs_per_position", "context", "levels"}
DTYPES = ["int8", "int16", "int32", "int64", "uint8", "float16", "float32", "float64", "bool", "complex64", "object",
          "<U5", "V8", "foo", ""]


def _deep(depth: int) -> list:
    out: list = []
    for _ in range(depth):
        out = [out]
    return out


REPLACEMENTS: list[Any] = [None, [], {}, -1, 0, 1, 1e18, "NaN", float("nan"), float("inf"), True, "", 2**70,
                           -(2**63) - 1, "../../etc/passwd", "/etc/passwd", "x" * 5000, _deep(200), DEEP_RAW]


def canonical(obj: Any) -> bytes:
    """compiler/artifact.py `_canonical`, but NaN allowed so that NaN edits reach the reader."""
    return json.dumps(obj, sort_keys=True, indent=1, allow_nan=True).encode()


def compact(obj: Any) -> str:
    """Equal exactly when `canonical` is, 10x faster (json's C encoder does not indent)."""
    return json.dumps({k: v for k, v in obj.items() if k != "content_sha256"}, sort_keys=True, allow_nan=True)


def write_manifest(art: Path, manifest: dict, rehash: bool) -> None:
    """The reader parses the file and hashes its canonical form, so the file itself may be compact."""
    body = {k: v for k, v in manifest.items() if k != "content_sha256"}
    if rehash:
        manifest = dict(body, content_sha256=hashlib.sha256(canonical(body)).hexdigest())
    text = json.dumps(manifest, sort_keys=True, allow_nan=True)
    if DEEP_RAW in text:
        text = text.replace(json.dumps(DEEP_RAW), "[" * 100_000 + "]" * 100_000)
    (art / "manifest.json").write_text(text)


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


def _parent(obj: Any, path: tuple) -> Any:
    for key in path[:-1]:
        obj = obj[key]
    return obj


def _file_entries(manifest: dict) -> list[dict]:
    """Every manifest entry that names a file with its sha256 (arrays, host programs, host stages)."""
    out = list(manifest.get("arrays", {}).values())
    for key in ("host_programs", "stages", "decode_stages"):
        out += [e for e in manifest.get(key, []) if isinstance(e, dict) and "file" in e]
    return out


def edit_manifest(rng: random.Random, manifest: dict, outside: Path, art: Path, command: str) -> tuple[str, bool]:
    """One JSON-level edit; returns (note, must_fail_even_if_rehashed)."""
    op = rng.choice(["delete", "replace", "replace", "replace", "dtype", "shape", "escape", "escape", "target"])
    if op in ("dtype", "shape") and manifest.get("arrays"):
        key = rng.choice(sorted(manifest["arrays"]))
        meta = manifest["arrays"][key]
        if op == "dtype":
            new = rng.choice(DTYPES)
        else:
            shape = list(meta["shape"])
            new = rng.choice([shape[::-1], [], [0], [*shape, 1], [1 << 40], [-1], [int(np.prod(shape))] if shape
                              else [2]])
        changed = meta[op] != new
        meta[op] = new
        return f"manifest arrays[{key}].{op} = {new}", changed
    if op == "escape":  # a listed file that lives outside the artifact, with its true sha256
        entry = rng.choice(_file_entries(manifest))
        victim = outside / f"copy{Path(entry['file']).suffix}"
        shutil.copy(art / entry["file"], victim)
        entry["file"] = str(victim) if rng.random() < 0.5 else os.path.relpath(victim, art)
        return f"manifest file → {entry['file']} (outside, same bytes)", True
    if op == "target" and "target" in manifest:
        from spikestack.compiler.targets import TARGET_DIR

        shutil.copy(TARGET_DIR / "loihi2.toml", outside / "victim.toml")
        manifest["target"] = os.path.relpath(outside / "victim", TARGET_DIR)
        return f"manifest target = {manifest['target']!r} (outside the targets folder)", command == "simulate"
    interesting = [p for p in _paths(manifest) if p and p[-1] in INTERESTING]
    path = rng.choice(interesting) if interesting and rng.random() < 0.5 else rng.choice(_paths(manifest)[1:])
    parent = _parent(manifest, path)
    if op == "delete":
        del parent[path[-1]]
        return f"manifest delete {'.'.join(map(str, path))[:120]}", False
    value = rng.choice(REPLACEMENTS)
    parent[path[-1]] = copy.deepcopy(value)
    shown = "deep list" if isinstance(value, list) and value else repr(value)[:40]
    return f"manifest {'.'.join(map(str, path))[:120]} = {shown}", False


def _rehash_entry(manifest: dict, art: Path, rel: str) -> None:
    path = art / rel
    if path.is_file():  # a regular file, or a symlink to one; not a FIFO, /dev/zero or a folder
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        for entry in _file_entries(manifest):
            if entry.get("file") == rel:
                entry["sha256"] = digest


def edit_file(rng: random.Random, manifest: dict, art: Path, outside: Path,
              marker: Path) -> tuple[str, bool, bool, str]:
    """One file-level edit; returns (note, must fail even if re-hashed, the bytes changed, the edited file)."""
    entry = rng.choice(_file_entries(manifest))
    rel = entry["file"]
    path = art / rel
    is_npy = rel.endswith(".npy")
    before = path.read_bytes()
    note, must_fail = _edit_file(rng, entry, art, outside, marker, is_npy)
    changed = not path.is_file() or path.read_bytes() != before
    return note, must_fail, changed, rel


def _edit_file(rng: random.Random, entry: dict, art: Path, outside: Path, marker: Path,
               is_npy: bool) -> tuple[str, bool]:
    rel = entry["file"]
    path = art / rel
    op = rng.choice(["pickle", "truncate", "dtype", "shape", "consistent", "values", "symlink_copy", "symlink_victim",
                     "devzero", "delete", "garbage", "flip", "directory", "dir_symlink"]
                    + ["fifo"] * (rng.random() < 0.1))
    if op in ("pickle", "dtype", "shape", "consistent", "values") and not is_npy:
        op = "garbage"
    if op == "pickle":
        np.save(path, np.array([Touch(marker), 1], dtype=object), allow_pickle=True)
        return f"{rel}: pickled object array (touches {marker.name})", True
    if op in ("dtype", "shape", "consistent", "values"):
        a = np.load(path, allow_pickle=False)
        if op == "values":
            a = (np.full(a.shape, rng.choice([np.nan, np.inf, -1e30])) if a.dtype.kind == "f"
                 else np.full(a.shape, rng.choice([np.iinfo(a.dtype).min, np.iinfo(a.dtype).max, -1]), a.dtype)
                 if a.dtype.kind in "iu" else ~a)
        elif op in ("dtype", "consistent"):
            a = a.astype(rng.choice([d for d in ("int8", "int64", "float32", "float64", "bool") if d != str(a.dtype)]))
        if op in ("shape", "consistent"):
            reshapes = [lambda x: x.reshape(-1), lambda x: x.reshape(-1)[:0], lambda x: x.reshape(*x.shape, 1),
                        lambda x: np.concatenate([x.reshape(-1), x.reshape(-1)[:1]]), lambda x: x.reshape(-1)[0]]
            a = rng.choice(reshapes)(a) if a.size else np.zeros((3,), a.dtype)
        np.save(path, a, allow_pickle=False)
        if op == "consistent":
            entry["dtype"], entry["shape"] = str(a.dtype), list(a.shape)
        changed = op in ("dtype", "shape") and (str(a.dtype), list(a.shape)) != (entry["dtype"], entry["shape"])
        return f"{rel}: {op} → {a.dtype}{list(a.shape)}", changed
    if op == "truncate":
        data = path.read_bytes()
        cut = rng.randrange(len(data))
        path.write_bytes(data[:cut])
        return f"{rel}: truncated to {cut} of {len(data)} bytes", is_npy
    if op in ("symlink_copy", "symlink_victim", "devzero", "fifo", "delete", "directory"):
        victim = outside / f"copy-{path.name}"
        shutil.copy(path, victim)
        path.unlink()
        if op == "symlink_copy":
            path.symlink_to(victim)
        elif op == "symlink_victim":
            path.symlink_to(outside / "victim.txt")
        elif op == "devzero":
            path.symlink_to("/dev/zero")
        elif op == "fifo":
            os.mkfifo(path)
        elif op == "directory":
            path.mkdir()
        return f"{rel}: {op}", True
    if op == "dir_symlink":
        folder = path.parent
        shutil.copytree(folder, outside / folder.name)
        shutil.rmtree(folder)
        folder.symlink_to(outside / folder.name)
        return f"{folder.name}/ → symlink to a copy outside the artifact", True
    if op == "garbage":
        path.write_bytes(rng.randbytes(rng.choice([0, 7, 300, 5000])))
        return f"{rel}: random bytes", True
    return f"{rel}: {mutate_bytes(rng, path)}", False


def artifact_case(seed: int, seeds: Seeds, root: Path) -> Case:
    rng = random.Random(f"artifact:{seed}")
    scratch, outside = case_dirs(root, "artifact", seed)
    which = rng.choice(sorted(seeds.artifacts))
    art = copy_in(seeds.artifacts[which], scratch, "art")
    marker = outside / "payload-ran"
    command = rng.choice(["inspect", "run", "simulate"])
    manifest = json.loads((art / "manifest.json").read_text())
    original = compact(manifest)
    rehash = rng.random() < 0.5
    area = rng.choice(["manifest"] * 5 + ["file"] * 4 + ["bytes"])
    if area == "bytes":
        note, must_fail = f"manifest.json {mutate_bytes(rng, art / 'manifest.json')}", False
        rehash = False
    elif area == "manifest":
        note, must_fail = edit_manifest(rng, manifest, outside, art, command)
        must_fail = must_fail and rehash or not rehash and compact(manifest) != original
        write_manifest(art, manifest, rehash)
    else:
        note, must_fail, changed, rel = edit_file(rng, manifest, art, outside, marker)
        if rehash:
            _rehash_entry(manifest, art, rel)
            write_manifest(art, manifest, rehash)
        must_fail = must_fail or not rehash and changed
    argv = {"inspect": ["inspect", str(art)], "run": ["run", str(art), "--tokens", "2"],
            "simulate": ["simulate", str(art), "--tokens", "2", "--json"]}[command]
    return Case("artifact", seed, argv, scratch, outside, note=f"{which}, {'re-hashed' if rehash else 'no re-hash'}: "
                f"{note}", expect_error=must_fail, json_stdout=command != "inspect", forbidden=(marker,))
