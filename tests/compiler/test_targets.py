"""Targets as data (compiler/targets.py): the program carries the whole target it was compiled for, the artifact
embeds it, and the widths and shifts of the fixed-point path come from it (issue #12)."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from spikestack.compiler import artifact
from spikestack.compiler.pipeline import compile_graph
from spikestack.compiler.targets import TARGET_DIR, load_target, target_of
from spikestack.runtime import reference
from spikestack.simulators.model import simulate
from spikestack.simulators.profiles import load_profile

from spikestack.errors import CompileError
from tests.compiler.test_lif import _one_neuron
from tests.conftest import make_nir_chain


def _custom_target(folder: Path, name: str, edits: dict[str, str], base: str = "generic") -> Path:
    """A copy of a shipped target file with `name` and some `key = value` lines replaced."""
    text = (TARGET_DIR / f"{base}.toml").read_text()
    text = text.replace(f'name = "{base}"', f'name = "{name}"')
    for old, new in edits.items():
        assert old in text, old
        text = text.replace(old, new)
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


def test_shipped_targets_declare_lava_widths_with_original_sources():
    for name in ("generic", "loihi1", "loihi2"):
        t = load_target(name)
        assert (t.state_bits, t.decay_bits, t.activation_shift) == (24, 12, 6)
        assert (t.state_max, t.decay_unity, t.activation_max) == ((1 << 23) - 1, 4096, (1 << 17) - 1)
        text = (TARGET_DIR / f"{name}.toml").read_text()
        assert "REFERENCE.md" not in text and "lava/proc/lif/models.py" in text


def test_activation_shift_needs_a_source_and_a_range(tmp_path):
    path = _custom_target(tmp_path, "nosource", {'source_activation_shift = "Lava fixed_pt LIF: act_shift': 'x = "'})
    with pytest.raises(CompileError, match=r"\[numerics\] activation_shift has no source_activation_shift line"):
        load_target(str(path))
    path = _custom_target(tmp_path, "wide", {"state_bits = 24": "state_bits = 10",
                                             "activation_shift = 6": "activation_shift = 9"})
    with pytest.raises(CompileError, match=r"wide.toml: \[numerics\] activation_shift = 9 leaves no threshold bits "
                                           r"in the 10-bit state \(at most state_bits - 2 = 8\)$"):
        load_target(str(path))


def test_custom_target_travels_inside_the_artifact(tmp_path):
    """Compiled for a user's .toml, saved, the .toml deleted: the artifact still loads, runs and simulates with
    that target (name, default profile, 16-neuron cores), not with anything looked up by name."""
    path = _custom_target(tmp_path, "mychip", {"max_neurons = 64": "max_neurons = 16",
                                               'default_profile = "loihi1_sanafe_calibrated"':
                                               'default_profile = "horowitz45_int8"'})
    graph = make_nir_chain(hidden=40)  # populations of 6 (input), 40 and 7 (readout) neurons
    program = compile_graph(graph, str(path))
    art = artifact.save(program, tmp_path / "art")
    path.unlink()

    loaded = artifact.load(art)
    spec = target_of(loaded)
    assert spec == program.target_spec and spec.path == "" and program.target_spec.path == str(path)
    assert (spec.name, spec.max_neurons, spec.default_profile) == ("mychip", 16, "horowitz45_int8")
    # 40 neurons over ceil(40 / 16) = 3 balanced cores (partition.py): 13, 14, 13
    assert [(c.pop, c.hi - c.lo) for c in loaded.cores] == [("s1", 6), ("s2", 13), ("s2", 14), ("s2", 13), ("head", 7)]

    ids = np.random.default_rng(1).integers(0, 11, size=(5, 2))
    report = simulate(loaded, reference.run(loaded, ids), load_profile(spec.default_profile))
    assert (report["target"], report["profile"], report["cores"]) == ("mychip", "horowitz45_int8", 5)
    generic = compile_graph(graph, "generic")  # 64-neuron cores: one per population
    assert len(generic.cores) == 3


def test_activation_shift_changes_the_lif_integers_by_hand(tmp_path):
    """One LIF neuron (test_lif.py: W_eff = 0.5, dt/τ = 0.25, θ = 1, bias 0.1 per step): the weight mantissa
    (128, one unit = 2^-8 in v) and vth = 256 do not depend on the shift, one v LSB does: 2^-8 / 2^A. So the
    bias is 0.1 · 2^14 = 1638.4 → 1638 with A = 6 and 0.1 · 2^12 = 409.6 → 410 with A = 4; LI neurons get the
    largest threshold 2^(23 - A) - 1. With 10-bit decays, dv = 0.25 · 1024 = 256 and du = 1023."""
    lava = compile_graph(_one_neuron(2.0, bias=0.4), "loihi1").populations[0]
    shift4 = load_target(str(_custom_target(tmp_path, "shift4", {"activation_shift = 6": "activation_shift = 4"},
                                            base="loihi1")))
    small = compile_graph(_one_neuron(2.0, bias=0.4), shift4)
    lif = small.populations[0]
    assert (lava.du, lava.dv, lava.vth, lava.bias_mant.tolist(), lava.state_unit) == (4095, 1024, 256, [1638], 2**-14)
    assert (lif.du, lif.dv, lif.vth, lif.bias_mant.tolist(), lif.state_unit) == (4095, 1024, 256, [410], 2**-12)
    assert small.projections[0].weight.tolist() == [[128]] and target_of(small) == shift4

    decay10 = replace(shift4, name="decay10", decay_bits=10)
    lif10 = compile_graph(_one_neuron(2.0, bias=0.4), decay10).populations[0]
    assert (lif10.du, lif10.dv) == (1023, 256)

    from tests.conftest import make_lif_graph

    li = [compile_graph(make_lif_graph(second="LI"), t).populations[1] for t in ("loihi1", shift4)]
    assert [p.vth for p in li] == [(1 << 17) - 1, (1 << 19) - 1]


def test_shift_scales_the_reference_trace_by_hand(tmp_path):
    """Input event every step through weight 128 (test_lif.py's trace, A = 6: u = 8192, threshold 16384). With
    A = 4: u = 128 << 4 = 2048, threshold 256 << 4 = 4096; v_t = trunc(0.75 · v_{t-1}) + u: t1 2048, t2 1536 +
    2048 = 3584, t3 2688 + 2048 = 4736 > 4096 → spike at t3, v = 0; t4 2048; t5 3584."""
    shift4 = replace(load_target("loihi1"), name="shift4", activation_shift=4)
    program = compile_graph(_one_neuron(2.0), shift4)
    trace = reference.run(program, np.ones((1, 6, 1), np.int64))
    assert trace.spikes["lif"][0, :, 0].tolist() == [0, 0, 0, 1, 0, 0]
    lava = reference.run(compile_graph(_one_neuron(2.0), "loihi1"), np.ones((1, 6, 1), np.int64))
    assert lava.spikes["lif"][0, :, 0].tolist() == [0, 0, 0, 1, 0, 0]  # the same times, states 4× larger
