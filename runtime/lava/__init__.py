"""Lava CPU backend. Lava is imported only inside this package (STYLE.md)."""

import multiprocessing as _mp

from spikestack.errors import TargetLimitError

# The widths Lava's stock fixed_pt LIF hard-codes (lava/proc/lif/models.py, AbstractPyLifModelFixed: uv_bitwidth,
# decay_shift, act_shift = vth_shift). A program for a target with other widths runs on the reference and torch
# backends, which take them from the target; on Lava it would silently compute something else, so it is refused.
STOCK_LIF_WIDTHS = {"state_bits": 24, "decay_bits": 12, "activation_shift": 6}


def check_stock_lif(target) -> None:  # target: compiler.targets.Target (the program's `target_spec`)
    """Refuse, naming the target field, a target whose LIF widths Lava's stock LIF cannot run."""
    for field, lava in STOCK_LIF_WIDTHS.items():
        value = getattr(target, field)
        if value != lava:
            raise TargetLimitError(f"target {target.name}: [numerics] {field} = {value}, but Lava's stock fixed_pt "
                                   f"LIF (lava/proc/lif/models.py) runs {field} = {lava} only; use the reference or "
                                   "torch backend for this program")


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
