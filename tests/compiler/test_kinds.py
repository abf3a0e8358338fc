"""The chip-kind registry (compiler/kinds/, runtime/kinds/): it covers every kind the shipped language models
compile to, each kind's numpy step (the definition) gives hand-computed payloads and the torch backend agrees,
and a kind registered from outside runs through the reference executor and the simulator with no other edit."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from spikestack.compiler.hybrid.compile import verify_hybrid
from spikestack.compiler.hybrid.ir import QChipLayer
from spikestack.compiler.kinds import KINDS, kind_of
from spikestack.compiler.targets import load_target
from spikestack.runtime.hybrid.chip import chip_call, payload_peak
from spikestack.runtime.hybrid.torch_chip import STEPS as TORCH_STEPS
from spikestack.runtime.hybrid.torch_chip import TorchChip
from spikestack.runtime.kinds import STEPS, LayerState
from spikestack.runtime.lava.hybrid_chip import LAVA_KINDS

import spikestack
from spikestack.errors import CompileError

CKPT = Path(__file__).resolve().parents[2] / "models" / "checkpoints"
LOIHI2 = load_target("loihi2")
SHIPPED = {"spikegpt": ("spikegpt-char-2x64.pt", False), "spikegpt-dataflow": ("spikegpt-char-2x64.pt", True),
           "spikelm": ("spikelm-dec-tiny.pt", False), "spikellm": ("spikellm-char-tiny.pt", False)}


@pytest.fixture(scope="module")
def programs():
    return {name: spikestack.compile(CKPT / ckpt, target="loihi2", dataflow=dataflow)
            for name, (ckpt, dataflow) in SHIPPED.items()}


def test_registry_covers_every_shipped_kind(programs):
    used = {name: sorted({la.kind for la in p.layers}) for name, p in programs.items()}
    assert used == {"spikegpt": ["lif"], "spikegpt-dataflow": ["lif", "relay"], "spikelm": ["bispike"],
                    "spikellm": ["gif"]}
    kinds = {k for ks in used.values() for k in ks}
    # readout: a chain's accumulators (compiler/chain_hybrid.py), numpy and torch, not yet Lava (docs/roadmap.md,
    # one program, step 1)
    assert kinds | {"readout"} == set(KINDS) == set(STEPS) == set(TORCH_STEPS)
    assert kinds == set(LAVA_KINDS)
    for p in programs.values():
        for la in p.layers:
            assert kind_of(la).name == la.kind


def _layer(kind: str, width: int, **fields) -> QChipLayer:
    return KINDS[kind].layer_type(name=f"toy_{kind}", width=width, input="x", output="y", in_unit=1.0,
                                  payload_unit=1.0, segment=0, **{"steps": 1, **fields})


def _renamed(layer: QChipLayer, kind: str) -> QChipLayer:
    """The same layer under another kind name: a subclass of its class whose `kind` is `kind`."""
    cls = type(f"{kind}Layer", (type(layer),), {"kind": kind, "__slots__": ()})
    return cls(**{f.name: getattr(layer, f.name) for f in dataclasses.fields(layer)})


def _bispike() -> QChipLayer:
    # T = 2, K = 1: θ = 2 at both steps; carry 2 with shift 1 keeps u exactly ((2u + 1) >> 1 = u); a = (3, 5)
    return _layer("bispike", 3, thresholds=np.array([[2], [2]]), carry=np.full((2, 3), 2), carry_shift=1,
                  amplitude=np.array([3, 5]), period=2, levels=1)


def _lif() -> QChipLayer:
    # du = U − 1: u = a_in << 6; dv = U/2: v halves; vth = 1: fires on v > 64
    return _layer("lif", 2, du=4095, dv=2048, vth=1)


def _run_both(layer: QChipLayer, inputs: list[list[int]]) -> tuple[list[np.ndarray], int]:
    """Payloads of consecutive calls from the numpy step, checked equal to the torch backend's, and the
    saturations both count."""
    state, chip = LayerState(), TorchChip()
    chip.target = LOIHI2
    chip.state, chip.sat = {layer.name: {}}, {layer.name: 0}
    got = []
    for call, x in enumerate(inputs):
        out, payloads = chip_call(layer, np.array(x), state, call, LOIHI2)
        pay_torch = TORCH_STEPS[layer.kind](chip, layer, torch.tensor(x), chip.state[layer.name], call)
        np.testing.assert_array_equal(payloads, pay_torch.numpy())
        np.testing.assert_array_equal(out, kind_of(layer).output(payloads))
        got.append(payloads)
    assert chip.sat[layer.name] == state.saturations
    return got, state.saturations


def test_bispike_step_by_hand():
    smax = LOIHI2.state_max
    (p0, p1), sat = _run_both(_bispike(), [[5, -5, 1], [0, 0, smax + 10]])
    np.testing.assert_array_equal(p0, [[3, -3, 0]])  # u = x: s = (1, −1, 0), a_0 = 3
    np.testing.assert_array_equal(p1, [[5, -5, 5]])  # u = (5, −5, 1 + state_max + 10) → clipped, all fire, a_1 = 5
    assert sat == 1


def test_lif_step_by_hand():
    (p0, p1), sat = _run_both(_lif(), [[1, 2], [1, 0]])
    np.testing.assert_array_equal(p0, [[0, 1]])  # v = (64, 128): only 128 > 64; v ← (64, 0)
    np.testing.assert_array_equal(p1, [[1, 0]])  # v = (32 + 64, 0 + 0)
    assert sat == 0


def test_gif_step_by_hand():
    (p,), sat = _run_both(_layer("gif", 4, steps=3, levels=4), [[7, 2, -1, 10]])
    np.testing.assert_array_equal(p, [[3, 2, 0, 3], [3, 0, 0, 3], [1, 0, 0, 3]])  # min(u, 3), u ← u − s
    assert sat == 1  # the negative charge


def test_relay_step_by_hand():
    (p,), sat = _run_both(_layer("relay", 3, levels=5), [[7, -3, -9]])
    np.testing.assert_array_equal(p, [[5, -3, -5]])
    assert sat == 2


def test_kind_facts_by_hand():
    gif, relay = _layer("gif", 4, steps=3, levels=4), _layer("relay", 3, levels=5)
    assert [la.payload_bits for la in (_bispike(), _lif(), gif, relay)] == [4, 0, 2, 3]  # 5 → 3 bits + sign
    assert [gif.max_level, relay.max_level] == [3, 5]
    assert [payload_peak(la) for la in (_bispike(), _lif(), gif, relay)] == [5, 1, 9, 5]
    assert [kind_of(la).steps_per_call(la) for la in (_bispike(), gif)] == [1, 3]
    levels = KINDS["bispike"].spike_levels(_bispike(), np.array([[[3, -3, 0]], [[5, -5, 5]]]))
    np.testing.assert_array_equal(levels, [[[1, -1, 0]], [[1, -1, 1]]])


def test_unregistered_kind_is_named(programs):
    program = programs["spikegpt-dataflow"]
    layers = tuple(_renamed(la, "nope") if la.kind == "relay" else la for la in program.layers)
    with pytest.raises(CompileError, match=r"chip layer '.+': unknown kind 'nope'"):
        verify_hybrid(dataclasses.replace(program, layers=layers))


def test_new_kind_needs_only_registration(programs, monkeypatch):
    """A relay variant, registered from here, runs through the reference executor and the simulator with the
    relay's results; no module outside the two registries knows its name."""
    program = programs["spikegpt-dataflow"]
    ids = np.random.default_rng(0).integers(0, program.vocab_size, size=(1, 12))
    want = spikestack.run(program, ids)
    layers = tuple(_renamed(la, "relay2") if la.kind == "relay" else la for la in program.layers)
    toy = dataclasses.replace(program, layers=layers)
    with pytest.raises(CompileError, match="relay2"):
        spikestack.run(toy, ids)

    calls = []

    def relay2_step(layer, x, state, call, target):
        calls.append(call)
        state.saturations += int((np.abs(x) > layer.levels).sum())
        return np.clip(x, -layer.levels, layer.levels)[None]

    monkeypatch.setitem(KINDS, "relay2", dataclasses.replace(KINDS["relay"], name="relay2"))
    monkeypatch.setitem(STEPS, "relay2", relay2_step)
    verify_hybrid(toy)
    got = spikestack.run(toy, ids)
    assert len(calls) == sum(la.kind == "relay2" for la in toy.layers) * ids.shape[1]
    np.testing.assert_array_equal(got.trace.logits, want.trace.logits)
    assert got.events == want.events and got.saturations == want.saturations
    report = json.dumps(spikestack.simulate(toy, got.trace).to_dict(), sort_keys=True)
    assert '"kind": "relay2"' in report  # the per-layer section names the kind; every number is the relay's
    assert report.replace('"relay2"', '"relay"') == json.dumps(spikestack.simulate(program, want.trace).to_dict(),
                                                               sort_keys=True)
