"""spikestack: compile, verify and simulate spiking language models on Loihi-style cores.

The public API (`spikestack.api`, documented in the README): `export`, `compile`, `save`, `load`, `run`,
`verify`, `simulate`, `generate`, `import_checkpoint` (a published checkpoint → ours), `evaluate` (an
encoder's accuracy on a labelled file), `compile_stream` (a Hugging Face LLaMA folder, one block in memory),
and their results `RunResult`, `VerifyResult`, `Report`. They are imported on
first use, so `import spikestack` (and `spikestack --help`) stays fast: torch, onnx and Lava load only when a
function needs them.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["export", "import_checkpoint", "compile", "compile_stream", "evaluate", "save", "load", "run", "verify",
           "simulate", "generate", "RunResult", "VerifyResult", "Report", "SpikestackError", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "SpikestackError":
        from .errors import SpikestackError

        return SpikestackError
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'spikestack' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
