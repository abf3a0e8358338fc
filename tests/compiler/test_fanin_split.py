"""Fan-in split over cores (compiler/passes/partition.py, issue 17): a host-read projection whose fan-in exceeds
the target's input axons per core compiles to one core per (output slice, input chunk); the executor's result is
the unsplit program's bit for bit, the simulator counts each chunk's synapses on its own core, the host reads every
chunk's partial accumulators, and a destination whose accumulators stay on the chip is refused."""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from spikestack.compiler import artifact
from spikestack.compiler.from_nir import from_nir
from spikestack.compiler.hybrid.compile import compile_hybrid
from spikestack.compiler.passes.fold_amplitudes import fold_amplitudes
from spikestack.compiler.passes.partition import Edge, partition, slice_populations
from spikestack.compiler.passes.quantize import quantize
from spikestack.compiler.targets import load_target
from spikestack.models.data import load_corpus
from spikestack.models.nir.export import model_to_nir
from spikestack.runtime.hybrid.executor import run
from spikestack.simulators.hybrid import count_hybrid, simulate_hybrid

from spikestack.errors import ArtifactError, TargetLimitError
from tests.conftest import make_nir_chain
from tests.simulators.test_hybrid_sim import PROFILE, _core, hand_program, hand_trace

CKPT = Path(__file__).resolve().parents[2] / "models" / "checkpoints"
DOWN = "backbone.blocks.{}.ffn.down.linear"  # spikelm-dec-tiny: 64 outputs, fan-in 256, read by the host
# 32 neurons per core so that outputs span slices too; the stock 4,096 input axons vs 100
WHOLE = replace(load_target("loihi2"), max_neurons=32, name="small_cores")
SPLIT = replace(WHOLE, max_axons_in=100, name="small_cores_axons100")


@functools.cache
def _graph():
    return model_to_nir("spikelm-dec", CKPT / "spikelm-dec-tiny.pt")


@functools.cache
def compiled(target_name: str):
    target = {"small_cores": WHOLE, "small_cores_axons100": SPLIT}[target_name]
    return compile_hybrid(_graph(), target, load_corpus().val_ids[:48].reshape(3, 16))


@functools.cache
def traced(target_name: str):
    return run(compiled(target_name), load_corpus().val_ids[100:124].reshape(2, 12))


# ------------------------------------------------------------------------------------------- partition alone
def _tiny(**limits):
    return replace(load_target("generic"), name="tiny", **limits)


def test_chunks_and_cores_by_hand():
    """src (10 neurons, 2 planes each) → acc (6 outputs), 8 input axons per core: 4 source neurons per chunk →
    ceil(10 / 4) = 3 chunks [0,3) [3,7) [7,10) (6, 8, 6 axons); 4 neurons per core → acc slices [0,3) [3,6);
    6 acc cores, each slice's memory = rows × chunk axons × 8 bits."""
    edges = [Edge(src="src", dst="acc", weight=np.ones((6, 10), np.int16), planes=2)]
    cores = slice_populations([("src", 10, 0), ("acc", 6, 20)], edges, _tiny(max_neurons=4, max_axons_in=8),
                              host_summed={"acc"})
    acc = [(c.lo, c.hi, c.in_lo, c.in_hi, c.axons_in, c.synaptic_memory_bits) for c in cores if c.pop == "acc"]
    assert acc == [(0, 3, 0, 3, 6, 3 * 6 * 8), (0, 3, 3, 7, 8, 3 * 8 * 8), (0, 3, 7, 10, 6, 3 * 6 * 8),
                   (3, 6, 0, 3, 6, 3 * 6 * 8), (3, 6, 3, 7, 8, 3 * 8 * 8), (3, 6, 7, 10, 6, 3 * 6 * 8)]
    assert [(c.lo, c.hi, c.split) for c in cores if c.pop == "src"] == [(0, 3, False), (3, 7, False), (7, 10, False)]
    assert [c.index for c in cores] == list(range(9))


def test_chunks_fit_when_planes_do_not_divide_the_axons():
    """10 inputs × 3 planes into 10 axons: ceil(30 / 10) = 3 chunks would hold 4 inputs (12 axons); chunks of at
    most 10 // 3 = 3 inputs need 4: [0,2) [2,5) [5,8) [8,10) (numpy rounds 2.5 and 7.5 to even)."""
    edges = [Edge(src="host", dst="acc", weight=np.ones((2, 10), np.int16), planes=3)]
    cores = slice_populations([("acc", 2, 30)], edges, _tiny(max_axons_in=10), host_summed={"acc"})
    assert [(c.in_lo, c.in_hi, c.axons_in) for c in cores] == [(0, 2, 6), (2, 5, 9), (5, 8, 9), (8, 10, 6)]


def test_unsplit_cores_are_unchanged_and_chain_destinations_refused():
    edges = [Edge(src="host", dst="acc", weight=np.ones((2, 10), np.int16))]
    whole = slice_populations([("acc", 2, 10)], edges, _tiny(max_axons_in=10), host_summed={"acc"})
    assert [(c.in_lo, c.in_hi, c.split) for c in whole] == [(0, -1, False)]
    edges = [Edge(src="s1", dst="s2", weight=np.ones((2, 10), np.int16))]
    with pytest.raises(TargetLimitError, match=r"layer 's2': fan-in 10 exceeds 8 input axons per core of target tiny "
                                               r"\(over by 2\); a split fan-in must be summed by the host; layer 's1' "
                                               r"feeds chip layer 's2'$"):
        slice_populations([("s1", 10, 0), ("s2", 2, 10)], edges, _tiny(max_axons_in=8))


def test_chain_program_refuses_with_the_reason():
    """A chain program's accumulators all feed chip neurons: its fan-in over the limit is never split."""
    prog = quantize(fold_amplitudes(from_nir(make_nir_chain(hidden=40))), load_target("loihi2"))
    with pytest.raises(TargetLimitError, match=r"^layer 'head': fan-in 40 exceeds 16 input axons per core of target "
                                               r"tiny \(over by 24\); a split fan-in must be summed by the host; "
                                               r"layer 's2' feeds chip layer 'head'$"):
        partition(prog, replace(load_target("loihi2"), max_axons_in=16, name="tiny"))


# ------------------------------------------------------------------------------------ a compiled LM program
def test_compiled_cores_counted_by_hand_and_within_limits():
    whole, split = compiled("small_cores"), compiled("small_cores_axons100")
    for block in (0, 1):
        # fan-in 256 over 100 axons: ceil(256 / 100) = 3 chunks [0,85) [85,171) [171,256); 64 outputs over
        # 32 neurons per core: 2 slices → 2 × 3 cores (unsplit: the 2 slices)
        down = [(c.lo, c.hi, c.in_lo, c.in_hi) for c in split.cores if c.pop == DOWN.format(block)]
        assert down == [(lo, lo + 32, a, b) for lo in (0, 32) for a, b in ((0, 85), (85, 171), (171, 256))]
        assert [(c.lo, c.hi, c.split) for c in whole.cores if c.pop == DOWN.format(block)] == \
            [(0, 32, False), (32, 64, False)]
    assert len(split.cores) == len(whole.cores) + 2 * (6 - 2)
    # every other population is sliced the same
    assert [(c.pop, c.lo, c.hi) for c in split.cores if not c.split] == \
        [(c.pop, c.lo, c.hi) for c in whole.cores if "ffn.down.linear" not in c.pop]
    chunk = next(c for c in split.cores if c.pop == DOWN.format(0) and c.in_lo == 85)
    assert (chunk.axons_in, chunk.synaptic_memory_bits) == (86, 32 * 86 * 8)
    _assert_within_limits(split, SPLIT)


def _assert_within_limits(program, target):
    """Neurons, synaptic memory and input axons per core, and output axons: one per (neuron, destination core
    with one of its synapses) route, counted from the weights and the cores' chunks."""
    out_axons = {c.index: 0 for c in program.cores}
    for la in program.layers:
        if la.projection is None:
            continue
        nzw = np.asarray(la.projection.weight) != 0
        dst = [c for c in program.cores if c.pop == program.projection_target(la)]
        for c in (c for c in program.cores if c.pop == la.name):
            for d in dst:
                lo, hi = d.inputs(la.width)
                rows = nzw[d.lo:d.hi, max(lo, c.lo):min(hi, c.hi)]
                out_axons[c.index] += int(rows.any(0).sum()) * la.planes
    for c in program.cores:
        assert c.hi - c.lo <= target.max_neurons
        assert c.synaptic_memory_bits <= target.synaptic_memory_bits
        assert c.axons_in <= target.max_axons_in
        assert out_axons[c.index] <= target.max_axons_out


def test_reference_executor_bit_identical():
    whole, split = traced("small_cores"), traced("small_cores_axons100")
    assert np.array_equal(whole.logits, split.logits)
    assert whole.payloads.keys() == split.payloads.keys()
    assert all(np.array_equal(whole.payloads[k], split.payloads[k]) for k in whole.payloads)


def test_simulator_counts_against_the_unsplit_program():
    whole_p, split_p = compiled("small_cores"), compiled("small_cores_axons100")
    whole, split = (count_hybrid(p, traced(t).payloads) for p, t in ((whole_p, "small_cores"),
                                                                     (split_p, "small_cores_axons100")))
    assert sum(int(lc.synaptic_ops.sum()) for lc in split.layers) == \
        sum(int(lc.synaptic_ops.sum()) for lc in whole.layers)
    split_cores, whole_cores = ({c.index: c for c in p.cores} for p in (split_p, whole_p))
    for lw, ls in zip(whole.layers, split.layers, strict=True):
        if not ls.name.endswith("ffn.down.spike"):
            assert np.array_equal(lw.synaptic_ops, ls.synaptic_ops)
            continue
        # each slice's unsplit core = the sum of its 3 chunk cores, per call and step; the spiking cores alike
        mine = [split_cores[i] for i in ls.cores]
        theirs = [whole_cores[i] for i in lw.cores]
        for lo in (0, 32):
            chunks = [j for j, c in enumerate(mine) if c.pop.endswith("down.linear") and c.lo == lo]
            (j_whole,) = [j for j, c in enumerate(theirs) if c.pop.endswith("down.linear") and c.lo == lo]
            assert len(chunks) == 3
            assert np.array_equal(ls.synaptic_ops[..., chunks].sum(-1), lw.synaptic_ops[..., j_whole])
            assert np.array_equal(ls.messages_in[..., chunks].sum(-1), lw.messages_in[..., j_whole])
        spiking = [j for j, c in enumerate(mine) if not c.split]
        assert np.array_equal(ls.messages_out[..., spiking], lw.messages_out[..., :len(spiking)])
    # per position and call the host reads 64 outputs from each of the down projections' 3 chunks, not once:
    # 2 blocks × 2 extra chunks × 64 values × positions × calls
    positions, calls = split.positions, split.calls
    assert (positions, calls) == (2 * 12, 4)  # B × L positions, T = 4 calls (spikelm-dec-tiny)
    assert split.host_values_out - whole.host_values_out == 2 * 2 * 64 * positions * calls
    assert split.host_values_in == whole.host_values_in


# ------------------------------------------------------------------------------ hand program (test_hybrid_sim)
def _split_hand_program():
    """hand_program's projection pa ([[2,0],[0,4],[6,8]], 2 inputs) as 2 chunks, one input each, rows 0-2 on a
    core per chunk: chunk 0 on tile (1,0), chunk 1 on (1,1)."""
    prog = hand_program()
    a, _, _, b = prog.cores
    cores = (a, replace(_core(1, "pa", 0, 3, 1, 0), in_lo=0, in_hi=1), replace(_core(2, "pa", 0, 3, 1, 1),
                                                                                in_lo=1, in_hi=2), b)
    return replace(prog, cores=cores)


def test_split_counts_by_hand():
    """Events: call 0 neuron 0 ×2, neuron 1 ×1; call 1 one each. Column 0's synapses are rows 0, 2 (chunk 0's
    core), column 1's rows 1, 2 (chunk 1's core): each event reaches one core with 2 synapses there."""
    c = count_hybrid(_split_hand_program(), hand_trace().payloads)
    a = c.layers[0]
    assert a.synaptic_ops[:, 0].tolist() == [[0, 4, 2], [0, 2, 2]]  # unsplit: [0, 3, 3], [0, 2, 2]
    assert a.messages_out[:, 0].tolist() == [[3, 0, 0], [2, 0, 0]]  # unsplit 6, 4: every event reached both
    assert a.messages_in[:, 0].tolist() == [[0, 2, 1], [0, 1, 1]]
    assert a.hops[:, 0].tolist() == [[2 * 1 + 1 * 2, 0, 0], [1 + 2, 0, 0]]
    # accumulators active when their chunk's input reaches them: call 0 p0 (neuron 0) rows {0,2} on core 1;
    # p1 (both) rows {0,2} on core 1 and {1,2} on core 2; call 1 p1 (both) the same
    assert a.active_updates[:, 0].tolist() == [[4, 4, 2], [4, 2, 2]]
    assert a.neurons.tolist() == [4, 6, 6]
    # host reads pa's 3 outputs from both chunks: (3·2 + 3) values × 2 positions × 2 calls (unsplit: 24)
    assert c.host_values_out == 36 and c.host_values_in == 20
    r = simulate_hybrid(_split_hand_program(), hand_trace(), PROFILE)
    assert r["sops"] == 10 and r["messages"] == 5
    assert r["per_layer"]["a"]["host_values_out_per_token"] == 2 * 3 * 4 / 2


# ------------------------------------------------------------------------------------------------ refusals
def test_chained_destination_over_the_limit_is_refused():
    """spikelm-dec's key.spike projection feeds the chained key_spike layer (fan-in 64): nothing on the chip
    would sum its chunks."""
    target = replace(WHOLE, max_axons_in=48, name="axons48")
    with pytest.raises(TargetLimitError, match=r"layer 'backbone.blocks.0.attn.key_spike': fan-in 64 exceeds 48 "
                                               r"input axons per core of target axons48 \(over by 16\); a split "
                                               r"fan-in must be summed by the host; layer "
                                               r"'backbone.blocks.0.attn.key.spike' feeds chip layer "
                                               r"'backbone.blocks.0.attn.key_spike'"):
        compile_hybrid(_graph(), target, load_corpus().val_ids[:48].reshape(3, 16))


# ------------------------------------------------------------------------------------------------ artifact
def _manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def test_artifact_with_split_cores_round_trips(tmp_path):
    program = compiled("small_cores_axons100")
    artifact.save(program, tmp_path / "a")
    loaded = artifact.load(tmp_path / "a")
    assert loaded.cores == program.cores
    artifact.save(loaded, tmp_path / "b")
    assert (tmp_path / "a" / "manifest.json").read_bytes() == (tmp_path / "b" / "manifest.json").read_bytes()
    entries = _manifest(tmp_path / "a")["cores"]
    split = [e for e in entries if "in_hi" in e]
    assert len(split) == 12 and all(e["pop"].endswith("ffn.down.linear") for e in split)
    assert split[1]["in_lo"] == 85 and split[1]["in_hi"] == 171


def test_unsplit_artifact_keeps_its_core_entries(tmp_path):
    artifact.save(compiled("small_cores"), tmp_path / "a")
    assert all(set(e) == {"index", "pop", "lo", "hi", "synaptic_memory_bits", "axons_in", "chip", "x", "y", "slot"}
               for e in _manifest(tmp_path / "a")["cores"])


def _rehash(folder: Path, edit) -> None:
    m = _manifest(folder)
    m.pop("content_sha256")
    edit(m)
    m["content_sha256"] = hashlib.sha256(artifact._canonical(m)).hexdigest()
    (folder / "manifest.json").write_bytes(artifact._canonical(m))


def _core_of(m: dict, pop_end: str, **match) -> dict:
    return next(e for e in m["cores"] if e["pop"].endswith(pop_end) and all(e.get(k) == v for k, v in match.items()))


@pytest.mark.parametrize("edit, says", [
    (lambda m: _core_of(m, "attn.key_spike").update(in_lo=0, in_hi=10),
     r"in_hi = 10; allowed: -1: the accumulators of 'backbone.blocks.0.attn.key_spike' stay on the chip"),
    (lambda m: _core_of(m, "down.linear", in_lo=171).update(in_hi=257),
     r"in_hi = 257; allowed: in_lo \(171\) < in_hi <= 256, the inputs of 'backbone.blocks.0.ffn.down.linear'"),
    (lambda m: [e.update(in_lo=86) for e in m["cores"] if e["pop"] == DOWN.format(0) and e.get("in_lo") == 85],
     r"fails the compiler's verifier: population 'backbone.blocks.0.ffn.down.linear': input chunks "
     r"\[\(0, 85\), \(86, 171\), \(171, 256\)\] do not tile its 256 inputs"),
    (lambda m: _core_of(m, "down.linear", in_lo=85).update(in_lo=86),
     r"fails the compiler's verifier: population 'backbone.blocks.0.ffn.down.linear': the cores of input chunk "
     r"\[86, 171\] hold \[\(0, 32\)\], not \[0, 64\) once"),
    (lambda m: _core_of(m, "up.linear").update(in_lo=3),
     r"in_lo = 3; allowed: 0 \(in_hi = -1: the core holds every input\)"),
])
def test_artifact_core_chunks_are_checked(tmp_path, edit, says):
    artifact.save(compiled("small_cores_axons100"), tmp_path / "a")
    _rehash(tmp_path / "a", edit)
    with pytest.raises(ArtifactError, match=says):
        artifact.load(tmp_path / "a")
