"""The public API (`spikestack.*`): one front door for the bi-spike chain and the language models.

Each function is checked against the library call it stands for (bit-exact traces, identical reports), and the
two program kinds are checked to answer with the same keys.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import spikestack
from spikestack.errors import SpikestackError

CKPT = Path(__file__).resolve().parent.parent / "models" / "checkpoints"
RUN_KEYS = {"backend", "kind", "family", "tokens", "inputs", "firing_rate", "events", "saturations", "bpc", "text",
            "bits_per_byte", "perplexity"}


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    program = spikestack.compile(CKPT / "bispike-mlp.pt", target="loihi2")
    path = spikestack.save(program, tmp_path_factory.mktemp("api") / "mlp")
    return program, path


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    program = spikestack.compile(CKPT / "spikellm-char-tiny.pt", target="loihi2")
    path = spikestack.save(program, tmp_path_factory.mktemp("api") / "llm")
    return program, path


def test_import_is_light():
    """`import spikestack` must not pull torch, onnx or Lava: the CLI's --help depends on it."""
    code = "import sys, spikestack; print(sorted(m for m in ('torch', 'onnx', 'lava') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert set(spikestack.__all__) >= {"export", "compile", "save", "load", "run", "verify", "simulate", "generate"}


def test_chain_round_trip_is_bit_exact(chain):
    from spikestack.runtime.reference import run as reference_run

    program, path = chain
    loaded = spikestack.load(path)
    a = spikestack.run(program, tokens=48)
    b = spikestack.run(loaded, tokens=48)
    c = spikestack.run(path, tokens=48)  # an artifact path is accepted wherever a program is
    direct = reference_run(program, _chain_ids(program, 48))
    for r in (b, c):
        assert np.array_equal(r.logits, a.logits)
        assert r.trace.spikes.keys() == a.trace.spikes.keys()
        assert all(np.array_equal(r.trace.spikes[k], a.trace.spikes[k]) for k in a.trace.spikes)
    assert np.array_equal(direct.logits, a.logits)
    assert a.to_dict()["tokens"] == 48 and a.to_dict()["inputs"] == "validation text"
    assert 1.5 < a.bpc < 3.5  # the card's compiled BPC is 2.55 on 4096 chars; 48 chars vary around it


def _chain_ids(program, n):
    from spikestack.evaluation import eval_inputs

    return eval_inputs(program, n).inputs


def test_lm_round_trip_is_bit_exact(lm):
    from spikestack.runtime.hybrid.executor import run as hybrid_run

    program, path = lm
    a = spikestack.run(program, tokens=32)
    b = spikestack.run(path, tokens=32)
    assert np.array_equal(a.logits, b.logits)
    assert all(np.array_equal(a.trace.payloads[k], b.trace.payloads[k]) for k in a.trace.payloads)
    direct = hybrid_run(program, _chain_ids(program, 32))
    assert np.array_equal(direct.logits, a.logits)
    # firing rate per chip layer, as for chains: spikes (non-zero payloads) over slots
    name = program.layers[0].name
    p = a.trace.payloads[name]
    assert a.firing_rate[name] == round(float((p != 0).sum()) / p.size, 6)


def test_both_kinds_answer_with_the_same_keys(chain, lm):
    r_chain = spikestack.run(chain[0], tokens=8).to_dict()
    r_lm = spikestack.run(lm[0], tokens=8).to_dict()
    assert set(r_chain) == set(r_lm) == RUN_KEYS
    s_chain = spikestack.simulate(chain[0], tokens=8).to_dict()
    s_lm = spikestack.simulate(lm[0], tokens=8).to_dict()
    assert set(s_chain) == set(s_lm)  # one report layout: calls, per_call, family, time_axis … for both kinds
    for key in ("sops", "energy_j", "energy_per_token_j", "firing_rate", "latency_s_per_step", "cores"):
        assert key in s_chain and key in s_lm
    # a chain's call is one step over every token: T calls of 8 positions, the per-call figures add up
    assert (s_chain["kind"], s_chain["calls"], s_chain["positions_per_call"]) == ("chain", 4, 8)
    assert sum(c["sops"] for c in s_chain["per_call"]) == s_chain["sops"]
    assert s_chain["latency_s_per_call"] == pytest.approx(8 * s_chain["latency_s_per_step"])
    json.dumps(s_chain, allow_nan=False)
    json.dumps(s_lm, allow_nan=False)


def test_simulate_equals_the_simulator(chain):
    from spikestack.runtime.reference import run as reference_run
    from spikestack.simulators.model import simulate as simulate_chain
    from spikestack.simulators.profiles import load_profile

    program, _ = chain
    trace = reference_run(program, _chain_ids(program, 16))
    profile = load_profile("loihi2_assumed")
    expected = simulate_chain(program, trace, profile)
    report = spikestack.simulate(program, trace=trace, profile="loihi2_assumed")
    assert report.to_dict() == json.loads(json.dumps(expected))
    assert report.sops == expected["sops"] and report.energy_j == expected["energy_j"]
    assert report.firing_rate == expected["firing_rate"]


def test_verify_both_kinds(chain, lm):
    v = spikestack.verify(chain[0], backends=("torch", "reference"), tokens=4)
    assert v.bit_exact and v.layers == 3 and v.tokens == 4
    w = spikestack.verify(lm[1], backends=("reference", "torch"), tokens=4)
    assert w.bit_exact and w.layers == len(lm[0].layers)
    assert w.to_dict()["problems"] == []


def test_generate_both_kinds(chain, lm):
    text = spikestack.generate(chain[0], "The ", 6)
    assert text.startswith("The ") and len(text) == 10
    text = spikestack.generate(lm[1], "def ", 5)
    assert text.startswith("def ") and len(text) == 9
    with pytest.raises(SpikestackError, match="unknown"):
        spikestack.generate(chain[0], "Th\u00e9", 2)  # both kinds refuse characters outside the alphabet


def test_export_refuses_to_overwrite(tmp_path):
    out = tmp_path / "m.nir"
    spikestack.export(CKPT / "bispike-mlp.pt", out)
    before = out.read_bytes()
    with pytest.raises(SpikestackError, match="exists"):
        spikestack.export(CKPT / "bispike-mlp.pt", out)
    spikestack.export(CKPT / "bispike-mlp.pt", out, force=True)
    assert out.read_bytes() == before  # same checkpoint → same bytes
    assert [p.name for p in tmp_path.iterdir()] == ["m.nir"]  # no temp file left


def test_dump_ir_writes_every_pass(tmp_path):
    spikestack.compile(CKPT / "bispike-mlp.pt", dump_ir=tmp_path / "ir")
    names = sorted(p.name for p in (tmp_path / "ir").iterdir())
    assert names == ["000_from_nir.json", "001_check_neurons.json", "002_fold_amplitudes.json", "003_quantize.json",
                     "004_lower_spikes.json", "005_partition.json", "006_place.json", "007_cut_host.json"]
    placed = json.loads((tmp_path / "ir" / "006_place.json").read_text())
    assert placed["_type"] == "Program" and len(placed["cores"]) == 4


def test_bad_backend_is_one_clear_error(chain):
    with pytest.raises(SpikestackError, match="backend 'gpu'"):
        spikestack.run(chain[0], backend="gpu")
    with pytest.raises(SpikestackError, match="two or more"):
        spikestack.verify(chain[0], backends=("reference",))
