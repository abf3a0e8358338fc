"""Lava's weight mantissas and power-of-two units, shared by the bi-spike, the LIF and the hybrid quantizers.

Why a module of its own: every quantizer needs the same two facts, and the LIF quantizer importing the bi-spike
one (and back, for the dispatch) made an import cycle.

The weight width b is the target's `weight_mantissa_bits` (8 on every shipped target: Loihi's synapse weight,
Davies et al. 2018, IEEE Micro 38(1)). Lava's fixed_pt Dense drops low bits of mixed-sign weights (REFERENCE.md
§5.3), so our mantissa is q in [-(2^(b-1) - 1), 2^(b-1) - 1] and the stored weight is m = 2q, even, |m| <= 2^b - 2;
the Lava backend scales m to Lava's 8-bit weight scale (runtime/lava/__init__.py `lava_weights`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from spikestack.errors import TargetLimitError

if TYPE_CHECKING:
    from ..targets import Target

# m = 2q is stored as int16 in the IR and the artifact: |m| <= 2^b - 2 <= 32767 needs b <= 15; b = 1 leaves q = 0.
MIN_WEIGHT_BITS, MAX_WEIGHT_BITS = 2, 15


def weight_mantissa_max(target: Target) -> int:
    """Largest |q| of a weight mantissa on `target`: 2^(b-1) - 1 (b = 8: 127, so |m| = |2q| <= 254)."""
    bits = target.weight_mantissa_bits
    if not MIN_WEIGHT_BITS <= bits <= MAX_WEIGHT_BITS:
        raise TargetLimitError(f"target {target.name}: [numerics] weight_mantissa_bits = {bits}, but the compiler "
                               f"stores weights m = 2q as int16 with |q| >= 1, so it needs {MIN_WEIGHT_BITS} to "
                               f"{MAX_WEIGHT_BITS} bits")
    return (1 << (bits - 1)) - 1


def pow2_at_least(x: float) -> int:
    """Smallest e with 2^e >= x (x > 0)."""
    return math.ceil(math.log2(x)) if x > 0 else 0
