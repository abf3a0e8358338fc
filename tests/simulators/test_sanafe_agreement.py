"""spikestack's simulator against SANA-FE 2.2.9 (an outside tool, GPL-3: imported when installed, never vendored).

Skips cleanly without `sanafe`. The hand-computed counts that always run are in test_tiles_and_rules.py.
"""

import sys
from pathlib import Path

import pytest

pytest.importorskip("sanafe")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import sanafe_agreement  # noqa: E402


@pytest.mark.parametrize(("sizes", "density", "target"), [((40, 48, 8), 1.0, "loihi1"),
                                                          ((32, 420, 8), 0.3, "loihi1_small_cores")])
def test_counts_and_energy_equal_sanafe(sizes, density, target):
    row = sanafe_agreement.compare("test", sizes, density, 0.2, target, steps=60)
    for key in ("spikes", "synaptic_events", "neuron_updates_active", "hops"):
        assert row[key]["spikestack"] == row[key]["sanafe"], key
    assert row["spikes"]["spikestack"] > 0 and row["synaptic_events"]["spikestack"] > 0
    assert abs(row["energy_j"]["diff_pct"]) < 1e-6  # the same events at the same prices
    # our latency is SANA-FE's `simple` model plus the longest route's flight (a few hops · 5.3 ns)
    lat = row["latency_s_per_step"]
    assert 0 <= lat["spikestack"] - lat["sanafe_simple"] <= 20e-9
    if target == "loihi1_small_cores":
        assert row["tiles"] >= 4
