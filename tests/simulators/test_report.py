"""Report outputs: JSON schema keys, the four plots and the Markdown report, on the hand-built program."""

import json

import pytest
from spikestack.simulators.model import simulate
from spikestack.simulators.plots import core_load_grid, write_all
from spikestack.simulators.profiles import load_profile
from spikestack.simulators.report import write_markdown

from .test_counts import hand_program, hand_trace


@pytest.fixture
def hand_report() -> dict:
    return simulate(hand_program(), hand_trace(), load_profile("loihi1_sanafe_calibrated"))


def test_core_load_grid_by_hand(hand_report):
    # core 0 at (0,0) receives nothing; core 1 at (1,0) gets 1 + 2 synops over 2 steps, core 2 at (1,1) also 3
    grid = core_load_grid(hand_report, chip=0)
    assert grid.shape == (2, 2) and grid[0, 0] == 0.0 and grid[0, 1] == 1.5 and grid[1, 1] == 1.5
    assert grid[1, 0] != grid[1, 0]  # NaN: no core on tile (0, 1)


def test_plots_and_markdown(hand_report, tmp_path):
    plots = write_all(hand_report, tmp_path / "plots")
    assert sorted(plots) == ["core_load", "energy_breakdown", "energy_vs_ann", "firing_rate"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in plots.values())
    md = write_markdown(hand_report, tmp_path / "report.md", plots).read_text()
    assert "![core_load](plots/core_load.png)" in md
    assert "| NeuroBench Dense | 12 |" in md and "| ANN twin MACs | 6 |" in md
    assert "SANA-FE arch/loihi.yaml dense synapse 35.5 pJ" in md  # the profile's sources are listed


def test_report_is_json_with_documented_keys(hand_report):
    from pathlib import Path

    doc = Path(__file__).resolve().parents[2] / "docs" / "simulator.md"
    documented = doc.read_text()
    json.dumps(hand_report, allow_nan=False)  # strict JSON: no NaN or Infinity
    missing = [k for k in hand_report if f"`{k}`" not in documented]
    assert missing == [], f"keys not documented in docs/simulator.md: {missing}"
