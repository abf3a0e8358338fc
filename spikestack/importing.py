"""Published checkpoints at the front door: which paths are checkpoints, and `spikestack import`.

Why here and not in api.py: the API takes published checkpoints wherever it takes a checkpoint (`export`,
`compile`, `generate`), and this module holds the one test for "is this a checkpoint" and the one conversion they
share, plus `import_checkpoint` (re-exported by `spikestack.api`), which writes the converted native checkpoint for
those who want a file. The conversion itself lives in models/published (read safely, detected by layout).
"""

from __future__ import annotations

from pathlib import Path

from spikestack.errors import SpikestackError

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")  # native (.pt) and published weights files


def is_checkpoint(path: Path) -> bool:
    """A checkpoint file, or a Hugging Face model folder (config.json; an artifact folder holds manifest.json)."""
    if path.is_dir():
        return (path / "config.json").is_file() and not (path / "manifest.json").exists()
    return path.suffix in CHECKPOINT_SUFFIXES


def is_published(path: str | Path) -> bool:
    """A published checkpoint (not one of ours): a weights file or Hugging Face folder without our family,
    config and state_dict keys (models/published `is_published`)."""
    from spikestack.models.published import is_published as published

    path = Path(path)
    return is_checkpoint(path) and published(path)


def checkpoint_of(path: Path, family: str | None = None, *, tokenizer: str | Path | None = None,
                  text: str | Path | None = None):
    """The path of a native checkpoint, or a published one converted in memory (an InMemoryCheckpoint, which
    every family's loader takes like a path): `family` forces a published layout and must agree with a native
    checkpoint's; `tokenizer` replaces the file found beside it; `text` is what a layout calibrates on."""
    from spikestack.models.published import checkpoint_source

    return checkpoint_source(path, family, tokenizer=tokenizer, text=text)


def import_checkpoint(source: str | Path, out: str | Path, *, family: str | None = None,
                      tokenizer: str | Path | None = None, text: str | Path | None = None,
                      force: bool = False) -> dict:
    """A published checkpoint → our native checkpoint file `out` (torch.save, written atomically), after the full
    check of models/checkpoint.py `load_model`. Refuses a native checkpoint (nothing to convert), an existing
    `out` without `force`, and its own input. Returns the `published` note (layout, vocabulary, calibration)."""
    import torch

    from spikestack.models.checkpoint import InMemoryCheckpoint
    from spikestack.models.registry import family_function
    from spikestack.outputs import atomic_write, check_file_output

    source = Path(source)
    out = check_file_output(out, "-o", inputs=[source], force=force)
    checkpoint = checkpoint_of(source, family, tokenizer=tokenizer, text=text)
    if not isinstance(checkpoint, InMemoryCheckpoint):
        raise SpikestackError(f"{source}: already a native checkpoint (it has family, config and state_dict); "
                              "nothing to import")
    family_function(checkpoint, "load_checkpoint")(checkpoint)  # every check before anything is written
    native = checkpoint.checkpoint
    atomic_write(out, lambda tmp: torch.save(native, tmp))
    return dict(native.get("published", {}), family=native["family"], output=str(out))
