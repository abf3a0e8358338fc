"""Lava's weight mantissas and power-of-two units, shared by the bi-spike and the LIF quantizers.

Why a module of its own: both quantizers need the same two facts, and the LIF quantizer importing the bi-spike
one (and back, for the dispatch) made an import cycle.
"""

from __future__ import annotations

import math

WEIGHT_MANTISSA_MAX = 127  # |q| <= 127 → Lava mantissa m = 2q in [-254, 254] (REFERENCE.md §5.3)


def pow2_at_least(x: float) -> int:
    """Smallest e with 2^e >= x (x > 0)."""
    return math.ceil(math.log2(x)) if x > 0 else 0
