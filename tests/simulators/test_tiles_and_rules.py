"""Counts and latency across four tiles, the update rules, output spikes and input messages, all by hand."""

from dataclasses import replace

import nir
import numpy as np
import pytest
from spikestack.compiler.ir import Core, Program, QHostInput, QProjection, QReadoutPop, QSpikingPop
from spikestack.compiler.pipeline import compile_graph
from spikestack.compiler.targets import load_target
from spikestack.runtime import reference
from spikestack.runtime.trace import Trace
from spikestack.simulators.counts import count_events
from spikestack.simulators.model import simulate
from spikestack.simulators.profiles import ProfileError, load_profile


def four_tile_program() -> Program:
    """a (2 neurons, host-written) on tile (0,0); b's rows 0, 1, 2 on tiles (1,0), (0,1), (1,1): one core each."""
    a = QSpikingPop(name="a", size=2, levels=1, thresholds=np.array([[1], [1]]), carry=np.zeros((2, 3), int),
                    carry_shift=12, amplitude=np.array([1, 1]), bias=np.zeros(2, int), state_unit=1.0,
                    amplitude_unit=1.0)
    b = QReadoutPop(name="b", size=3, state_unit=1.0, host_bias=np.zeros(3))
    w = np.array([[2, 0], [0, 4], [6, 8]], np.int16)  # [dst, src]: a0 → rows 0, 2; a1 → rows 1, 2

    def core(i: int, pop: str, lo: int, hi: int, x: int, y: int) -> Core:
        return Core(index=i, pop=pop, lo=lo, hi=hi, synaptic_memory_bits=16, axons_in=2, chip=0, x=x, y=y, slot=0)

    cores = (core(0, "a", 0, 2, 0, 0), core(1, "b", 0, 1, 1, 0), core(2, "b", 1, 2, 0, 1), core(3, "b", 2, 3, 1, 1))
    host = QHostInput(name="emb", table=np.zeros((4, 2), np.int32), context=1, unit=1.0)
    return Program(target="hand", target_spec=replace(load_target("loihi1_small_cores"), name="hand"), steps=2,
                   host_input=host, input_pop="a", populations=(a, b),
                   projections=(QProjection(name="w", src="a", dst="b", weight=w, weight_exp=0, message_bits=1),),
                   cores=cores)


def four_tile_trace() -> Trace:
    # step 0: a0 fires; step 1: a0 and a1 fire. The host writes a non-zero value into a0 only (1 message a step)
    return Trace(spikes={"a": np.array([[[1, 0], [1, 1]]], np.int8)}, readout=np.zeros((1, 3), np.int64),
                 logits=np.zeros((1, 3)), inputs=np.array([[5, 0]], np.int64))


def test_hops_links_and_input_messages_on_four_tiles():
    c = count_events(four_tile_program(), four_tile_trace())
    # step 0: a0 → cores 1 (1 hop) and 3 (2 hops); step 1: the same, plus a1 → cores 2 (1 hop) and 3 (2 hops)
    assert c.messages_out[0, :, 0].tolist() == [2, 4]
    assert c.hops[0, :, 0].tolist() == [3, 6]
    assert c.max_hops[0].tolist() == [2, 2]
    # X-Y: (0,0)→(1,0) carries a0's two routes and a1's route to (1,1); (0,0)→(0,1) a1's route to core 2
    load = dict(zip(c.links, c.link_messages.tolist(), strict=True))
    assert load == {(0, 0, 1, 0): 2 + 3, (1, 0, 1, 1): 1 + 2, (0, 0, 0, 1): 1}
    assert c.busiest_link[0].tolist() == [2, 3]
    # one input message a step enters at tile (0,0), where a's core sits: 0 hops
    assert c.input_messages[0].tolist() == [1, 1] and c.input_hops.sum() == 0
    assert c.messages_in[0].tolist() == [[1, 1, 0, 1], [1, 1, 1, 2]]
    assert c.synaptic_ops[0].tolist() == [[0, 1, 0, 1], [0, 1, 1, 2]]


def test_energy_latency_and_barrier_on_four_tiles_under_sanafe_profile():
    p = load_profile("loihi1_sanafe_calibrated")
    # SANA-FE's table lookup: 4 tiles → the 4-tile entry 1,400 ns; 3 tiles → the 2-tile entry 1,000 ns
    assert p.barrier_time_ns(4) == 1400.0 and p.barrier_time_ns(3) == 1000.0 and p.barrier_time_ns(100) == 1800.0
    r = simulate(four_tile_program(), four_tile_trace(), p)
    assert r["tiles"] == 4 and r["update_rule"] == "nonzero" and r["update_rule_fallback"] == ["b"]
    # active: a host-written 2 + 2; b received rows {0, 2} then {0, 1, 2}: 9 active, 1 idle of 10
    assert (r["neuron_updates"], r["neuron_updates_active"]) == (10, 9)
    # 6 synops · 35.5 + 9 · 72.8 + 1 · 51.2 + 3 spikes · 69.3 + (6 + 2 input) messages · 111 + 9 hops · 3.6 pJ
    assert r["energy_j"] == pytest.approx((6 * 35.5 + 9 * 72.8 + 51.2 + 3 * 69.3 + 8 * 111 + 9 * 3.6) * 1e-12)
    assert r["energy_breakdown_j"]["input_message"] == pytest.approx(2 * 111e-12)
    # step 0: core 0's neuron pipeline 2 · 9.7 + 1 spike · 30 + 2 messages · 5.1 = 59.6 ns beats every message-in
    # pipeline (core 1: 16 + 3.8 = 19.8); + 2 hops · 5.3 + barrier 1,400 = 1,470.2 ns
    # step 1: 2 · 9.7 + 2 · 30 + 4 · 5.1 = 99.8 (core 3's message-in: 2 · 16 + 2 · 3.8 = 39.6) → 1,510.4 ns
    assert r["latency_s_per_step"] == pytest.approx((1470.2 + 1510.4) / 2 * 1e-9)
    per_core = {c["core"]: c for c in r["per_core"]}
    assert per_core[3]["messages_in"] == 3 and per_core[3]["synaptic_ops"] == 3 and per_core[0]["spikes"] == 3
    assert per_core[0]["message_in_ns_per_step"] == pytest.approx(16.0)  # its input message, one a step
    assert r["per_layer"]["b"] == {"cores": 3, "neurons": 3, "spikes": 0, "synaptic_ops": 6, "updates_active": 5,
                                   "updates_idle": 1, "messages_out": 0, "messages_in": 6, "hops": 0}


def _one_lif(steps: int) -> Program:
    g = nir.NIRGraph.from_list(
        nir.Input(input_type={"input": np.array([1])}),
        nir.Affine(weight=np.array([[2.0]]), bias=np.array([0.0])),
        nir.LIF(tau=np.array([4e-4]), r=np.array([1.0]), v_leak=np.array([0.0]), v_threshold=np.array([1.0]),
                v_reset=np.array([0.0])),
        nir.Output(output_type={"output": np.array([1])}),
    )
    g.metadata = {"spikestack.steps_per_sample": steps}
    return compile_graph(g, "loihi1")


def test_nonzero_rule_counts_a_decaying_potential_and_the_output_spike():
    p = _one_lif(6)
    # one input event at step 0: a_in arrives in step 1 (one-step Dense delay), v = 8192 then decays by 3/4 a step
    # (6144, 4608, 3456, 2592): never zero in 6 steps, so SANA-FE's rule updates it in steps 1..5
    tr = reference.run(p, np.array([[[1], [0], [0], [0], [0], [0]]], np.int64))
    assert count_events(p, tr, "nonzero").active_updates[0, :, 0].tolist() == [0, 1, 1, 1, 1, 1]
    # the event rule sees the event only in the step it is sent (received this step) and nothing after
    assert count_events(p, tr, "event").active_updates[0, :, 0].tolist() == [1, 0, 0, 0, 0, 0]
    # input every step: v 8192, 14336, 18944 > 16384 spikes in step 3 (reset to 0), input keeps it active
    tr = reference.run(p, np.ones((1, 6, 1), np.int64))
    c = count_events(p, tr, "nonzero")
    assert c.active_updates[0, :, 0].tolist() == [0, 1, 1, 1, 1, 1]
    # the output layer's spike is counted although no projection leaves it
    assert c.spikes_out[0, :, 0].tolist() == [0, 0, 0, 1, 0, 0]
    # 6 input events, one destination core each: 6 input messages; the layer sends no message
    assert c.input_messages.sum() == 6 and c.messages_out.sum() == 0


def test_profile_update_rule_and_chip_link_are_checked(tmp_path):
    from pathlib import Path

    text = Path(load_profile("loihi1_sanafe_calibrated").path).read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace('update_rule = "nonzero"', 'update_rule = "always"'))
    with pytest.raises(ProfileError, match=r"update_rule = 'always'; choose one of event, nonzero"):
        load_profile(str(bad))
    bad.write_text(text.replace("source_message_in", "note_message_in"))
    with pytest.raises(ProfileError, match=r"message_in has no source_message_in line"):
        load_profile(str(bad))
    bad.write_text(text.replace('between = "previous"', 'between = "cubic"'))
    with pytest.raises(ProfileError, match=r"between = 'cubic'"):
        load_profile(str(bad))
    assert load_profile("loihi1_davies2018_presilicon").update_rule == "event"


def test_chip_link_and_barrier_grow_with_chips():
    """Row 2 of b moved to chip 1 (chips abut along x: tile (1, 1) of chip 1 is x = 8 + 1)."""
    prog = four_tile_program()
    cores = list(prog.cores)
    cores[3] = replace(cores[3], chip=1, x=9, y=1)
    prog = replace(prog, cores=tuple(cores))
    p = replace(load_profile("loihi1_sanafe_calibrated"), chip_link_pj=50.0, chip_link_ns=100.0)
    r = simulate(prog, four_tile_trace(), p)
    # a0 reaches core 3 in both steps, a1 in step 1: 3 crossings; each route to (9, 1) is 10 hops
    assert r["chips"] == 2 and r["chip_crossings"] == 3 and r["hops"] == 1 + 1 + 1 + 3 * 10
    assert r["energy_breakdown_j"]["chip_link"] == pytest.approx(3 * 50e-12)
    # barrier: 4 tiles → 1,400 ns + 1 extra chip · 100 ns; a step with a crossing adds 100 ns more; network
    # 10 hops · 5.3 ns. Cores as on one chip: 59.6 and 99.8 ns
    assert p.barrier_time_ns(4, chips=2) == 1500.0
    assert r["latency_s_per_step"] == pytest.approx(((59.6 + 53 + 100 + 1500) + (99.8 + 53 + 100 + 1500)) / 2 * 1e-9)
