"""Multi-chip targets and placement (compiler/targets.py [system], compiler/passes/place.py) and the simulator's
chip-to-chip links (simulators/counts.py, model.py, hybrid.py), all by hand on tests/fixtures/targets/tiny_chips.toml:
2 x 2 chips of 4 cores (2 x 1 tiles of 2 cores), one neuron per core."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from spikestack.compiler.artifact import load, save
from spikestack.compiler.ir import Core, Program, QHostInput, QProjection, QReadoutPop, QSpikingPop
from spikestack.compiler.passes.partition import check_core_count
from spikestack.compiler.passes.place import chip_cuts, cut_routes, place, serpentine, traffic_graph
from spikestack.compiler.pipeline import compile_graph
from spikestack.compiler.targets import load_target
from spikestack.runtime.trace import Trace
from spikestack.simulators.model import simulate
from spikestack.simulators.profiles import load_profile

from spikestack.errors import CompileError, TargetLimitError
from tests.conftest import make_nir_chain

TINY = str(Path(__file__).resolve().parents[1] / "fixtures" / "targets" / "tiny_chips.toml")


def _spiking(name: str, n: int) -> QSpikingPop:
    return QSpikingPop(name=name, size=n, levels=1, thresholds=np.ones((n, 1), int), carry=np.zeros((n, 3), int),
                       carry_shift=12, amplitude=np.ones(n, int), bias=np.zeros(n, int), state_unit=1.0,
                       amplitude_unit=1.0)


def three_chip_program() -> Program:
    """a (3, host-written) → b (4) → c (3, readout), one neuron per core: cores a 0-2, b 3-6, c 7-9.
    a → b: a0 → b0, a1 → b1, a2 → b2 and b3; b → c dense."""
    target = load_target(TINY)
    w_ab = np.zeros((4, 3), np.int16)
    w_ab[0, 0] = w_ab[1, 1] = w_ab[2, 2] = w_ab[3, 2] = 2
    names = [("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1), ("b", 2), ("b", 3), ("c", 0), ("c", 1), ("c", 2)]
    cores = tuple(Core(index=i, pop=p, lo=lo, hi=lo + 1, synaptic_memory_bits=16, axons_in=1)
                  for i, (p, lo) in enumerate(names))
    return Program(target=target.name, target_spec=target, steps=1,
                   host_input=QHostInput(name="emb", table=np.zeros((4, 3), np.int32), context=1, unit=1.0),
                   input_pop="a", populations=(_spiking("a", 3), _spiking("b", 4),
                                               QReadoutPop(name="c", size=3, state_unit=1.0, host_bias=np.zeros(3))),
                   projections=(QProjection(name="ab", src="a", dst="b", weight=w_ab, weight_exp=0, message_bits=1),
                                QProjection(name="bc", src="b", dst="c", weight=np.full((3, 4), 2, np.int16),
                                            weight_exp=0, message_bits=1)),
                   cores=cores)


def test_cut_routes_and_chip_cuts_by_hand():
    prog = three_chip_program()
    # routes crossing a cut before core i: edges (0,3) (1,4) (2,5) (2,6) and b × c (12); e.g. i = 4: (1,4) (2,5)
    # (2,6) and b0's 3 routes = 6
    cost = cut_routes(traffic_graph(prog), 10)
    assert cost.tolist() == [0, 1, 2, 4, 6, 8, 10, 12, 8, 4, 0]
    # 10 cores on chips of 4: 3 chips, slack 2; boundaries (4 - a1, 8 - a2), a1 <= a2 <= 2: (4, 8) 6 + 8 = 14,
    # (3, 7) 16, (2, 6) 2 + 10 = 12 the least, (3, 6) 14, (4, 7) 18, (4, 6) 16
    assert chip_cuts(cost, 10, 4) == [2, 6]
    # nothing to save: chips fill up in order (the placement every target had before chip meshes)
    assert chip_cuts(np.zeros(11, np.int64), 10, 4) == [4, 8]
    assert chip_cuts(cost, 4, 4) == [] and chip_cuts(np.zeros(17, np.int64), 16, 4) == [4, 8, 12]


def test_three_chip_placement_crossings_hops_and_barrier_by_hand():
    placed = place(three_chip_program(), load_target(TINY))
    # chips 0, 1, 2 at chip positions (0,0), (1,0), (1,1) (the serpentine walk of 2 x 2 chips); a core's x =
    # chip x · 2 tiles + tile x, y = chip y · 1 + tile y. Min-cut puts a2 with b2 (its neighbour) on one tile
    assert [(c.chip, c.x, c.y) for c in placed.cores] == [
        (0, 0, 0), (0, 0, 0), (1, 3, 0), (1, 2, 0), (1, 2, 0), (1, 3, 0), (2, 3, 1), (2, 3, 1), (2, 2, 1), (2, 2, 1)]
    # routes between chips: (0,3) (1,4) from chip 0 to 1, (2,6) and b0, b1, b2 × c (9) from chip 1 to 2: 12, all
    # between neighbours
    placement = placed.report["placement"]
    assert (placement["chips"], placement["routes_between_chips"], placement["chip_hop_weighted_routes"],
            placement["mean_chip_hops"]) == (3, 12, 12, 1.0)
    # one step: the host writes a0 = 5, a2 = 7; a0, a1, a2 fire, then b0 and b3
    trace = Trace(spikes={"a": np.array([[[1, 1, 1]]], np.int8), "b": np.array([[[1, 0, 0, 1]]], np.int8)},
                  readout=np.zeros((1, 3), np.int64), logits=np.zeros((1, 3)), inputs=np.array([[5, 0, 7]], np.int64))
    profile = load_profile("loihi2_assumed")
    r = simulate(placed, trace, profile)
    # crossings: a0 → b0, a1 → b1 (chip 0 → 1), a2 → b3 (1 → 2), b0 → c0, c1, c2 (1 → 2): 6, one chip link each.
    # Tile hops: a0 → b0 (0,0)→(2,0) 2, a1 → b1 2, a2 → b2 0, a2 → b3 (3,0)→(3,1) 1; b0 (2,0) → c0 (3,1) 2,
    # c1, c2 (2,1) 1 each; b3 (3,1) → c0 0, c1, c2 1 each: 11
    assert (r["chips"], r["messages"], r["chip_crossings"], r["chip_link_hops"], r["hops"]) == (3, 10, 6, 6, 11)
    assert r["chip_crossings_per_token"] == 6.0 and r["mean_chip_hops"] == 1.0
    # host messages enter chip 0 at tile (0,0): a0 0 hops, a2 at (3,0) 3 hops and 1 chip link
    assert (r["input_messages"], r["input_hops"]) == (2, 3)
    # chip-link energy: 6 + 1 links · 111 pJ (loihi2_assumed [chip_link])
    assert r["energy_breakdown_j"]["chip_link"] == pytest.approx(7 * 111e-12)
    # latency: busiest core b0 (3 messages) or b3: 4.85 update + 3.0 spike + 3 · 0.51 = 9.38 ns; longest route 3
    # hops · 5.3; most chip links crossed 1 · 1.84; barrier: 5 tiles → 1,400 + 400 / 25 = 1,416 ns, plus 2 extra
    # chips · 1.84
    assert profile.barrier_time_ns(5, 3) == pytest.approx(1416 + 2 * 1.84)
    assert r["tiles"] == 5
    assert r["latency_s_per_step"] == pytest.approx((9.38 + 3 * 5.3 + 1.84 + 1416 + 2 * 1.84) * 1e-9)


def test_chain_over_four_chips_visits_them_in_order():
    """A 13-core bi-spike chain (s1: 4, s2: 5, head: 4 one-neuron cores) needs all 4 chips; in core order the chips
    are 0, 1, 2, 3, each next one a chip-mesh neighbour of the last: (0,0) → (1,0) → (1,1) → (0,1)."""
    prog = compile_graph(make_nir_chain(emb=2, context=2, hidden=5, out=4), TINY)
    assert [c.chip for c in prog.cores] == [0] * 4 + [1] * 4 + [2] * 4 + [3]
    assert [(c.x // 2, c.y) for c in prog.cores if c.slot == 0][::2] == [(0, 0), (1, 0), (1, 1), (0, 1)]
    assert serpentine(2, 2) == [(0, 0), (1, 0), (1, 1), (0, 1)]
    assert prog.report["placement"]["chips"] == 4
    with pytest.raises(TargetLimitError, match=r"needs 17 cores, more than 16 on the 4 chips \(2 x 2\) of tiny_chips"):
        check_core_count(17, load_target(TINY))


def test_hala_point_loads_and_a_small_program_compiles_for_it(tmp_path):
    hala = load_target("hala_point")
    assert (hala.chips_x, hala.chips_y, hala.chips, hala.chip_cores) == (32, 36, 1152, 122)
    assert hala.chips * hala.cores_per_chip == 140_544  # the announcement's core count
    prog = compile_graph(make_nir_chain(), "hala_point")
    assert {c.chip for c in prog.cores} == {0} and prog.target_spec == hala
    # the chip mesh travels in the artifact; a one-chip target's spec has no chip fields (artifacts unchanged)
    assert load(save(prog, tmp_path / "art")).target_spec == hala
    assert "chips_x" not in load_target("loihi2").to_fields() and load_target("loihi2").chips == 64


def test_system_table_is_checked(tmp_path):
    text = Path(TINY).read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("source_chips =", "note ="))
    with pytest.raises(CompileError, match=r"\[system\] chips_x has no source_chips_x \(or source_chips\) line"):
        load_target(str(bad))
    bad.write_text(text.replace("chips_x = 2", "chips_x = 200").replace("chips_y = 2", "chips_y = 200"))
    with pytest.raises(CompileError, match=r"200 x 200 = 40000 chips exceeds 16384"):
        load_target(str(bad))
    bad.write_text(text.replace("chips_y = 2\n", ""))
    with pytest.raises(CompileError, match=r"\[system\] lacks 'chips_y'"):
        load_target(str(bad))


def test_hybrid_chip_links_by_hand():
    """tests/simulators/test_hybrid_sim.py's hand program with accumulator core 2 moved to chip 1 (generic target:
    4 x 4 tiles per chip, so tile (1,1) of chip 1 is x = 4 + 1)."""
    from spikestack.simulators.hybrid import simulate_hybrid

    from tests.simulators.test_hybrid_sim import PROFILE, hand_program, hand_trace

    prog = hand_program()
    cores = list(prog.cores)
    cores[2] = replace(cores[2], chip=1, x=5, y=1)
    prog = replace(prog, cores=tuple(cores))
    profile = replace(PROFILE, chip_link_pj=50.0, chip_link_ns=100.0)
    r = simulate_hybrid(prog, hand_trace(), profile)
    # every event of a reaches core 2: 3 in call 0, 2 in call 1 → 5 crossings of one chip link; the route to
    # (5, 1) is 6 hops instead of 2, so hops = 15 + 5 · 4
    assert (r["chips"], r["chip_crossings"], r["chip_link_hops"], r["hops"]) == (2, 5, 5, 35)
    assert r["energy_breakdown_j"]["chip_link"] == pytest.approx(5 * 50e-12)
    # segment 0 per call: + 4 more hops · 7 on the longest route + 1 chip link · 100; every step's barrier + 100
    # (1 extra chip): calls 104 + 28 + 100 + 3 · 100 and 84 + 28 + 100 + 3 · 100
    assert [c["latency_s"] for c in r["per_call"]] == pytest.approx([532e-9, 512e-9])
