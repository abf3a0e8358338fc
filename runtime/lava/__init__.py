"""Lava CPU backend. Lava is imported only inside this package (STYLE.md)."""

import multiprocessing as _mp


def prepare_lava_import() -> None:
    """Lava's message infrastructure calls `multiprocessing.set_start_method('fork')` at import time, which raises
    'context has already been set' if anything in the process (a test runner, a library) fixed the start method
    first. Forking is what Lava needs on Linux, so set it with force=True before Lava's own call runs."""
    if _mp.get_start_method(allow_none=True) not in (None, "fork"):
        _mp.set_start_method("fork", force=True)
    if _mp.get_start_method(allow_none=True) == "fork":
        original = _mp.set_start_method

        def _idempotent(method: str, force: bool = False) -> None:
            original(method, force=True)

        _mp.set_start_method = _idempotent  # type: ignore[assignment]
        try:
            import lava.magma.runtime.message_infrastructure.multiprocessing  # noqa: F401
        finally:
            _mp.set_start_method = original  # type: ignore[assignment]
