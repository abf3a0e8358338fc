"""The hybrid-program simulator (simulators/hybrid.py): counts by hand on a tiny hand-built program, and
consistency with the trace on the shipped SpikeGPT and SpikeLM checkpoints."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from spikestack.compiler.hybrid.ir import BiSpikeLayer, GIFLayer, HostStage, HybridProgram, QChipProjection
from spikestack.compiler.ir import Core
from spikestack.compiler.targets import load_target
from spikestack.runtime.hybrid.executor import HybridTrace
from spikestack.simulators.hybrid import count_hybrid, simulate_hybrid, tokens_of
from spikestack.simulators.profiles import Profile, load_profile

CKPT = Path(__file__).resolve().parents[2] / "models" / "checkpoints"

PROFILE = Profile(name="unit", description="", assumption=False,
                  energy_pj={"synaptic_op": 1.0, "neuron_update": 10.0, "neuron_update_idle": 4.0, "spike_out": 100.0,
                             "message": 1000.0, "hop": 10000.0},
                  time_ns={"synaptic_op": 1.0, "neuron_update": 2.0, "neuron_update_idle": 1.0, "spike_out": 3.0,
                           "message": 5.0, "hop": 7.0},
                  barrier_tiles=(1,), barrier_ns=(5.0,), path="")


def _core(index: int, pop: str, lo: int, hi: int, x: int, y: int) -> Core:
    return Core(index=index, pop=pop, lo=lo, hi=hi, synaptic_memory_bits=0, axons_in=0, chip=0, x=x, y=y, slot=0)


def hand_program(time_axis: str = "steps") -> HybridProgram:
    """Layer a: 2 bi-spike neurons (K = 2, a_t = 1, 2) → projection pa (3 outputs on 2 cores); layer b: 3 GIF
    neurons, 2 steps per call, no projection. a on tile (0,0); pa rows 0-1 on (1,0), row 2 on (1,1); b on (2,0)."""
    w = np.array([[2, 0], [0, 4], [6, 8]], np.int16)  # [out, in]
    pa = QChipProjection(name="pa", weight=w, unit=1.0, message_bits=4, groups=np.zeros(2, np.int8), n_groups=1)
    a = BiSpikeLayer(name="a", width=2, steps=1, input="in:a", output="out:a", in_unit=1.0, payload_unit=1.0,
                     segment=0, thresholds=np.ones((2, 2), np.int64), carry=np.zeros((2, 5), np.int64), carry_shift=1,
                     amplitude=np.array([1, 2]), period=2, levels=2, projection=pa)
    b = GIFLayer(name="b", width=3, steps=2, input="in:b", output="out:b", in_unit=1.0,
                 payload_unit=1.0, segment=1, levels=4)
    cores = (_core(0, "a", 0, 2, 0, 0), _core(1, "pa", 0, 2, 1, 0), _core(2, "pa", 2, 3, 1, 1),
             _core(3, "b", 0, 3, 2, 0))
    stage = HostStage(index=0, onnx=b"", inputs=(), outputs=(), macs_per_position=7)  # no ONNX: MACs given
    return HybridProgram(family="hand", target="hand", target_spec=replace(load_target("generic"), name="hand"),
                         time_axis=time_axis, steps_per_token=2, vocab_size=0,
                         layers=(a, b), stages=(stage,), cores=cores)


def hand_trace() -> HybridTrace:
    """2 calls, lead (B = 1, L = 2): a's payloads [2, 1, 1, 2, 2], b's [2, 2, 1, 2, 3]."""
    a = np.zeros((2, 1, 1, 2, 2), np.int16)
    a[0, 0, 0, 0] = [1, 0]  # call 0 (a_t = 1), position 0: neuron 0 fires +1
    a[0, 0, 0, 1] = [-1, 1]  # position 1: both fire
    a[1, 0, 0, 1] = [2, -4]  # call 1 (a_t = 2), position 1: levels +1 and -2
    b = np.zeros((2, 2, 1, 2, 3), np.int16)
    b[0, 0, 0, 0] = [3, 0, 1]
    b[0, 1, 0, 0] = [2, 0, 0]
    b[1, 0, 0, 1] = [0, 3, 0]
    return HybridTrace(logits=np.zeros((1, 2, 1)), payloads={"a": a, "b": b}, calls=2)


def test_counts_by_hand():
    c = count_hybrid(hand_program(), hand_trace().payloads)
    a, b = c.layers
    assert a.cores == (0, 1, 2) and b.cores == (3,)
    # events per neuron: call 0 n0 ×2, n1 ×1; call 1 n0 ×1, n1 ×1. Column 0 has synapses in rows 0 (core 1) and
    # 2 (core 2), column 1 in rows 1 (core 1) and 2 (core 2): one synapse per destination core per event
    assert a.synaptic_ops[:, 0].tolist() == [[0, 3, 3], [0, 2, 2]]
    assert a.spikes_out[:, 0, 0].tolist() == [3, 2]
    assert a.messages_out[:, 0].tolist() == [[6, 0, 0], [4, 0, 0]]  # every event reaches both cores
    assert a.hops[:, 0].tolist() == [[9, 0, 0], [6, 0, 0]]  # 1 hop to (1,0) + 2 hops to (1,1) per event
    assert a.max_hops[:, 0].tolist() == [2, 2]
    # X-Y: (0,0)→(1,0) is crossed by both routes, (1,0)→(1,1) by the route to core 2
    assert c.links == ((0, 0, 1, 0), (1, 0, 1, 1))
    assert a.link_load[:, 0].tolist() == [[6, 3], [4, 2]]
    # neurons per step = width slice × 2 positions; a is host-written (all active); accumulators are active when
    # they receive: call 0 rows {0,2} at p0 and {0,1,2} at p1 → core 1: 3, core 2: 2; call 1 p1 all → 2, 1
    assert a.neurons.tolist() == [4, 4, 2]
    assert a.active_updates[:, 0].tolist() == [[4, 3, 2], [4, 2, 1]]
    # b: step 0 host-written (6 active), step 1 active iff it emits (call 0: one neuron, call 1: none)
    assert b.neurons.tolist() == [6]
    assert b.active_updates[..., 0].tolist() == [[6, 1], [6, 0]]
    assert b.spikes_out[..., 0].tolist() == [[2, 1], [1, 0]]
    assert b.synaptic_ops.sum() == 0 and b.messages_out.sum() == 0
    assert (a.events, b.events) == (5, 4)
    # NeuroBench classes per (call, step): call 0 levels ±1 (ACs), call 1 payload -4 / a_t 2 = level -2 (MACs)
    assert a.levels_unit[:, 0].tolist() == [True, False]
    # host: 2 positions × 2 calls; in 2 + 3 values, out 3 accumulators + 3 payloads per position and call
    assert (c.host_values_in, c.host_values_out) == (20, 24)
    assert c.host_linear_macs == 7 * 2 * 2 and c.host_matmul_macs == 0
    assert c.tokens == 2


def test_report_energy_and_latency_by_hand():
    r = simulate_hybrid(hand_program(), hand_trace(), PROFILE)
    json.dumps(r, allow_nan=False)
    assert (r["sops"], r["spikes"], r["messages"], r["hops"]) == (10, 9, 10, 15)
    # updates: a 2 calls × (4 + 4 + 2) = 20 (active 4+3+2 + 4+2+1 = 16); b 2 calls × 2 steps × 6 = 24 (13 active)
    assert (r["neuron_updates"], r["neuron_updates_active"]) == (44, 29)
    # 10 sops ·1 + 29 active ·10 + 15 idle ·4 + 9 spikes ·100 + 10 messages ·1000 + 15 hops ·10000 pJ, and the
    # host's 20 written values (test_counts_by_hand) are 20 input messages ·1000 pJ
    assert r["input_messages"] == 20
    assert r["energy_j"] == pytest.approx((10 + 290 + 60 + 900 + 10_000 + 20_000 + 150_000) * 1e-12)
    assert r["energy_per_token_j"] == pytest.approx(r["energy_j"] / 2)
    # segment 0 (a), call 0: core 0's neuron pipeline = 4 upd·2 + 3 spikes·3 + 6 msgs·5 = 47 beats the accumulator
    # cores (core 1: max(3 synops·1, 3 active·2 + 1 idle·1) = 7); network: longest route 2 hops·7 = 14 (link loads
    # reported, not timed); barrier 5 → 66. Call 1: core 0 = 8 + 2·3 + 4·5 = 34 → 34 + 14 + 5 = 53.
    # segment 1 (b): call 0 step 0 = 6·2 + 2·3 + 5 = 23, step 1 = 1·2 + 5 idle·1 + 1·3 + 5 = 15;
    # call 1: 6·2 + 1·3 + 5 = 20, 6 idle + 5 = 11. Calls: 66 + 38 = 104, 53 + 31 = 84; 188 in all
    assert [c["latency_s"] for c in r["per_call"]] == pytest.approx([104e-9, 84e-9])
    assert r["latency_s_per_step"] == pytest.approx(188e-9 / 6)
    assert r["latency_s_per_step_max"] == pytest.approx(66e-9)
    assert r["tokens_per_s"] == pytest.approx(2 / 188e-9)
    assert r["time_to_first_token_s"] == pytest.approx(188e-9)  # steps axis: all T = 2 calls before logits
    assert r["chip_steps_per_call"] == 3 and r["tiles"] == 4 and r["cores"] == 4
    assert r["firing_rate"] == {"a": 0.625, "b": round(4 / 24, 6)}  # rounded to 6 digits, as model.py
    assert r["host_values_in_per_token"] == 10 and r["host_values_out_per_token"] == 12
    assert r["host_ops_per_token"]["linear_macs"] == 14
    conv = r["counting_conventions"]
    assert conv["dataflow"]["by_projection"] == {"pa": 10}
    nb = conv["neurobench"]
    assert (nb["dense"], nb["effective_acs"], nb["effective_macs"]) == (6 * 2 * 2, 6, 4)
    assert conv["paper"]["sops"] == pytest.approx(5 / 8 * 6 * 2 * 2)
    assert conv["paper"]["macs_real_input"] == 28
    assert conv["ann_twin"]["macs_per_token"] == 6 + 7
    assert r["busiest_link_messages_per_step_max"] == 6
    assert r["per_layer"]["a"]["events_per_call"] == [3, 2] and r["per_layer"]["b"]["sops"] == 0
    assert [c["synaptic_ops_per_step"] for c in r["per_core"]] == [0, 2.5, 2.5, 0]


def test_tokens_per_time_axis():
    prog = hand_program()
    assert tokens_of(prog, calls=4, lead=(2, 8)) == 16  # SpikeLM: T calls over B·L positions
    assert tokens_of(hand_program("sequence"), calls=1, lead=(2, 8)) == 16
    assert tokens_of(hand_program("tokens"), calls=8, lead=(2,)) == 16  # SpikeGPT: one call per token, B seqs
    r = simulate_hybrid(hand_program("tokens"), hand_trace(), PROFILE)
    assert r["tokens"] == 2 * 2  # 2 calls × lead (1, 2) read as 2 sequences
    assert r["time_to_first_token_s"] == pytest.approx(104e-9)  # one call


def test_untimed_profile_leaves_latency_null():
    r = simulate_hybrid(hand_program(), hand_trace(), load_profile("horowitz45_fp32"))
    assert r["latency_s_per_step"] is None and r["tokens_per_s"] is None
    assert all(c["latency_s"] is None for c in r["per_call"])
    row = r["ann_twin_comparison"]["horowitz45_fp32"]
    assert row["ann_energy_per_token_j"] == pytest.approx(13 * 4.6e-12)
    assert row["snn_with_host_macs_per_token_j"] == pytest.approx(row["snn_energy_per_token_j"] + 14 * 4.6e-12)


def test_missing_layer_is_an_error():
    trace = hand_trace()
    del trace.payloads["b"]
    with pytest.raises(ValueError, match="no payloads for chip layer 'b'"):
        count_hybrid(hand_program(), trace.payloads)


# ------------------------------------------------------------------------------------------- end to end
def _compiled(family: str, ckpt: str):
    from spikestack.compiler.hybrid.compile import compile_hybrid
    from spikestack.models.data import load_corpus
    from spikestack.models.nir.export import model_to_nir

    ids = load_corpus().val_ids[:64].reshape(4, 16)
    return compile_hybrid(model_to_nir(family, CKPT / ckpt), "loihi2", ids), ids


def _hand_sops(program: HybridProgram, trace: HybridTrace) -> int:
    total = 0
    for la in program.layers:
        if la.projection is not None:
            ev = (trace.payloads[la.name] != 0).reshape(-1, la.width).sum(0)
            total += int(ev @ (np.asarray(la.projection.weight) != 0).sum(0))
    return total


def test_spikegpt_checkpoint_consistent_with_trace():
    from spikestack.runtime.hybrid.executor import run
    from spikestack.simulators.report import human_table

    program, ids = _compiled("spikegpt", "spikegpt-char-2x64.pt")
    trace = run(program, ids[:2, :6])
    profile = load_profile("loihi2_assumed")
    r = simulate_hybrid(program, trace, profile)
    json.dumps(r, allow_nan=False)
    assert r["tokens"] == 12 and r["calls"] == 6 and r["positions_per_call"] == 2
    assert r["spikes"] == trace.events()
    assert r["sops"] == _hand_sops(program, trace) == 0  # LIF spikes feed residual adds on the host: no synapses
    assert r["messages"] == 0 and r["hops"] == 0
    widths = sum(la.width for la in program.layers)
    assert r["neuron_updates"] == r["neuron_updates_active"] == widths * 2 * 6  # host writes every neuron
    assert r["host_values_in_per_token"] == program.report["host_traffic_values_per_position"]["host_to_chip"]
    assert r["host_values_out_per_token"] == program.report["host_traffic_values_per_position"]["chip_to_host"]
    assert r["host_ops_per_token"]["linear_macs"] == sum(s.macs_per_position for s in program.stages)
    assert r["host_ops_per_token"]["activation_matmul_macs"] == 0  # WKV is elementwise
    e = profile.energy_pj
    # every value the host writes into a chip layer is one input message
    assert r["input_messages"] == r["host_values_in_per_token"] * r["tokens"]
    assert r["energy_j"] == pytest.approx((r["neuron_updates"] * e["neuron_update"] + r["spikes"] * e["spike_out"]
                                           + r["input_messages"] * e["message"]) * 1e-12)
    for la in program.layers:
        assert r["per_layer"][la.name]["events"] == int((trace.payloads[la.name] != 0).sum())
    assert "synaptic ops per token" in human_table(r)


def test_spikelm_checkpoint_sops_and_attention_macs():
    from spikestack.runtime.hybrid.executor import run
    from spikestack.simulators.report import markdown_report

    program, ids = _compiled("spikelm-dec", "spikelm-dec-tiny.pt")
    trace = run(program, ids[:2, :8])
    r = simulate_hybrid(program, trace, load_profile("loihi2_assumed"))
    assert r["tokens"] == 16 and r["calls"] == program.steps_per_token
    assert r["spikes"] == trace.events()
    assert r["sops"] == _hand_sops(program, trace) > 0
    assert r["counting_conventions"]["dataflow"]["sops"] == r["sops"]
    # messages: one per (event, destination core with a synapse of the sender)
    assert 0 < r["messages"] <= sum(r["per_layer"][la.name]["events"] for la in program.layers if la.projection)
    # attention per sequence, call and layer: QK^T and P·V, L·L·d MACs each → per token 2·L·d·layers·T
    d = program.layer("backbone.blocks.0.attn.key_spike").width
    n_layers = sum(la.name.endswith("attn.key_spike") for la in program.layers)
    assert r["host_ops_per_token"]["activation_matmul_macs"] == 2 * 8 * d * n_layers * program.steps_per_token
    assert r["latency_s_per_call"] > 0 and r["tokens_per_s"] == pytest.approx(16 / sum(
        c["latency_s"] for c in r["per_call"]))
    assert "## Counting conventions side by side" in markdown_report(r)


def test_binary_encodings_count_their_events():
    """Bit-serial sends popcount(s) binary events per payload s, unary s; synaptic ops follow the events."""
    from spikestack.compiler.encodings import events_per_spike
    from spikestack.compiler.hybrid.compile import compile_hybrid
    from spikestack.models.data import load_corpus
    from spikestack.models.nir.export import model_to_nir
    from spikestack.runtime.hybrid.executor import run
    from spikestack.simulators.hybrid import count_hybrid

    ckpt = Path(__file__).resolve().parents[2] / "models" / "checkpoints" / "spikellm-char-tiny.pt"
    graph = model_to_nir("spikellm", ckpt)
    ids = load_corpus().val_ids[:48].reshape(3, 16)
    counts = {}
    for enc in ("graded", "unary", "bitserial"):
        prog = compile_hybrid(graph, "loihi2", ids, encoding=enc)
        trace = run(prog, ids[:1, :8])
        layers = count_hybrid(prog, trace.payloads).layers
        p = trace.payloads[prog.layers[0].name]
        assert layers[0].events == int(events_per_spike(p, enc).sum())
        counts[enc] = layers[0]
    assert counts["unary"].events > counts["bitserial"].events > counts["graded"].events > 0
    # the same spikes fire whatever the code: firing rates agree, only the messages differ
    assert counts["unary"].spikes == counts["bitserial"].spikes == counts["graded"].spikes == counts["graded"].events
    assert counts["unary"].synaptic_ops.sum() > counts["graded"].synaptic_ops.sum()
