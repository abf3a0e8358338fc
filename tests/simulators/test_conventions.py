"""Counting conventions side by side on the hand-built program of test_counts (every number computed by hand)."""

import numpy as np
import pytest
from spikestack.runtime.reference import run
from spikestack.runtime.trace import Trace
from spikestack.simulators.conventions import (
    SpikeGPTTable,
    counting_conventions,
    dataflow_sops,
    neurobench_synops,
    paper_sops,
)
from spikestack.simulators.counts import count_events

from .test_counts import hand_program, hand_trace


def _trace(levels: list) -> Trace:
    return Trace(spikes={"a": np.array([levels], np.int8)}, readout=np.zeros((1, 3), np.int64),
                 logits=np.zeros((1, 3)), inputs=np.zeros((1, 2), np.int64))


def test_four_conventions_by_hand():
    # w = [[2,0],[0,4],[6,8]]: each source neuron has 2 non-zero synapses; events: neuron 0 twice, neuron 1 once
    r = counting_conventions(hand_program(), hand_trace(), {"fp32": 4.6, "int8": 0.23})
    assert r["dataflow"]["sops"] == 2 * 2 + 1 * 2 == 6
    # Dense: 6 weights × 2 steps × 1 token; all levels in {-1,0,1}, so every effective pair is an AC
    assert {k: r["neurobench"][k] for k in ("dense", "effective_acs", "effective_macs")} == {
        "dense": 12, "effective_acs": 6, "effective_macs": 0}
    # paper: fr = 3/4 non-zero, T = 2, FLOPs = 6 → 9 SOPs; 9 × 0.9 pJ, no real-valued-input layer
    assert r["paper"]["sops"] == pytest.approx(9.0)
    assert r["paper"]["energy_j"] == pytest.approx(8.1e-12)
    # ANN twin: 6 MACs per token, once (T = 1); 6 × 4.6 pJ fp32, 6 × 0.23 pJ int8
    assert r["ann_twin"]["macs_per_token"] == 6
    assert r["ann_twin"]["energy_j"] == pytest.approx({"fp32": 27.6e-12, "int8": 1.38e-12})
    assert all(len(r[k]["why"]) > 40 for k in ("dataflow", "neurobench", "paper", "ann_twin"))


def test_multilevel_step_is_macs_for_neurobench():
    # K = 2: step 0 holds a level 2, so NeuroBench files step 0's 2 pairs as MACs; step 1's 4 pairs stay ACs
    t = _trace([[2, 0], [-1, 1]])
    assert neurobench_synops(hand_program(), t) == {"dense": 12, "effective_acs": 4, "effective_macs": 2}
    assert sum(dataflow_sops(hand_program(), t).values()) == 6  # the level does not change our count


def test_paper_equals_dataflow_only_without_zero_weights():
    t = _trace([[1, 1], [0, 1]])  # 3 events over 4 slots: fr = 0.75, T = 2, FLOPs = 6 → 9
    assert paper_sops(hand_program(), t) == {"w": pytest.approx(9.0)}
    assert dataflow_sops(hand_program(), t) == {"w": 6}  # 3 events × 2 non-zero synapses each


def test_binary_spikes_sops_equal_neurobench_effective_acs_by_hand():
    t = _trace([[1, 0], [1, 1]])
    counted = int(count_events(hand_program(), t).synaptic_ops.sum())
    assert counted == neurobench_synops(hand_program(), t)["effective_acs"] == 2 + 4


def test_binary_spikes_sops_equal_neurobench_effective_acs_compiled(program, token_ids):
    ternary = run(program, token_ids)
    binary = Trace(spikes={k: np.abs(v) for k, v in ternary.spikes.items()}, readout=ternary.readout,
                   logits=ternary.logits, inputs=ternary.inputs)
    for trace in (binary, ternary):  # ternary levels are still "spikes" for NeuroBench
        nb = neurobench_synops(program, trace)
        assert int(count_events(program, trace).synaptic_ops.sum()) == nb["effective_acs"] > 0
        assert nb["effective_macs"] == 0


def test_spikegpt_table_reproduces_reference_totals():
    d = 512  # REFERENCE.md §3.4: T = 3072, d = 512, R = 0.15, FL = 4d², d², 4d², 4.6 / 0.9 pJ
    table = SpikeGPTTable(tokens=3072, d=d, rate=0.15, ffn_flops=(4 * d * d, d * d, 4 * d * d))
    assert table.gpt_pj() == pytest.approx(4.6 * 12_110_266_368)  # ≈ 5.57e10 pJ
    assert table.spikegpt_pj() == pytest.approx(377_113_804.8)  # ≈ 3.77e8 pJ
    assert table.gpt_pj() / table.spikegpt_pj() == pytest.approx(147.72, abs=0.01)  # not the paper's 32.2x
