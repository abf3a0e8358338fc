"""Recurrent foreign graphs (snnTorch RLeaky's shape) and producers' semantics (issue #14): hand-computed rasters,
refusals by name, the CubaLIF bias and the dt an error suggests."""

from __future__ import annotations

import warnings

import nir
import numpy as np
import pytest
from spikestack.compiler.nir_cycles import back_edges, is_recurrent_chain
from spikestack.runtime.neurons import lif_bias, lif_fields, lif_step

from spikestack import api
from spikestack.errors import CompileError, NIRFormatError, TargetLimitError

DT = 1e-4


def recurrent_graph(steps: int = 10, rec: np.ndarray | None = None) -> nir.NIRGraph:
    """Input(1) → Linear [[4],[0]] → LIF(2, τ = 2 dt) with Linear rec back into the LIF: neuron 0 excites itself
    (w 4) and neuron 1 (w 1.5)."""
    rec = np.array([[4.0, 0.0], [1.5, 0.0]]) if rec is None else rec
    nodes = {"in": nir.Input(input_type={"input": np.array([1])}),
             "ff": nir.Linear(weight=np.array([[4.0], [0.0]])),
             "lif": nir.LIF(tau=np.full(2, 2 * DT), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2)),
             "rec": nir.Linear(weight=rec),
             "out": nir.Output(output_type={"output": np.array([2])})}
    edges = [("in", "ff"), ("ff", "lif"), ("lif", "out"), ("lif", "rec"), ("rec", "lif")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"spikestack.dt": DT, "spikestack.steps_per_sample": steps})


def one_pulse(samples: int = 1, steps: int = 10) -> np.ndarray:
    x = np.zeros((samples, steps, 1), np.int64)
    x[:, 0, 0] = 1
    return x


def test_recurrent_lif_keeps_firing_hand_computed():
    """dt/τ = 1/2: dv = 2048, gain 1/2, so w_eff = 2 (ff, rec[0,0]) and 0.75 (rec[1,0]); peak 2 → e = -5, mantissas
    2·round(w/2^-5) = 128 and 48, vth = round(1/2^-6) = 64 (effective 4096). t=1: the input pulse gives neuron 0
    128·64 = 8192 > 4096: spike; from then on it re-excites itself every step. Neuron 1 gets 48·64 = 3072 per
    neuron-0 spike: 3072 (t=2), 1536 + 3072 = 4608 > 4096 (t=3, spike, reset), 3072 (t=4), spike (t=5), …"""
    program = api.compile(recurrent_graph(), "loihi2")
    assert [(p.name, p.src, p.dst, p.weight.tolist()) for p in program.projections] == [
        ("ff", "in", "lif", [[128], [0]]), ("rec", "lif", "lif", [[128, 0], [48, 0]])]
    pop = program.pop("lif")
    assert (pop.du, pop.dv, pop.vth) == (4095, 2048, 64)
    # partitioned like any projection: 3 non-zero synapses (ff 1, rec 2) × 8 bits; input axons from the input
    # channel and neuron 0 (neuron 1 has no outgoing synapse)
    assert [(c.pop, c.axons_in, c.synaptic_memory_bits) for c in program.cores] == [("lif", 2, 3 * 8)]
    want = np.array([[0, 1, 1, 1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 0, 1, 0, 1, 0, 1]], np.int8).T
    for backend in ("reference", "torch"):
        result = api.run(program, one_pulse(), backend=backend)
        np.testing.assert_array_equal(result.trace.spikes["lif"][0], want)
        assert result.output_spike_counts == [[9, 4]]
        assert result.to_dict()["layer_spike_counts"] == {"lif": [9, 4]}


def test_recurrent_artifact_round_trip_and_simulate(tmp_path):
    program = api.compile(recurrent_graph(), "loihi2")
    api.save(program, tmp_path / "art")
    loaded = api.load(tmp_path / "art")
    assert [p.name for p in loaded.projections] == ["ff", "rec"]
    assert api.run(loaded, one_pulse()).output_spike_counts == [[9, 4]]
    report = api.simulate(loaded, inputs=one_pulse()).to_dict()
    # synaptic ops, one per (event, non-zero synapse): ff carries 1 input event × 1 synapse; rec carries neuron
    # 0's 9 spikes × 2 synapses (column 0) and neuron 1's 4 spikes × 0 synapses: 1 + 18 = 19
    assert report["sops"] == 19


def test_cycle_dispatch_and_back_edges():
    graph = recurrent_graph()
    assert back_edges(graph) == [("rec", "lif")]
    assert is_recurrent_chain(graph)
    graph.metadata = {"spikestack.family": "spikegpt"}
    assert not is_recurrent_chain(graph)


def test_stateless_cycle_refused_by_name():
    nodes = {"in": nir.Input(input_type={"input": np.array([2])}),
             "a": nir.Affine(weight=np.eye(2), bias=np.zeros(2)), "b": nir.Linear(weight=np.eye(2)),
             "out": nir.Output(output_type={"output": np.array([2])})}
    graph = nir.NIRGraph(nodes=nodes, edges=[("in", "a"), ("a", "b"), ("b", "a"), ("b", "out")], type_check=False)
    with pytest.raises(NIRFormatError, match=r"nodes \['b', 'a'\]: a cycle without state"):
        api.compile(graph)


def test_feedback_path_without_synapses_refused():
    graph = recurrent_graph()
    graph.nodes["rec"] = nir.Scale(scale=np.ones(2))
    with pytest.raises(NIRFormatError, match="needs an Affine or Linear"):
        api.compile(graph)


def cuba_bias_graph(bias: float = 1.0, threshold: float = 10.0) -> nir.NIRGraph:
    nodes = {"in": nir.Input(input_type={"input": np.array([1])}),
             "aff": nir.Affine(weight=np.zeros((1, 1)), bias=np.array([bias])),
             "cuba": nir.CubaLIF(tau_mem=np.array([2 * DT]), tau_syn=np.array([2 * DT]), r=np.ones(1),
                                 v_leak=np.zeros(1), v_threshold=np.array([threshold]), w_in=np.ones(1)),
             "out": nir.Output(output_type={"output": np.array([1])})}
    return nir.NIRGraph(nodes=nodes, edges=[("in", "aff"), ("aff", "cuba"), ("cuba", "out")],
                        metadata={"spikestack.dt": DT, "spikestack.steps_per_sample": 8})


def test_bias_before_cubalif_hand_computed_membrane():
    """The Affine bias b = 1 is a constant synaptic current; its steady state w_in·b = 1 reaches v through the
    Euler gain dt/τ = 1/2: bias 0.5 per step. Zero weights give peak 1 → e = -6, δ = 2^-7 / 2^6 = 2^-13, so the
    bias is 0.5 / 2^-13 = 4096 = 2048 << 1 (13-bit mantissa). v_t = trunc(v·2048/4096) + 4096: 4096, 6144,
    7168, 7680, 7936, 8064, 8128, 8160 → 8192 = 1.0 (R·w_in·b) in real units."""
    program = api.compile(cuba_bias_graph(), "loihi2")
    pop = program.pop("cuba")
    assert (pop.du, pop.dv, int(pop.bias_mant[0]), int(pop.bias_exp[0])) == (2047, 2048, 2048, 1)
    assert pop.state_unit == 2.0**-13
    fields = lif_fields(pop.du, pop.dv, pop.vth, lif_bias(pop.bias_mant, pop.bias_exp), program.target_spec)
    u, v, trace = np.zeros(1, np.int64), np.zeros(1, np.int64), []
    for _ in range(8):
        u, v, _s = lif_step(u, v, np.zeros(1, np.int64), fields)
        trace.append(int(v[0]))
    assert trace == [4096, 6144, 7168, 7680, 7936, 8064, 8128, 8160]


def test_if_threshold_error_names_the_dt_that_fits():
    """IF with W = 1, r = 1, v_threshold = 1 at dt = 1e-4: w_eff = 1e-4, e = ceil(log2(1e-4/127)) = -20, vth =
    1/2^-21 = 2^21 > 2^17 - 1. The smallest exponent that fits is -15 (1/2^-16 = 65536), reached at
    dt = 2^-15 · 127 / 1 = 127/32768 = 0.003875732421875 s — and compiling at that dt works."""
    nodes = {"in": nir.Input(input_type={"input": np.array([1])}), "w": nir.Linear(weight=np.ones((1, 1))),
             "if": nir.IF(r=np.ones(1), v_threshold=np.ones(1)),
             "out": nir.Output(output_type={"output": np.array([1])})}
    graph = nir.NIRGraph(nodes=nodes, edges=[("in", "w"), ("w", "if"), ("if", "out")])
    with pytest.raises(TargetLimitError) as info:
        api.compile(graph, "loihi2", dt=1e-4)
    message = str(info.value)
    assert "threshold mantissa 2097152 outside 1..131071" in message and "at dt = 0.0001 s" in message
    assert f"dt = {127 / 32768:.6g} s (--dt) would make it fit" in message
    fitted = api.compile(graph, "loihi2", dt=127 / 32768)
    assert fitted.pop("if").vth == 65536


def test_dt_over_tau_error_names_the_dt_that_fits():
    graph = recurrent_graph()
    graph.nodes["lif"] = nir.LIF(tau=np.full(2, 5e-5), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2))
    with pytest.raises(CompileError, match=r"dt/tau = 2 > 1 at dt = 0\.0001 s, tau = 5e-05 s.*dt = 5e-05 s \(--dt\)"):
        api.compile(graph, "loihi2")


def test_rockpool_batch_dim_accepted_with_one_warning():
    graph = recurrent_graph()
    graph.nodes["in"] = nir.Input(input_type={"input": np.array([1, 1])})
    graph.nodes["out"] = nir.Output(output_type={"output": np.array([1, 2])})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        program = api.compile(graph, "loihi2")
    lines = [str(w.message) for w in caught if "batch dimension" in str(w.message)]
    assert lines == ["node 'in': type [1, 1] read as [1] (a leading batch dimension of 1)",
                     "node 'out': type [1, 2] read as [2] (a leading batch dimension of 1)"]
    assert program.host_input.size == 1
    assert api.run(program, one_pulse()).output_spike_counts == [[9, 4]]


def two_layer_recurrent(seed: int = 0, steps: int = 30) -> nir.NIRGraph:
    """Input(6) → Affine → LIF a(8) → Linear → LIF b(4) → Output, with a self-recurrent Linear on a, and b → Delay
    (2 steps) → Linear → a: feedback into an earlier population, through a delay."""
    rng = np.random.default_rng(seed)

    def lif(n: int, tau: float) -> nir.LIF:
        return nir.LIF(tau=np.full(n, tau), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.ones(n))

    nodes = {"in": nir.Input(input_type={"input": np.array([6])}),
             "ff1": nir.Affine(weight=rng.normal(0, 4, (8, 6)), bias=rng.normal(0, 0.5, 8)), "a": lif(8, 5e-4),
             "ff2": nir.Linear(weight=rng.normal(0, 4, (4, 8))), "b": lif(4, 1e-3),
             "self_a": nir.Linear(weight=rng.normal(0, 2, (8, 8))),
             "delay_b": nir.Delay(delay=np.full(4, 2 * DT)), "back_b": nir.Linear(weight=rng.normal(0, 2, (8, 4))),
             "out": nir.Output(output_type={"output": np.array([4])})}
    edges = [("in", "ff1"), ("ff1", "a"), ("a", "ff2"), ("ff2", "b"), ("b", "out"), ("a", "self_a"),
             ("self_a", "a"), ("b", "delay_b"), ("delay_b", "back_b"), ("back_b", "a")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"spikestack.steps_per_sample": steps})


def test_two_layer_recurrent_reference_equals_torch():
    program = api.compile(two_layer_recurrent(), "loihi2")
    assert sorted((p.name, p.src, p.dst) for p in program.projections) == [
        ("back_b", "b", "a"), ("ff1", "in", "a"), ("ff2", "a", "b"), ("self_a", "a", "a")]
    back = next(p for p in program.projections if p.name == "back_b")
    assert np.asarray(back.delay).tolist() == [[2] * 4] * 8
    x = (np.random.default_rng(1).random((3, 30, 6)) < 0.3).astype(np.int64)
    check = api.verify(program, ("reference", "torch"), inputs=x)
    assert check.bit_exact, check.problems
    spikes = check.traces["reference"].spikes
    assert int(spikes["a"].sum()) > 20 and int(spikes["b"].sum()) > 5  # real activity compared


def test_per_node_time_base_and_the_dt_override():
    """Node metadata dt = 5e-4 on the output LIF (τ = 2e-3): dv = round(5e-4/2e-3 · 4096) = 1024, while the hidden
    LIF (τ = 1e-3) keeps the graph's 1e-4: dv = round(0.1 · 4096) = 410. --dt 2e-4 overrides both: 410 → 819,
    1024 → 410. The float reference runs each population at the time base it was compiled with."""
    from tests.conftest import make_lif_graph

    graph = make_lif_graph(seed=1, steps=20)
    graph.nodes["lif_1"].metadata = {"dt": 5e-4}
    program = api.compile(graph)
    assert [(p.name, p.dv) for p in program.populations] == [("lif", 410), ("lif_1", 1024)]
    assert program.report["layer_dt_s"] == {"lif": 1e-4, "lif_1": 5e-4}
    overridden = api.compile(graph, dt=2e-4)
    assert [p.dv for p in overridden.populations] == [819, 410]
    x = (np.random.default_rng(0).random((4, 20, 10)) < 0.2).astype(np.int64)
    check = api.verify(program, ("reference", "torch"), inputs=x, float_source=graph)
    assert check.bit_exact and check.float_agreement["raster_agreement"] >= 0.95
    # at the graph's dt for every layer, the float output layer would stay silent (its counts all 0)
    assert check.float_agreement["output_spike_counts"] == {"compiled": [0, 9, 3, 2], "float": [0, 9, 3, 1]}
    graph.nodes["lif_1"].metadata = {"dt": -1.0}
    with pytest.raises(NIRFormatError, match="node 'lif_1': metadata 'dt' must be one finite number"):
        api.compile(graph)


def test_recurrent_population_counts_events_of_every_projection():
    """Event rule (a neuron is active in a step when an event reaches it over a non-zero synapse, or it spikes),
    summed over the input projection and the recurrent one: the pulse reaches neuron 0 at t=0 over ff; neuron 0's
    spikes (t=1..9) reach neuron 0 and neuron 1 over rec. So neuron 0 is active 10 times, neuron 1 9 times: 19.
    Counting only the last projection into the population (the bug) gave 18."""
    from spikestack.simulators.counts import count_events

    program = api.compile(recurrent_graph(), "loihi2")
    trace = api.run(program, one_pulse(), backend="reference").trace
    counts = count_events(program, trace, update_rule="event")
    assert int(counts.active_updates.sum()) == 19
    assert int(counts.synaptic_ops.sum()) == 1 + 9 * 2  # ff: 1 event × 1 synapse; rec: 9 spikes × 2 synapses
