"""Simulator counts, energy and latency on a hand-built two-layer program (every number computed by hand)."""

from dataclasses import replace

import numpy as np
import pytest
from spikestack.compiler.ir import Core, Program, QHostInput, QProjection, QReadoutPop, QSpikingPop
from spikestack.compiler.targets import load_target
from spikestack.runtime.trace import Trace
from spikestack.simulators.counts import count_events
from spikestack.simulators.model import simulate
from spikestack.simulators.profiles import Profile, available_profiles, load_profile


def hand_program() -> Program:
    a = QSpikingPop(name="a", size=2, levels=1, thresholds=np.array([[1], [1]]), carry=np.zeros((2, 3), int),
                    carry_shift=12, amplitude=np.array([1, 1]), bias=np.zeros(2, int), state_unit=1.0,
                    amplitude_unit=1.0)
    b = QReadoutPop(name="b", size=3, state_unit=1.0, host_bias=np.zeros(3))
    w = np.array([[2, 0], [0, 4], [6, 8]], np.int16)  # [dst, src]
    cores = (Core(index=0, pop="a", lo=0, hi=2, synaptic_memory_bits=0, axons_in=0, chip=0, x=0, y=0, slot=0),
             Core(index=1, pop="b", lo=0, hi=2, synaptic_memory_bits=32, axons_in=2, chip=0, x=1, y=0, slot=0),
             Core(index=2, pop="b", lo=2, hi=3, synaptic_memory_bits=16, axons_in=2, chip=0, x=1, y=1, slot=0))
    host = QHostInput(name="emb", table=np.zeros((4, 2), np.int32), context=1, unit=1.0)
    return Program(target="hand", target_spec=replace(load_target("generic"), name="hand"), steps=2, host_input=host,
                   input_pop="a", populations=(a, b),
                   projections=(QProjection(name="w", src="a", dst="b", weight=w, weight_exp=0, message_bits=2),),
                   cores=cores)


def hand_trace() -> Trace:
    # one token, step 0: neuron 0 fires +1; step 1: neuron 0 fires -1 and neuron 1 fires +1
    spikes = np.array([[[1, 0], [-1, 1]]], np.int8)
    return Trace(spikes={"a": spikes}, readout=np.zeros((1, 3), np.int64), logits=np.zeros((1, 3)),
                 inputs=np.zeros((1, 2), np.int64))


def test_counts_by_hand():
    c = count_events(hand_program(), hand_trace())
    # neuron 0 has synapses in rows 0 (core 1) and 2 (core 2); neuron 1 in rows 1 (core 1) and 2 (core 2)
    assert c.synaptic_ops[0].tolist() == [[0, 1, 1], [0, 2, 2]]
    assert c.spikes_out[0].tolist() == [[1, 0, 0], [2, 0, 0]]
    assert c.messages_out[0].tolist() == [[2, 0, 0], [4, 0, 0]]
    # core 1 is 1 hop from core 0's tile, core 2 is 2 hops: 1 + 2 per spiking neuron
    assert c.hops[0].tolist() == [[3, 0, 0], [6, 0, 0]]
    assert c.max_hops[0].tolist() == [2, 2]
    # X-Y routing: core 0 (0,0) → core 1 (1,0) crosses link A = (0,0)→(1,0); → core 2 (1,1) crosses A then
    # B = (1,0)→(1,1) (X first, never (0,0)→(0,1)). Step 0: 1 spike → A 2, B 1; step 1: 2 spikes → A 4, B 2
    assert c.links == ((0, 0, 1, 0), (1, 0, 1, 1))
    assert c.link_messages.tolist() == [6, 3]
    assert c.busiest_link[0].tolist() == [2, 4]
    assert c.neuron_updates.tolist() == [2, 2, 1]


def test_xy_route_goes_x_first_in_both_directions():
    from spikestack.simulators.counts import xy_route

    assert xy_route((2, 0), (0, 1)) == [(2, 0, 1, 0), (1, 0, 0, 0), (0, 0, 0, 1)]
    assert xy_route((0, 2), (0, 0)) == [(0, 2, 0, 1), (0, 1, 0, 0)]
    assert xy_route((3, 3), (3, 3)) == []


PROFILE = Profile(name="unit", description="", assumption=False,
                  energy_pj={"synaptic_op": 1.0, "neuron_update": 10.0, "neuron_update_idle": 4.0, "spike_out": 100.0,
                             "message": 1000.0, "hop": 10000.0},
                  time_ns={"synaptic_op": 1.0, "neuron_update": 2.0, "neuron_update_idle": 1.0, "spike_out": 3.0,
                           "message": 4.0, "hop": 5.0},
                  barrier_tiles=(1, 3), barrier_ns=(100.0, 300.0), path="")


def test_energy_and_latency_by_hand():
    r = simulate(hand_program(), hand_trace(), PROFILE)
    # active updates: population a is written by the host (2 active per step); b's rows receive events from the
    # spiking columns: step 0 rows 0, 2 (1 on each core), step 1 rows 0, 1, 2 → 4 + 5 = 9 active, 1 idle (row 1, t0)
    # synops 6 ·1 + 9 active ·10 + 1 idle ·4 + spikes 3 ·100 + messages 6 ·1000 + hops 9 ·10000 pJ
    assert r["energy_j"] == pytest.approx((6 + 90 + 4 + 300 + 6000 + 90000) * 1e-12)
    assert r["neuron_updates"] == 10 and r["neuron_updates_active"] == 9
    assert r["sops"] == 6 and r["messages"] == 6 and r["hops"] == 9 and r["tiles"] == 3
    # each core takes the longer of its message-in pipeline (messages in · 0 ns, this profile has no message_in,
    # + synops · 1) and its neuron pipeline. Step 0: core0 neuron = 2 upd·2 + 1 spike·3 + 2 msg·4 = 15; core1
    # max(1 synop·1, 1 active·2 + 1 idle·1) = 3; core2 max(1, 2) = 2 → 15. Step 1: core0 = 4 + 2·3 + 4·4 = 26.
    # The host writes zeros: no input messages. Network: longest route 2 hops · 5 ns = 10 ns (the busiest link's
    # load is reported, not timed); barrier(3 tiles) = 300 ns
    assert r["latency_s_per_step"] == pytest.approx(((15 + 10 + 300) + (26 + 10 + 300)) / 2 * 1e-9)
    assert r["tokens_per_s"] == pytest.approx(1 / (2 * r["latency_s_per_step"]))
    # first token: T = 2 steps + 2 populations of pipeline fill = 4 mean steps
    assert r["time_to_first_token_s"] == pytest.approx(4 * r["latency_s_per_step"])
    assert r["firing_rate"] == {"a": 0.75}
    # host: 1 context × 2-wide rows gathered per token; 3 readout logits × (Mul, Div, Add)
    assert r["host_ops_per_token"] == {"encode_values_gathered": 2, "decode_arith_ops": 9}
    assert r["host_values_in_per_token"] == 2 * 2  # 2 input values written at each of T = 2 steps


def test_profiles_load_with_sources():
    assert {"loihi1_sanafe_calibrated", "loihi1_davies2018_presilicon", "loihi2_assumed"} <= set(available_profiles())
    p = load_profile("loihi1_sanafe_calibrated")
    assert p.energy_pj["synaptic_op"] == 35.5 and p.time_ns["message"] == 5.1  # REFERENCE.md §6.1
    assert p.barrier_time_ns(2) == 1000.0 and p.barrier_time_ns(100) == 1800.0
    assert load_profile("loihi2_assumed").assumption


def test_profile_without_source_is_rejected(tmp_path):
    from spikestack.simulators.profiles import ProfileError

    text = (load_profile("loihi1_sanafe_calibrated").path and
            open(load_profile("loihi1_sanafe_calibrated").path).read())
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace('source_hop = "mean of SANA-FE E-W 3.0', 'nosource = "x'))
    with pytest.raises(ProfileError, match=r"\[energy_pj\] hop has no source_hop line"):
        load_profile(str(bad))


def test_horowitz_profiles_are_sourced_and_untimed():
    int8, fp32 = load_profile("horowitz45_int8"), load_profile("horowitz45_fp32")
    # REFERENCE.md §7.3: int8 add 0.03, mult 0.2; 32-bit int add 0.1, mult 3.1; fp32 add 0.9, mult 3.7 pJ
    assert (int8.energy_pj["synaptic_op"], int8.ann_mac_pj, int8.energy_pj["neuron_update"]) == (0.03, 0.23, 3.5)
    assert (fp32.energy_pj["synaptic_op"], fp32.ann_mac_pj, fp32.energy_pj["neuron_update"]) == (0.9, 4.6, 7.3)
    assert not int8.timing and int8.energy_pj["hop"] == 0.0
    assert load_profile("loihi1_sanafe_calibrated").timing


def test_untimed_profile_reports_energy_without_latency():
    r = simulate(hand_program(), hand_trace(), load_profile("horowitz45_fp32"))
    # synops 6 × 0.9 + neuron updates 10 × 7.3 pJ; spikes, messages and hops cost nothing in this profile
    assert r["energy_j"] == pytest.approx((6 * 0.9 + 10 * 7.3) * 1e-12)
    assert r["latency_s_per_step"] is None and r["tokens_per_s"] is None and r["timing"] is False
    # ANN twin: 6 MACs per token × 4.6 pJ; the SNN row under the same profile repeats energy_j (1 token)
    row = r["ann_twin_comparison"]["horowitz45_fp32"]
    assert row["ann_energy_per_token_j"] == pytest.approx(27.6e-12)
    assert row["snn_energy_per_token_j"] == pytest.approx(r["energy_j"])


def test_every_hop_crosses_one_link(nir_chain, token_ids, tmp_path):
    from pathlib import Path

    from spikestack.compiler.pipeline import compile_graph
    from spikestack.runtime.reference import run

    # one core per tile and 2 neurons per core spread the tiny chain over the 4 x 4 mesh
    text = Path("compiler/targets/generic.toml").read_text()
    target = tmp_path / "spread.toml"
    target.write_text(text.replace("max_neurons = 64", "max_neurons = 2").replace("cores_per_tile = 4",
                                                                                  "cores_per_tile = 1"))
    program = compile_graph(nir_chain, str(target))
    c = count_events(program, run(program, token_ids))
    assert c.hops.sum() > 0 and len(c.links) > 1
    # a route of h hops charges h links, one message each (input messages from the host entry tile included)
    assert c.link_messages.sum() == c.hops.sum() + c.input_hops.sum()
    assert (c.busiest_link <= c.messages_out.sum(-1)).all()


def test_counts_follow_the_encoding():
    """Level 2 costs 2 unary events and 1 bit-serial event; level 3 costs 3 and 2 (compiler/encodings.py)."""
    from dataclasses import replace

    prog = hand_program()
    prog = replace(prog, populations=(replace(prog.populations[0], levels=3),) + prog.populations[1:])
    spikes = {"a": np.array([[[2, 0], [-3, 1]]], np.int8)}
    trace = replace(hand_trace(), spikes=spikes)
    by_enc = {}
    for enc in ("graded", "unary", "bitserial"):
        p = replace(prog, projections=(replace(prog.projections[0], encoding=enc),))
        by_enc[enc] = count_events(p, trace)
    # events: graded 1, 2 (neurons fire 1 + 2 times); unary 2, 3 + 1 = 4; bit-serial 1, 2 + 1 = 3
    # neuron 0 reaches cores 1 and 2 with one synapse each, neuron 1 likewise
    assert by_enc["graded"].synaptic_ops[0].sum(-1).tolist() == [2, 4]
    assert by_enc["unary"].synaptic_ops[0].sum(-1).tolist() == [4, 8]
    assert by_enc["bitserial"].synaptic_ops[0].sum(-1).tolist() == [2, 6]
    assert by_enc["unary"].messages_out[0, :, 0].tolist() == [4, 8]


def test_malformed_profile_is_one_error_line(tmp_path):
    from spikestack.simulators.profiles import ProfileError

    bad = tmp_path / "broken.toml"
    bad.write_text("[energy_pj\nsynaptic_op = ")
    with pytest.raises(ProfileError, match=r"broken.toml: not valid TOML"):
        load_profile(str(bad))
    with pytest.raises(ProfileError, match=r"unknown profile 'loihi9'; known: .*loihi2_assumed"):
        load_profile("loihi9")


def test_received_any_equals_the_product_on_every_row_kind():
    """The pigeonhole shortcut (simulators/hybrid_counts.py `received_any`) against the plain 0/1 product: rows
    with many active inputs (decided without it), few (through it) and none, destinations without synapses."""
    from spikestack.simulators.hybrid_counts import received_any

    rng = np.random.default_rng(3)
    nzw = rng.random((40, 30)) > 0.2  # about 6 zeros per destination
    nzw[5] = False  # no synapses: never receives
    nzw[7] = False
    nzw[7, 29] = True  # one synapse: receives only from input 29
    nz = np.zeros((2, 3, 30), bool)
    nz[0, 0] = True  # all inputs active: easy
    nz[0, 1, [2, 29]] = True  # two active: through the product
    nz[1, 2] = rng.random(30) > 0.3  # about 21 active: easy (more than the most zeros)
    got = received_any(nz, nzw)
    want = (nz.astype(np.int64) @ nzw.T.astype(np.int64)) > 0
    np.testing.assert_array_equal(got, want)
    assert not got[..., 5].any() and got[0, 1, 7] and not got[0, 2].any()
