"""Compiler passes: hand-checked outputs, limits, verifiers, determinism."""

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from spikestack.compiler.from_nir import from_nir
from spikestack.compiler.passes.fold_amplitudes import fold_amplitudes
from spikestack.compiler.passes.lower_spikes import payload_bits
from spikestack.compiler.passes.partition import partition
from spikestack.compiler.passes.place import place, serpentine
from spikestack.compiler.passes.quantize import quantize, state_bound
from spikestack.compiler.pipeline import compile_graph
from spikestack.compiler.targets import load_target
from spikestack.compiler.verify import verify_program

from spikestack.errors import CompileError, TargetLimitError
from tests.conftest import make_nir_chain

LOIHI2 = load_target("loihi2")


def test_fold_scales_weights_by_alpha_max(nir_chain):
    g = from_nir(nir_chain)
    folded = fold_amplitudes(g)
    s1 = folded.pop("s1")
    assert s1.alpha_ref == pytest.approx(float(nir_chain.nodes["s1"].alpha.max()))
    np.testing.assert_allclose(folded.projections[0].weight, nir_chain.nodes["fc1"].weight * s1.alpha_ref)
    assert g.pop("s1").alpha_ref is None  # the input graph is untouched (frozen IR)


def test_quantize_tables_by_hand(nir_chain):
    prog = quantize(fold_amplitudes(from_nir(nir_chain)), LOIHI2)
    verify_program(prog)
    s2 = prog.pop("s2")
    alpha = nir_chain.nodes["s2"].alpha
    # θ_t = round(0.5·α_t / δ); carry after s = -1, 0, +1 = round(0.25·α_t·(2, 1, 0)·4096)
    np.testing.assert_array_equal(s2.thresholds[:, 0], np.round(0.5 * alpha / s2.state_unit))
    np.testing.assert_array_equal(s2.carry, np.round(0.25 * alpha[:, None] * np.array([2, 1, 0]) * 4096))
    assert s2.state_unit == 2.0 ** round(np.log2(s2.state_unit))  # a power of two
    w = prog.projections[0].weight
    assert w.dtype == np.int16 and np.all(w % 2 == 0) and np.abs(w).max() <= 254
    s1 = prog.pop("s1")
    # amplitudes are round(2^p · α_t/α_ref): the last (largest) α maps to exactly 2^p
    p = prog.report["layers"]["fc1"]["payload_amplitude_bits"]
    a1 = nir_chain.nodes["s1"].alpha
    np.testing.assert_array_equal(s1.amplitude, np.maximum(np.round(a1 / a1.max() * 2**p), 1))


def test_weights_are_fixed_points_of_lavas_truncation(program):
    from lava.utils.weightutils import SignMode, clip_weights, determine_sign_mode, truncate_weights

    for proj in program.projections:
        w = np.asarray(proj.weight, np.int32)
        mode = determine_sign_mode(w)
        lava_w = truncate_weights(clip_weights(w, mode, num_bits=8), mode, 8)
        np.testing.assert_array_equal(lava_w, w)
        assert mode in (SignMode.MIXED, SignMode.EXCITATORY, SignMode.INHIBITORY)


def test_state_bound_by_hand():
    # x_max = 10, carry max 8192/4096 = 2 at every step: u0 = 10, u1 = 30, u2 = 70
    carry = np.array([[8192, 0, 0]] * 3)
    assert state_bound(np.array([10.0]), carry, 12, 3) == 70
    assert state_bound(np.array([10.0]), None, 12, 4) == 40  # readout: T·x


def test_quantize_refuses_what_cannot_fit():
    tiny_state = replace(LOIHI2, state_bits=12)
    with pytest.raises(TargetLimitError, match=r"layer 's2': worst-case state \d+ exceeds the 12-bit limit"):
        quantize(fold_amplitudes(from_nir(make_nir_chain(hidden=64))), tiny_state)


def test_payload_bits_and_binary_target(program):
    s1 = program.pop("s1")
    assert payload_bits(s1) == int(max(s1.amplitude)).bit_length() + 1
    binary = replace(LOIHI2, max_payload_bits=1, name="binary")
    msg = r"projection 'fc1': graded payload needs \d+ bits, target binary allows 1"
    with pytest.raises(TargetLimitError, match=msg):
        compile_graph(make_nir_chain(), binary, encoding="graded")
    # the cost model falls back to binary events: unary for K = 1 and 2 (ties), bit-serial from K = 3
    assert {p.encoding for p in compile_graph(make_nir_chain(), binary).projections} == {"unary"}
    assert {p.encoding for p in compile_graph(make_nir_chain(levels=3), binary).projections} == {"bitserial"}
    assert {p.encoding for p in compile_graph(make_nir_chain(levels=3), LOIHI2).projections} == {"graded"}


def test_loihi1_refuses_the_bispike_neuron_by_name():
    msg = r"layer 's1': the bi-spike neuron .* needs programmable neurons; target loihi1 offers only cuba_lif"
    with pytest.raises(TargetLimitError, match=msg):
        compile_graph(make_nir_chain(), "loihi1")


def test_partition_splits_by_neurons_and_memory():
    prog = quantize(fold_amplitudes(from_nir(make_nir_chain(hidden=150))), LOIHI2)
    generic = load_target("generic")  # 64 neurons per core
    cores = partition(prog, generic).cores
    assert [(c.pop, c.lo, c.hi) for c in cores if c.pop == "s2"] == [("s2", 0, 50), ("s2", 50, 100), ("s2", 100, 150)]
    # memory 1200 bits: s2 has fan-in 6 × 8 bits = 48 bits per neuron → 25 per core → 6 cores;
    # head has fan-in 150 → 1200 bits → 1 neuron per core → 7 cores
    tight = replace(generic, synaptic_memory_bits=1200)
    cores = partition(prog, tight).cores
    s2_cores = [c for c in cores if c.pop == "s2"]
    assert len(s2_cores) == 6 and all(c.hi - c.lo == 25 for c in s2_cores)
    assert s2_cores[0].synaptic_memory_bits == 1200
    assert len([c for c in cores if c.pop == "head"]) == 7


def test_partition_limits_name_the_layer():
    prog = quantize(fold_amplitudes(from_nir(make_nir_chain(hidden=40))), LOIHI2)
    with pytest.raises(TargetLimitError, match=r"layer 'head': fan-in 40 exceeds 16 input axons .* \(over by 24\)"):
        partition(prog, replace(LOIHI2, max_axons_in=16, name="tiny"))
    with pytest.raises(TargetLimitError, match=r"layer 's2': one neuron needs 48 bits"):
        partition(prog, replace(LOIHI2, synaptic_memory_bits=40))


def test_serpentine_and_place():
    assert serpentine(3, 2) == [(0, 0), (1, 0), (2, 0), (2, 1), (1, 1), (0, 1)]
    prog = quantize(fold_amplitudes(from_nir(make_nir_chain(hidden=150))), LOIHI2)
    generic = load_target("generic")
    placed = place(partition(prog, generic), generic)
    # cores: 0 = s1 (6 neurons), 1-3 = s2 slices of 50, 4 = head. Routes: s1 → each s2 core 6, each s2 core →
    # head 50. Serpentine puts 0-3 on one tile and 4 on the next: 3·50 = 150 hop-routes. Min-cut keeps the three
    # s2 cores with the head (4 per tile) and s1 alone one hop away: 3·6 = 18.
    assert placed.report["placement"]["hop_weighted_routes"] == {"serpentine": 150, "mincut": 18}
    tiles = {c.index: (c.x, c.y) for c in placed.cores}
    assert tiles[1] == tiles[2] == tiles[3] == tiles[4] != tiles[0]
    assert sorted(c.slot for c in placed.cores if (c.x, c.y) == tiles[4]) == [0, 1, 2, 3]


def test_verifier_rejects_odd_weights(program):
    bad = replace(program.projections[0], weight=program.projections[0].weight + 1)
    with pytest.raises(CompileError, match="even integers"):
        verify_program(replace(program, projections=(bad,) + program.projections[1:]))


def test_dump_after_writes_ir(nir_chain, tmp_path):
    compile_graph(nir_chain, "loihi2", dump_after="quantize", dump_dir=tmp_path)
    assert (tmp_path / "003_quantize.json").read_text().startswith("{")
    with pytest.raises(CompileError, match="no such pass"):
        compile_graph(nir_chain, "loihi2", dump_after="nonsense")


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 1000), hidden=st.integers(1, 400), max_neurons=st.integers(8, 64))
def test_placement_is_valid_and_never_worse_than_serpentine(seed, hidden, max_neurons):
    from collections import Counter

    from spikestack.compiler.passes.place import hop_cost, traffic_graph

    target = replace(load_target("generic"), max_neurons=max_neurons)
    prog = place(partition(quantize(fold_amplitudes(from_nir(make_nir_chain(seed=seed, hidden=hidden))), LOIHI2),
                           target), target)
    per_tile = Counter((c.chip, c.x, c.y) for c in prog.cores)
    assert max(per_tile.values()) <= target.cores_per_tile
    assert sorted((c.chip, c.x, c.y, c.slot) for c in prog.cores) == sorted(set((c.chip, c.x, c.y, c.slot)
                                                                                for c in prog.cores))
    costs = prog.report["placement"]["hop_weighted_routes"]
    chosen = hop_cost(traffic_graph(prog), {c.index: (c.x, c.y) for c in prog.cores})
    assert chosen == min(costs["serpentine"], costs["mincut"]) <= costs["serpentine"]


def test_input_population_bound_is_proven_too(program):
    layer = program.report["layers"]["emb"]
    table_max = int(np.abs(program.host_input.table).max())
    assert table_max <= layer["worst_case_state"] <= program.state_max
    # carry factors 0.25·α·2 = 5, 10, 20 grow a 2^14 input to ≈ 2^14 · (1 + 5 + 50 + 1000) > 2^23
    graph = make_nir_chain()
    graph.nodes["s1"].alpha = np.array([10.0, 20.0, 40.0, 80.0])
    with pytest.raises(TargetLimitError, match=r"layer 's1': worst-case state \d+ exceeds the 24-bit limit"):
        quantize(fold_amplitudes(from_nir(graph)), LOIHI2)


def test_partition_respects_output_axons():
    """Output axons = (neuron, destination core) routes. With 1,200 bits of synaptic memory `head` takes 7 cores
    (one neuron each), so every s2 neuron with synapses on all of them needs 7 axons: at most 50 per core means
    at most 7 s2 neurons per core; a limit of 6 cannot be met by any slicing of s2."""
    prog = quantize(fold_amplitudes(from_nir(make_nir_chain(hidden=150))), LOIHI2)
    tight = replace(load_target("generic"), synaptic_memory_bits=1200, max_axons_out=50)
    cores = partition(prog, tight).cores
    head = [c for c in cores if c.pop == "head"]
    w = np.asarray(prog.incoming("head").weight) != 0
    for core in (c for c in cores if c.pop == "s2"):
        routes = sum(int(w[h.lo:h.hi, core.lo:core.hi].any(0).sum()) for h in head)
        assert routes <= 50
    assert len([c for c in cores if c.pop == "s2"]) >= 150 // 7
    with pytest.raises(TargetLimitError, match=r"layer .s2.: one neuron needs 7 output axons .* \(over by 1\)"):
        partition(prog, replace(tight, max_axons_out=6))  # s1 → 6 s2 cores still fits
