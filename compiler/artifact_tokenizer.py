"""The tokenizer an artifact carries: `tokenizer.json` beside manifest.json, named and hashed in the manifest's
`report.tokenizer` section (part of `content_sha256` like every other field).

Why a file and not a manifest field: a BPE tokenizer.json is megabytes (GPT-NeoX-20B's 2.1 MB, LLaMA-2's 1.8 MB),
and the manifest stays a small, readable JSON. Why under `report`: the manifest's schema mirrors the program
dataclasses field for field, and the programs hold the tokenizer in their report, as
`report["tokenizer"] = {"kind", "vocab_size", "json"}` (the tokenizer.json text; `spikestack.evaluation`
`program_tokenizer` reads it). `save` moves "json" into the file and writes its "file" and "sha256"; `load` reads
the file bounded and hash-checked, parses it with the `tokenizers` library and checks its kind and size against the
program's vocabulary, then puts the text back. Artifacts without the section (every one before tokenizers
travelled) load as before.
"""

from __future__ import annotations

import hashlib
from typing import Any

from spikestack.errors import ArtifactError

from .artifact_files import ArtifactDir
from .artifact_schema import Ctx, fail

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_MAX_BYTES = 32 * 1024 * 1024  # = models/tokenizer.py MAX_TOKENIZER_BYTES (published ones are < 10 MB)
KINDS = ("char", "bpe", "wordpiece", "unigram", "wordlevel")


def split_tokenizer(report: dict[str, Any]) -> tuple[dict[str, Any], dict[str, bytes]]:
    """(the report as the manifest holds it, {file: bytes}) for `save`; a report without a tokenizer is returned
    unchanged, so artifacts of programs without one stay byte-identical to those written before."""
    section = report.get("tokenizer")
    if not isinstance(section, dict) or "json" not in section:
        return report, {}
    blob = section["json"].encode("utf-8")
    entry = {"kind": section["kind"], "vocab_size": section["vocab_size"], "file": TOKENIZER_FILE,
             "sha256": hashlib.sha256(blob).hexdigest()}
    return dict(report, tokenizer=entry), {TOKENIZER_FILE: blob}


def listed(manifest: dict[str, Any]) -> dict[str, str]:
    """{file: sha256} of the tokenizer a manifest names (for the check before an artifact is replaced)."""
    report = manifest.get("report")
    entry = report.get("tokenizer") if isinstance(report, dict) else None
    if isinstance(entry, dict) and "file" in entry:
        return {entry["file"]: entry["sha256"]}
    return {}


def check_entry(m: dict[str, Any], ctx: Ctx) -> None:
    """`report.tokenizer` (optional): its fields, and a size equal to the program's vocabulary (a tokenizer of
    another size would encode ids the embedding does not have, or leave rows no text reaches)."""
    entry = m["report"].get("tokenizer")
    if entry is None:
        return
    path = "report.tokenizer"
    if not isinstance(entry, dict) or set(entry) != {"kind", "vocab_size", "file", "sha256"}:
        fail(ctx, path, entry, "an object with fields file, kind, sha256, vocab_size")
    if entry["file"] != TOKENIZER_FILE:
        fail(ctx, f"{path}.file", entry["file"], repr(TOKENIZER_FILE))
    if entry["kind"] not in KINDS:
        fail(ctx, f"{path}.kind", entry["kind"], "one of " + ", ".join(KINDS))
    vocab = _program_vocab(m, ctx)
    if entry["vocab_size"] != vocab:
        fail(ctx, f"{path}.vocab_size", entry["vocab_size"], f"{vocab}, the program's vocabulary size")
    if not isinstance(entry["sha256"], str) or len(entry["sha256"]) != 64:
        fail(ctx, f"{path}.sha256", entry["sha256"], "a sha256 as 64 lowercase hex digits")


def _program_vocab(m: dict[str, Any], ctx: Ctx) -> int:
    if m["kind"] == "hybrid":
        return m["vocab_size"]
    host = m["host_input"]
    if host.get("kind") != "embedding":
        fail(ctx, "report.tokenizer", "…", "no tokenizer: this program reads input events, not token ids")
    return int(ctx.arrays[host["table"]["array"]]["shape"][0])


def read_tokenizer(folder: ArtifactDir, m: dict[str, Any], ctx: Ctx) -> dict[str, Any] | None:
    """The report's tokenizer section with its "json" text back, after the file is read (bounded, hashed) and
    parsed; None for an artifact without one."""
    entry = m["report"].get("tokenizer")
    if entry is None:
        return None
    blob = folder.read_hashed(entry["file"], entry["sha256"], "tokenizer", TOKENIZER_MAX_BYTES)
    where = str(folder.path / entry["file"])
    from spikestack.models.tokenizer import Tokenizer, TokenizerError

    try:
        tokenizer = Tokenizer.from_json(blob.decode("utf-8"), where)
    except UnicodeDecodeError:
        raise ArtifactError(f"{where}: not UTF-8 text") from None
    except TokenizerError as exc:
        raise ArtifactError(str(exc)) from None
    if (tokenizer.kind, tokenizer.vocab_size) != (entry["kind"], entry["vocab_size"]):
        raise ArtifactError(f"{where}: a {tokenizer.kind} tokenizer of {tokenizer.vocab_size} tokens; the manifest "
                            f"says {entry['kind']} of {entry['vocab_size']}")
    return {"kind": tokenizer.kind, "vocab_size": tokenizer.vocab_size, "json": blob.decode("utf-8")}
