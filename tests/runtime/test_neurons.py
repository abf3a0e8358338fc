"""The integer neuron steps against hand-computed values."""

import numpy as np
from spikestack.compiler.targets import load_target
from spikestack.runtime.neurons import BiSpikeTables, bispike_step, readout_step

LOIHI2 = load_target("loihi2")  # Lava's widths: 24-bit state, 12-bit decays, activation shift 6

# K = 1, T = 3. Thresholds θ_t = 10, 20, 30. Carry (×2^-12) after s = -1, 0, +1: 8192 (2.0), 2048 (0.5), 0
TABLES = BiSpikeTables(thresholds=np.array([[10], [20], [30]]),
                       carry=np.array([[8192, 2048, 0]] * 3), carry_shift=12, levels=1, state_max=(1 << 23) - 1)


def test_bispike_hand_trace():
    # neuron a: x = 11, 11, 11 → u0 = 11 > 10 → +1; u1 = 0·11 + 11 = 11 ≤ 20 → 0; u2 = round(0.5·11) + 11 = 17 → 0
    # neuron b: x = -15, 3, 0  → u0 = -15 < -10 → -1; u1 = 2·(-15) + 3 = -27 < -20 → -1; u2 = 2·(-27) + 0 = -54 → -1
    # neuron c: x = 10 (exactly θ: no spike), 15, 0 → u1 = round(0.5·10) + 15 = 20 (not > 20) → 0; u2 = 10 → 0
    x = np.array([[11, -15, 10], [11, 3, 15], [11, 0, 0]])
    u = s = np.zeros(3, np.int64)
    got_u, got_s = [], []
    for t in range(3):
        u, s, sat = bispike_step(u, s, x[t], t, TABLES)
        got_u.append(u.tolist())
        got_s.append(s.tolist())
        assert not sat.any()
    assert got_u == [[11, -15, 10], [11, -27, 20], [17, -54, 10]]
    assert got_s == [[1, -1, 0], [0, -1, 0], [0, -1, 0]]


def test_round_half_up_on_carry():
    # u = 3, factor 0.5 → 1.5 rounds up to 2; u = -3 → -1.5 rounds (half up) to -1
    u, _, _ = bispike_step(np.array([3, -3]), np.array([0, 0]), np.array([0, 0]), 1, TABLES)
    assert u.tolist() == [2, -1]


def test_multilevel_thresholds():
    tables = TABLES._replace(thresholds=np.array([[5, 15]] * 3), carry=np.array([[0] * 5] * 3), levels=2)
    _, s, _ = bispike_step(np.zeros(5, np.int64), np.zeros(5, np.int64), np.array([4, 6, 16, -6, -100]), 0, tables)
    assert s.tolist() == [0, 1, 2, -1, -2]


def test_saturation_is_counted_and_clipped():
    tables = TABLES._replace(state_max=100)
    u, _, sat = bispike_step(np.zeros(2, np.int64), np.zeros(2, np.int64), np.array([150, -99]), 0, tables)
    assert u.tolist() == [100, -99] and sat.tolist() == [True, False]
    acc, sat = readout_step(np.array([90]), np.array([20]), 1, 100)
    assert acc.tolist() == [100] and sat.tolist() == [True]


def test_lif_step_matches_lava_documented_case():
    """REFERENCE.md §5.4 (measured on Lava): weight 10, vth 15 → v = 640 after one spike, fires on the second."""
    from spikestack.runtime.neurons import lif_fields, lif_step

    f = lif_fields(4095, 0, 15, np.zeros(1, np.int64), LOIHI2)
    u = v = np.zeros(1, np.int64)
    u, v, s = lif_step(u, v, np.array([10]), f)
    assert (int(u[0]), int(v[0]), int(s[0])) == (640, 640, 0)  # 10 << 6; 640 <= 15 << 6 = 960
    u, v, s = lif_step(u, v, np.array([10]), f)
    assert (int(u[0]), int(s[0]), int(v[0])) == (640, 1, 0)  # 1280 > 960: spike, reset


def test_lif_decay_truncates_toward_zero_and_u_wraps():
    from spikestack.runtime.neurons import lif_fields, lif_step

    f = lif_fields(2047, 2048, 1 << 16, np.array([3, 3]), LOIHI2)
    # u: ±100·(4096-2048)/4096 = ±50; v: ±101·2048/4096 = ±50.5 → ±50 (toward zero); v = ±50 + ±50 + 3
    u, v, _ = lif_step(np.array([100, -100]), np.array([101, -101]), np.zeros(2, np.int64), f)
    assert u.tolist() == [50, -50] and v.tolist() == [103, -97]
    big = lif_fields(4095, 0, 1 << 16, np.zeros(1, np.int64), LOIHI2)
    u, _, _ = lif_step(np.zeros(2, np.int64), np.zeros(2, np.int64), np.array([1 << 17, (1 << 17) + 1]), big)
    assert u.tolist() == [1 << 23, (1 << 23) + 64 - (1 << 24)]  # Lava wraps only values > 2^23
