"""The executors take the LIF's widths and shifts from the program's target (never from constants), and the Lava
backend refuses a target its stock LIF cannot run, naming the field (issue #12)."""

from dataclasses import replace

import numpy as np
import pytest
from spikestack.compiler.hybrid.ir import HostStage, HybridProgram, LIFLayer
from spikestack.compiler.pipeline import compile_graph
from spikestack.compiler.targets import load_target
from spikestack.runtime.hybrid.chip import LayerState, chip_call
from spikestack.runtime.hybrid.torch_chip import TorchChip
from spikestack.runtime.neurons import lif_fields, lif_step

from spikestack.errors import TargetLimitError
from tests.compiler.test_lif import _one_neuron

# 16-bit state, 10-bit decays (unity 1024), activation shift 4: nothing like Lava's 24 / 12 / 6
SMALL = replace(load_target("generic"), name="small", state_bits=16, decay_bits=10, activation_shift=4)


def _lif_program(target) -> HybridProgram:
    layer = LIFLayer(name="lif", width=1, steps=1, input="in", output="out", in_unit=1.0,
                     payload_unit=1.0, segment=0, du=target.decay_unity - 1, dv=target.decay_unity // 2, vth=10)
    stage = HostStage(index=0, onnx=b"", inputs=(), outputs=())
    return HybridProgram(family="hand", target=target.name, target_spec=target, time_axis="tokens",
                         steps_per_token=1, vocab_size=0, layers=(layer,), stages=(stage, stage))


def test_hybrid_lif_runs_in_the_target_widths_by_hand():
    """du = 1023, dv = 512 (v/2) under SMALL: u = a << 4, spike when v > 10 << 4 = 160. a = 6, 6, 6, 1:
    v = 96 → 48 + 96 = 144 → 72 + 96 = 168 > 160: spike, v = 0 → 16. Reference and torch chips agree."""
    program = _lif_program(SMALL)
    layer, state = program.layers[0], LayerState()
    spikes = [int(chip_call(layer, np.array([a]), state, t, SMALL)[1][0, 0]) for t, a in enumerate([6, 6, 6, 1])]
    assert spikes == [0, 0, 1, 0] and int(state.v[0]) == 16
    torch_chip = TorchChip()
    torch_chip.reset(program, (1,))
    got = [int(torch_chip.segment([layer], {"in": np.array([a])}, t)[1]["lif"][0, 0]) for t, a in
           enumerate([6, 6, 6, 1])]
    assert got == spikes and int(torch_chip.state["lif"]["v"][0]) == 16


def test_lif_state_wraps_and_saturates_at_the_target_width():
    """16-bit state: u wraps only beyond 2^15 (Lava's rule, at its own 2^23); v saturates at ±(2^15 - 1). dv = 0
    keeps v (32000, -32000) whole: v = 32000 + 32768 → 32767 > 2047 << 4 = 32752, a spike (v = 0);
    -32000 - 32752 → -32767."""
    f = lif_fields(SMALL.decay_unity - 1, 0, SMALL.activation_max, np.zeros(2, np.int64), SMALL)
    assert SMALL.activation_max == 2047
    u, v, s = lif_step(np.zeros(2, np.int64), np.array([32000, -32000]), np.array([1 << 11, (1 << 11) + 1]), f)
    assert u.tolist() == [1 << 15, (1 << 15) + 16 - (1 << 16)]  # 32768 stays, 32784 wraps to -32752
    assert v.tolist() == [0, -32767] and s.tolist() == [1, 0]


def test_lava_refuses_widths_its_stock_lif_cannot_run():
    from spikestack.runtime.lava.backend import run_delayed
    from spikestack.runtime.lava.hybrid_chip import LavaChip

    shift4 = replace(load_target("loihi1"), name="shift4", activation_shift=4)
    program = compile_graph(_one_neuron(2.0), shift4)
    with pytest.raises(TargetLimitError, match=r"^target shift4: \[numerics\] activation_shift = 4, but Lava's stock "
                                               r"fixed_pt LIF \(lava/proc/lif/models.py\) runs activation_shift = 6 "
                                               r"only; use the reference or torch backend for this program$"):
        run_delayed(program, np.ones((1, 6, 1), np.int64))
    with pytest.raises(TargetLimitError, match=r"^target small: \[numerics\] state_bits = 16, but Lava's stock"):
        LavaChip().reset(_lif_program(SMALL), (1,))
