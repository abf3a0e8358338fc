"""runtime/hybrid: chip semantics by hand, torch = reference bit for bit, compiled vs float model, generation, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from spikestack.compiler.hybrid.ir import GIFLayer, LIFLayer, QChipLayer, QChipProjection
from spikestack.compiler.ir import frozen_array
from spikestack.compiler.targets import load_target
from spikestack.models.data import load_corpus
from spikestack.models.nir.to_torch import nir_to_module, run_tokens
from spikestack.runtime.hybrid.chip import LayerState, chip_call
from spikestack.runtime.hybrid.executor import run
from spikestack.runtime.hybrid.torch_chip import TorchChip
from spikestack.runtime.hybrid.verify import first_divergence, generate_ids, verify

from spikestack.cli import main
from spikestack.evaluation import bpc as hybrid_bpc
from tests.compiler.test_hybrid import CKPT, FAMILIES, graph, program

LOIHI2 = load_target("loihi2")


def _gif_layer(weight: np.ndarray, groups: np.ndarray, levels: int = 16, steps: int = 2) -> QChipLayer:
    proj = QChipProjection(name="lin", weight=frozen_array(weight.astype(np.int16)), unit=1.0, message_bits=4,
                           groups=frozen_array(groups.astype(np.int8)), n_groups=int(groups.max()) + 1)
    return GIFLayer(name="gif", width=weight.shape[1], steps=steps, input="in", output="out",
                    in_unit=1.0, payload_unit=1.0, segment=0, levels=levels, projection=proj)


def test_gif_by_hand():
    """L = 16, K = 2: charge 20 → events 15, 5; charge 3 → 3, 0; accumulators per group by hand."""
    w = np.array([[2, 4], [-6, 8]])
    layer = _gif_layer(w, np.array([0, 1]))
    out, payloads = chip_call(layer, np.array([[20, 3]]), LayerState(), 0, LOIHI2)
    assert payloads[:, 0].tolist() == [[15, 3], [5, 0]]
    # group 0 holds input 0 (charge 20), group 1 input 1 (charge 3): acc[g, o] = w[o, i_g] · charge_i
    assert out[0].tolist() == [[40, -120], [12, 24]]


def _lif_layer(vth: int) -> QChipLayer:
    return LIFLayer(name="lif", width=1, steps=1, input="in", output="out", in_unit=1.0,
                    payload_unit=1.0, segment=0, du=4095, dv=2048, vth=vth)


def test_lif_by_hand():
    """du = 4095, dv = 2048: u = a·64, v ← trunc(v/2) + u; spike when v > vth·64, then v = 0."""
    layer, state = _lif_layer(vth=10), LayerState()
    spikes = [int(chip_call(layer, np.array([a]), state, t, LOIHI2)[1][0, 0]) for t, a in enumerate([6, 6, 6, 1])]
    # v: 384 → 192 + 384 = 576 → 288 + 384 = 672 > 640: spike, v = 0 → 64
    assert spikes == [0, 0, 1, 0]
    assert int(state.v[0]) == 64


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-5, 40), min_size=4, max_size=4), st.integers(1, 4), st.sampled_from([2, 4, 16]))
def test_torch_chip_equals_reference_gif(charges, steps, levels):
    layer = _gif_layer(np.array([[2, -4, 6, 8], [10, 0, -2, 254]]), np.array([0, 1, 1, 0]), levels, steps)
    x = np.array([charges])
    ref_out, ref_pay = chip_call(layer, x, LayerState(), 0, LOIHI2)
    chip = TorchChip()
    chip.state, chip.sat = {"gif": {}}, {"gif": 0}
    outs, pays = chip.segment([layer], {"in": x}, 0)
    assert np.array_equal(outs["out"], ref_out) and np.array_equal(pays["gif"], ref_pay)
    # the charge is conserved across steps (clipped at K(L-1) by the host)
    assert np.array_equal(ref_pay.sum(0)[0], np.minimum(np.maximum(x[0], 0), steps * (levels - 1)))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_torch_and_reference_bit_exact(family):
    ids = load_corpus().val_ids[300:316].reshape(2, 8)
    traces, problems = verify(program(family), ids, ("torch", "reference"))
    assert problems == []
    assert traces["reference"].events() > 0


def test_first_divergence_names_layer_call_step_position_neuron():
    prog = program("spikegpt")
    ids = load_corpus().val_ids[:5][None]
    a = run(prog, ids)
    b = run(prog, ids)
    layer = prog.layers[1].name
    b.payloads[layer] = b.payloads[layer].copy()
    b.payloads[layer][3, 0, 0, 7] += 1
    line = first_divergence(prog, a, b, ("reference", "lava"))
    value = int(a.payloads[layer][3, 0, 0, 7])
    assert line == f"layer {layer}, call 3, step 0, position (0,), neuron 7: reference={value} lava={value + 1}"


def _float_logits(family: str, ids: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return run_tokens(nir_to_module(graph(family), dtype=torch.float64), torch.as_tensor(ids)).numpy()


@pytest.mark.parametrize("family, min_agree, max_bpc_gap", [
    ("spikegpt", 0.95, 0.05), ("spikellm", 0.8, 0.2), ("spikelm-dec", 0.75, 0.2)])
def test_compiled_tracks_float_model(family, min_agree, max_bpc_gap):
    """Quantization may flip some argmaxes; the next-token loss stays within the given gap (bits per char)."""
    corpus = load_corpus()
    ids = corpus.val_ids[2000:2000 + 3 * 33].reshape(3, 33)
    ref, got = _float_logits(family, ids[:, :-1]), run(program(family), ids[:, :-1]).logits

    def bpc(logits):
        return hybrid_bpc(logits, ids[:, 1:])

    assert (ref.argmax(-1) == got.argmax(-1)).mean() >= min_agree
    assert bpc(got) - bpc(ref) <= max_bpc_gap


@pytest.mark.parametrize("family", ["spikegpt", "spikellm", "spikelm-dec"])
def test_generation_matches_float_greedy_until_a_close_call(family):
    """Greedy compiled text equals the float model's until the first token where the float model's top-2 margin is
    small (quantization may change such an argmax); the generated prefix before that point is identical."""
    corpus = load_corpus()
    prompt = list(corpus.val_ids[:12])
    got = generate_ids(program(family), prompt, 12)
    want = list(prompt)
    for _ in range(12):
        want.append(int(_float_logits(family, np.asarray(want)[None])[0, -1].argmax()))
    if got != want:
        k = next(i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b)
        logits = np.sort(_float_logits(family, np.asarray(want[:k])[None])[0, -1])
        assert logits[-1] - logits[-2] < 1.0, f"divergence at {k} with a float margin of {logits[-1] - logits[-2]}"
    assert len(got) == 24


def test_cli_end_to_end(tmp_path, capsys):
    art = tmp_path / "gpt.art"
    assert main(["compile", str(CKPT / "spikegpt-char-2x64.pt"), "-o", str(art)]) == 0
    assert "4 chip layers, 5 host stages (spikegpt)" in capsys.readouterr().out
    assert main(["inspect", str(art)]) == 0
    text = capsys.readouterr().out
    assert "blocks.1.lif2" in text and "per-core load: neurons max 64" in text and "KV-cache" not in text
    assert main(["verify", str(art), "--backends", "torch,reference", "--tokens", "8"]) == 0
    assert capsys.readouterr().out.startswith("bit-exact: yes (torch, reference; spikegpt")
    assert main(["run", str(art), "--tokens", "16", "--trace", str(tmp_path / "t.npz")]) == 0
    assert '"bpc"' in capsys.readouterr().out
    assert "payload:blocks.0.lif1" in np.load(tmp_path / "t.npz").files
    assert main(["run", str(art), "--tokens", "4", "--trace", str(tmp_path / "t.nir")]) == 0
    capsys.readouterr()
    import nir

    data = nir.read_data(str(tmp_path / "t.nir"))
    events = data.nodes["blocks.0.lif1"].observables["spikes"]
    assert events.n_neurons == 64 and events.idx.shape[0] == 1  # one SpikeGPT sequence
    assert np.isfinite(events.time).sum() == int((run(program("spikegpt"), load_corpus().val_ids[:4][None])
                                                  .payloads["blocks.0.lif1"] != 0).sum())
    assert main(["generate", str(art), "--prompt", "The ", "--tokens", "5"]) == 0
    assert capsys.readouterr().out.startswith("The ")
    assert main(["simulate", str(art), "--tokens", "8", "--json"]) == 0
    sim = json.loads(capsys.readouterr().out)
    assert sim["kind"] == "hybrid" and sim["tokens"] == 8 and sim["energy_per_token_j"] > 0


def test_cli_dataflow_and_dump(tmp_path, capsys):
    art = tmp_path / "df.art"
    assert main(["compile", str(CKPT / "spikegpt-char-2x64.pt"), "--dataflow", "--calibrate", "0",
                 "--dump-after", "cut", "-o", str(art)]) == 0
    assert "15 chip layers" in capsys.readouterr().out
    cut = json.loads((tmp_path / "df.art.dump" / "000_cut.json").read_text())
    assert sum(la["kind"] == "relay" for la in cut["layers"]) == 11
    assert main(["verify", str(art), "--backends", "torch,reference", "--tokens", "6"]) == 0
    assert main(["compile", str(CKPT / "spikellm-char-tiny.pt"), "--dataflow", "-o", str(tmp_path / "x")]) == 2
    assert "nothing to fold" in capsys.readouterr().err


def test_cli_user_errors(tmp_path, capsys):
    assert main(["compile", str(CKPT / "spikelm-dec-tiny.pt"), "--target", "loihi1", "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs programmable neurons" in err
    assert not (tmp_path / "x").exists()  # nothing half-written
    art = tmp_path / "g.art"
    assert main(["compile", str(CKPT / "spikegpt-char-2x64.pt"), "-o", str(art)]) == 0
    assert main(["generate", str(art), "--prompt", "\u00e9", "--tokens", "2"]) == 2
    assert "unknown" in capsys.readouterr().err


def test_calibration_report_per_layer():
    """Every chip layer is reported; SpikeGPT's first LIF sees the float model's exact input range, so its spikes
    are identical on these windows; errors stay bounded through the stack."""
    from spikestack.runtime.hybrid.calibration import layer_errors

    ids = load_corpus().val_ids[20_000:20_064].reshape(2, 32)
    report = layer_errors(graph("spikegpt"), program("spikegpt"), ids)
    assert list(report) == [la.name for la in program("spikegpt").layers]
    assert report["blocks.0.lif1"]["max_abs"] == 0.0
    assert all(e["rel_mean"] < 0.05 and e["saturations"] == 0 for e in report.values())


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-3, 3, allow_nan=False), min_size=1, max_size=12))
def test_chip_lif_tracks_spikegpt_lif(xs):
    """The compiled LIF (Lava fixed_pt fields) fires as SpikeGPT's H = V + (X − V)/2, S = [H ≥ 1], except where
    H lies within the quantization band of the threshold (input rounding, v/2 truncation, the 63-LSB ≥ shift)."""
    prog = program("spikegpt")
    layer = prog.layers[0]
    unit_v = layer.in_unit / 128  # in_unit = 64 δ_v τ/R, τ = 2, R = 1
    state, v_float = LayerState(), 0.0
    for t, x in enumerate(xs):
        h = v_float + (x - v_float) / 2
        s_float = h >= 1.0
        v_float = 0.0 if s_float else h
        a_in = int(np.clip(np.round(x / layer.in_unit), -(2**17 - 1), 2**17 - 1))
        s_chip = bool(chip_call(layer, np.full(layer.width, a_in), state, t, prog.target_spec)[1][0, 0])
        if s_chip != s_float:
            assert abs(h - 1.0) < (64 + 2 * t + 2) * unit_v + layer.in_unit  # disagreement only at the threshold
            break  # the two states have diverged by a reset: nothing more to compare


def test_cli_sweep_language_model(tmp_path, capsys):
    """A language-model checkpoint sweeps like a chain: Loihi 1 rows carry the limit, Loihi 2 rows the numbers."""
    out = tmp_path / "sweep.json"
    assert main(["sweep", str(CKPT / "spikellm-char-tiny.pt"), "--targets", "loihi1,loihi2", "--tokens", "16",
                 "--workers", "1", "-o", str(out)]) == 0
    rows = {r["target"]: r for r in json.loads(out.read_text())}
    assert "needs programmable neurons" in rows["loihi1"]["error"] and rows["loihi1"]["cores"] is None
    assert rows["loihi2"]["error"] == "" and rows["loihi2"]["cores"] == 28 and rows["loihi2"]["energy_per_token_j"] > 0


@pytest.mark.parametrize("family", ["spikellm", "spikelm-dec"])
def test_kv_cache_decoding_matches_the_sequence_program(tmp_path, family):
    """The decode program (one position per call, attention on cached keys and values; SpikeLM keeps one cache per
    spiking step) gives the sequence program's logits up to float32 op order, the same greedy text, and survives
    the artifact round trip; SpikeGPT (recurrent) and the SpikeLM encoder (bidirectional) have none."""
    from dataclasses import replace

    from spikestack.compiler import artifact
    from spikestack.runtime.hybrid.executor import Session

    prog = program(family)
    assert len(prog.decode_stages) == len(prog.stages) and len(prog.decode_states) == 4  # k, v × 2 layers
    ids = load_corpus().val_ids[100:112]
    session = Session(prog)
    decoded = np.stack([session.decode_token(np.array([t])) for t in ids], 1)
    np.testing.assert_allclose(decoded, Session(prog).sequence(ids[None]), atol=1e-4)
    first_cache = prog.decode_states[0].name
    assert all(c[first_cache].shape == (1, 12, 64) for c in session.step_caches)
    assert len(session.step_caches) == prog.steps_per_token
    prompt = list(load_corpus().val_ids[:12])
    assert generate_ids(prog, prompt, 10) == generate_ids(replace(prog, decode_stages=(), decode_states=()), prompt, 10)
    loaded = artifact.load(artifact.save(prog, tmp_path / "llm"))
    assert [s.onnx for s in loaded.decode_stages] == [s.onnx for s in prog.decode_stages]
    assert not program("spikegpt").decode_stages and not program("spikelm-enc").decode_stages


def test_cli_refuses_bad_counts_and_targets(tmp_path, capsys):
    """Review findings: no traceback and no data loss for ordinary mistakes."""
    art = tmp_path / "g.art"
    assert main(["compile", str(CKPT / "spikegpt-char-2x64.pt"), "--calibrate", "0", "-o", str(art)]) == 0
    with pytest.raises(SystemExit):  # argparse: one usage line, exit 2
        main(["run", str(art), "--tokens", "0"])
    assert main(["run", str(art), "--tokens", "3000000"]) == 2
    assert "validation text, which has" in capsys.readouterr().err
    assert main(["run", str(art), "--tokens", "4", "--trace", str(tmp_path / "no" / "t.npz")]) == 2
    assert "folder does not exist" in capsys.readouterr().err
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep me")
    assert main(["compile", str(CKPT / "spikegpt-char-2x64.pt"), "--calibrate", "0", "-o", str(user)]) == 2
    assert (user / "notes.txt").read_text() == "keep me"  # never replaced
    enc = tmp_path / "enc.art"
    assert main(["compile", str(CKPT / "spikelm-enc-tiny.pt"), "--calibrate", "0", "-o", str(enc)]) == 0
    assert main(["generate", str(enc), "--prompt", "def ", "--tokens", "3"]) == 2
    assert "bidirectional" in capsys.readouterr().err
