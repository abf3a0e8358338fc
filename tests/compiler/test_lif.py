"""Foreign NIR LIF graphs: lowering to Lava's fixed-point LIF fields, by hand, and the errors that name the field."""

import nir
import numpy as np
import pytest
from spikestack.compiler.pipeline import compile_graph
from spikestack.runtime import reference

from spikestack.errors import CompileError, TargetLimitError
from tests.conftest import make_lif_graph


def _one_neuron(weight: float, tau: float = 4e-4, v_th: float = 1.0, v_reset: float = 0.0, bias: float = 0.0):
    g = nir.NIRGraph.from_list(
        nir.Input(input_type={"input": np.array([1])}),
        nir.Affine(weight=np.array([[weight]]), bias=np.array([bias])),
        nir.LIF(tau=np.array([tau]), r=np.array([1.0]), v_leak=np.array([0.0]), v_threshold=np.array([v_th]),
                v_reset=np.array([v_reset])),
        nir.Output(output_type={"output": np.array([1])}),
    )
    g.metadata = {"spikestack.steps_per_sample": 6}
    return g


def test_lif_fields_by_hand():
    # dt/τ = 1e-4/4e-4 = 0.25 → dv = 1024. W_eff = 2·0.25 = 0.5 → e = ceil(log2(0.5/127)) = -7 → q = 64, m = 128,
    # one mantissa unit = 2^-8 in v; vth = round(1 / 2^-8) = 256; bias 0.4·0.25 = 0.1 → 0.1 / 2^-14 = 1638.4 → 1638
    p = compile_graph(_one_neuron(2.0, bias=0.4), "loihi1")
    lif = p.populations[0]
    assert (lif.du, lif.dv, lif.vth) == (4095, 1024, 256)
    assert p.projections[0].weight.tolist() == [[128]] and p.projections[0].message_bits == 0
    assert lif.bias_mant.tolist() == [1638] and lif.bias_exp.tolist() == [0]
    assert p.timing == "delayed" and p.report["encodings"]["affine"]["encoding"] == "binary"


def test_one_neuron_trace_by_hand():
    # input event every step; a_in at step t is 128 · x[t-1] (one-step Dense delay), u = a_in << 6 = 8192.
    # v_t = trunc(0.75 · v_{t-1}) + u: t0: 0; t1: 8192; t2: 6144 + 8192 = 14336;
    # t3: 10752 + 8192 = 18944 > vth << 6 = 16384 → spike
    p = compile_graph(_one_neuron(2.0), "loihi1")
    tr = reference.run(p, np.ones((1, 6, 1), np.int64))
    assert tr.spikes["lif"][0, :, 0].tolist() == [0, 0, 0, 1, 0, 0]
    assert tr.readout.tolist() == [[1]]


def test_errors_name_node_and_field():
    with pytest.raises(CompileError, match=r"node 'lif': field 'v_reset' must be 0"):
        compile_graph(_one_neuron(1.0, v_reset=0.5), "loihi1")
    with pytest.raises(CompileError, match=r"node 'lif': dt/tau = 2.5 > 1"):
        compile_graph(_one_neuron(1.0, tau=4e-5), "loihi1")
    g = make_lif_graph()
    g.nodes["lif"].tau[0] = 5e-3
    with pytest.raises(CompileError, match=r"node 'lif': field 'tau' must be the same for all neurons"):
        compile_graph(g, "loihi1")
    with pytest.raises(TargetLimitError, match=r"layer 'lif': threshold mantissa"):
        compile_graph(_one_neuron(1.0, v_th=1e6), "loihi1")


def test_lif_graph_compiles_for_every_target_and_counts_match_neurobench():
    from spikestack.simulators.conventions import neurobench_synops
    from spikestack.simulators.counts import count_events

    for target in ("loihi1", "loihi2", "generic"):
        p = compile_graph(make_lif_graph(hidden=150), target)
        assert sum(c.hi - c.lo for c in p.cores) == 154
    p = compile_graph(make_lif_graph(), "loihi1")
    x = (np.random.default_rng(3).random((3, 40, 10)) < 0.3).astype(np.int64)
    tr = reference.run(p, x)
    assert tr.firing_rate()["lif"] > 0.02
    sops = int(count_events(p, tr).synaptic_ops.sum())
    nb = neurobench_synops(p, tr)
    assert sops == nb["effective_acs"] and nb["effective_macs"] == 0  # binary spikes: ACs, REFERENCE.md §7.1


def test_bad_inputs_for_lif_programs():
    p = compile_graph(make_lif_graph(), "loihi1")
    with pytest.raises(ValueError, match=r"inputs must be \[samples, 40, 10\]"):
        reference.run(p, np.zeros((2, 10)))
    with pytest.raises(ValueError, match="must be 0 or 1"):
        reference.run(p, np.full((1, 40, 10), 2))


def test_cubalif_and_if_fields_by_hand():
    # CubaLIF: dt/τ_syn = 1e-4/5e-4 = 0.2 → du = round(0.2·4096) - 1 = 818; dt/τ_mem = 0.05 → dv = 205
    p = compile_graph(make_lif_graph(second="CubaLIF"), "loihi1")
    out = p.populations[1]
    assert (out.du, out.dv) == (818, 205)
    # IF: no leak → dv = 0, du = 4095; input gain dt·R = 1e-4·3000 = 0.3 per unit weight
    p = compile_graph(make_lif_graph(second="IF"), "loihi1")
    out = p.populations[1]
    assert (out.du, out.dv) == (4095, 0)
    w = make_lif_graph(second="IF").nodes["linear"].weight * 0.3
    step = 2.0 ** p.report["layers"]["linear"]["weight_exp"]
    np.testing.assert_allclose(p.projections[1].weight * step, w, atol=step)


def test_scale_nodes_fold_exactly_into_the_affine():
    """Input → Scale → Affine → Scale → LIF equals Input → Affine(diag(s2)·W·diag(s1), s2·b) → LIF."""
    rng = np.random.default_rng(4)
    w, b = rng.normal(0, 3, (5, 3)), rng.normal(0, 1, 5)
    s1, s2 = np.array([1.0, 2.0, 0.5]), np.full(5, 1.5)
    lif = nir.LIF(tau=np.full(5, 1e-3), r=np.ones(5), v_leak=np.zeros(5), v_threshold=np.ones(5),
                  v_reset=np.zeros(5))
    scaled = nir.NIRGraph.from_list(nir.Input(input_type={"input": np.array([3])}), nir.Scale(scale=s1),
                                    nir.Affine(weight=w, bias=b), nir.Scale(scale=s2), lif,
                                    nir.Output(output_type={"output": np.array([5])}))
    folded = nir.NIRGraph.from_list(nir.Input(input_type={"input": np.array([3])}),
                                    nir.Affine(weight=s2[:, None] * w * s1[None, :], bias=s2 * b), lif,
                                    nir.Output(output_type={"output": np.array([5])}))
    a, c = compile_graph(scaled, "loihi1", steps=10), compile_graph(folded, "loihi1", steps=10)
    np.testing.assert_array_equal(a.projections[0].weight, c.projections[0].weight)
    np.testing.assert_array_equal(a.populations[0].bias_mant, c.populations[0].bias_mant)


def test_delay_li_and_threshold_lower_as_documented():
    delays = np.arange(12) % 4  # hidden neuron j's spikes arrive j mod 4 steps later
    p = compile_graph(make_lif_graph(second="LI", first="Threshold", delay_steps=delays), "loihi1")
    thr, li = p.populations
    assert thr.neuron == "Threshold" and (thr.du, thr.dv) == (4095, 4095)
    assert li.neuron == "LI" and li.vth == (1 << 17) - 1
    np.testing.assert_array_equal(p.projections[1].delay, np.broadcast_to(delays, (4, 12)))
    assert p.projections[0].delay is None


def test_delay_shifts_the_arrival_by_hand():
    """One input neuron, delayed 3 steps: the LIF sees the event at step 1 + 3 instead of 1."""
    def graph(delay: float | None):
        nodes = [nir.Input(input_type={"input": np.array([1])})]
        if delay is not None:
            nodes.append(nir.Delay(delay=np.array([delay])))
        nodes += [nir.Linear(weight=np.array([[40.0]])),
                  nir.LIF(tau=np.array([1e-4]), r=np.array([1.0]), v_leak=np.array([0.0]),
                          v_threshold=np.array([1.0]), v_reset=np.array([0.0])),
                  nir.Output(output_type={"output": np.array([1])})]
        return nir.NIRGraph.from_list(*nodes)

    x = np.zeros((1, 8, 1), np.int64)
    x[0, 0, 0] = 1
    plain = reference.run(compile_graph(graph(None), "loihi1", steps=8), x).spikes["lif"][0, :, 0]
    late = reference.run(compile_graph(graph(3e-4), "loihi1", steps=8), x).spikes["lif"][0, :, 0]
    assert plain.tolist() == [0, 1, 0, 0, 0, 0, 0, 0] and late.tolist() == [0, 0, 0, 0, 1, 0, 0, 0]
    with pytest.raises(TargetLimitError, match=r"synaptic delay 70 steps exceeds 63"):
        compile_graph(graph(70e-4), "loihi1", steps=8)
    with pytest.raises(Exception, match=r"field 'delay' must be a non-negative multiple of dt"):
        compile_graph(graph(0.5e-4), "loihi1", steps=8)


def test_li_readout_is_the_final_membrane():
    p = compile_graph(make_lif_graph(second="LI"), "loihi1")
    x = (np.random.default_rng(0).random((2, 40, 10)) < 0.3).astype(np.int64)
    tr = reference.run(p, x)
    assert tr.spikes["li"].sum() == 0  # a leaky integrator never spikes
    assert tr.readout.shape == (2, 4) and np.any(tr.readout != 0)
    np.testing.assert_array_equal(tr.logits, tr.readout * p.populations[-1].state_unit)
