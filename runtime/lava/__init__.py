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


# Lava's fixed_pt Dense and Sparse (lava/proc/dense/models.py, lava/proc/sparse/models.py) clip weights to 8 bits
# (mixed sign: [-256, 255], lava/utils/weightutils.py `clip_weights(num_bits=8)`) and then drop the
# 8 - num_weight_bits + 1 low bits of mixed-sign weights (`truncate_weights`): a b-bit weight is a multiple of
# 2^(9-b) on that 8-bit scale, and num_weight_bits > 8 would shift by a negative count.
LAVA_WEIGHT_SCALE_BITS = 8
MIN_LAVA_WEIGHT_BITS = 2  # the compiler's smallest width (compiler/passes/mantissas.py): |q| <= 1


def lava_weight_bits(target) -> int:  # target: compiler.targets.Target
    """The target's weight_mantissa_bits b, refused by name when the stock Dense/Sparse cannot hold b-bit weights."""
    bits = target.weight_mantissa_bits
    if not MIN_LAVA_WEIGHT_BITS <= bits <= LAVA_WEIGHT_SCALE_BITS:
        raise TargetLimitError(f"target {target.name}: [numerics] weight_mantissa_bits = {bits}, but Lava's stock "
                               f"fixed_pt Dense and Sparse (lava/utils/weightutils.py) hold {MIN_LAVA_WEIGHT_BITS} to "
                               f"{LAVA_WEIGHT_SCALE_BITS}-bit weights only; use the reference or torch backend for "
                               "this program")
    return bits


def lava_weights(weights, weight_exp: int, target):
    """(weights, weight_exp, num_weight_bits) of a stock Dense/Sparse that computes Σ m·s·2^weight_exp exactly for
    our even mantissas m = 2q, |m| <= 2^b - 2 (compiler/passes/mantissas.py).

    Why the scaling: Lava reads weights on its 8-bit scale and keeps their top b bits, so m is handed over as
    m·2^(8-b) (a multiple of 2^(9-b), |·| <= 256 - 2^(9-b): the clip and the truncation leave it unchanged) and
    weight_exp is lowered by 8 - b; the accumulated sum is a multiple of 2^(8-b), so Lava's final shift is exact.
    For b = 8 (every shipped target) this hands over m and weight_exp unchanged. `weights` is an int32 ndarray or
    a scipy sparse matrix."""
    bits = lava_weight_bits(target)
    shift = LAVA_WEIGHT_SCALE_BITS - bits
    if shift == 0:
        return weights, weight_exp, bits
    return weights * (1 << shift), weight_exp - shift, bits


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
