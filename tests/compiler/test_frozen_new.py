"""`frozen_new` freezes a fresh array in place and copies anything that shares memory (compiler/ir.py)."""

import numpy as np
import pytest
from spikestack.compiler.ir import frozen_new


def test_fresh_array_is_frozen_in_place_and_a_view_is_copied():
    a = np.arange(6, dtype=np.int16)
    assert frozen_new(a) is a and not a.flags.writeable
    base = np.arange(6, dtype=np.int16)
    view = base[1:]
    frozen = frozen_new(view)
    assert frozen is not view and not frozen.flags.writeable
    base[1] = 99  # the frozen copy does not follow its source
    assert frozen[0] == 1
    with pytest.raises(ValueError):
        a[0] = 5
