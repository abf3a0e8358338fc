"""Export → write → read → import equals the original model, bit for bit in float64, for every shipped family."""

from __future__ import annotations

from pathlib import Path

import nir
import numpy as np
import pytest
import torch
from spikestack.models.nir.export import export_any
from spikestack.models.nir.to_torch import nir_to_module, run_steps, run_tokens

from spikestack.errors import SpikestackError

CHECKPOINTS = Path(__file__).resolve().parents[2] / "models" / "checkpoints"


def _round_trip(name: str, tmp_path: Path) -> tuple[nir.NIRGraph, torch.nn.Module]:
    path = tmp_path / f"{name}.nir"
    graph = export_any(CHECKPOINTS / f"{name}.pt", path)
    return graph, nir_to_module(path, dtype=torch.float64)


def _ids(vocab: int, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(0).integers(0, vocab, shape))


@pytest.mark.parametrize("name", ["bispike-mlp", "bispike-mlp-ann"])
def test_bispike_mlp_round_trip_is_exact(name, tmp_path):
    from spikestack.models.bispike_mlp import load_checkpoint

    graph, module = _round_trip(name, tmp_path)
    model = load_checkpoint(CHECKPOINTS / f"{name}.pt")[0].double()
    ids = _ids(model.cfg.vocab, (64, model.cfg.context))
    steps = int(graph.metadata["spikestack.steps_per_token"])
    with torch.no_grad():
        assert torch.equal(run_steps(module, [ids] * steps).mean(0), model(ids))


@pytest.mark.parametrize("name", ["spikegpt-char-2x64", "spikegpt-char-2x64-ann"])
def test_spikegpt_round_trip_is_exact(name, tmp_path):
    from spikestack.models.spikegpt import load_checkpoint

    _, module = _round_trip(name, tmp_path)
    model = load_checkpoint(CHECKPOINTS / f"{name}.pt")[0].double()
    ids = _ids(model.cfg.vocab_size, (4, 24))
    with torch.no_grad():
        out = run_tokens(module, ids)  # one token per call, by the graph's time-axis metadata
        state, expected = model.initial_state(4), []
        for t in range(ids.shape[1]):
            logits, state = model.step(ids[:, t], state)
            expected.append(logits)
        assert torch.equal(out, torch.stack(expected, 1))  # the recurrent form, same op order
        assert torch.equal(out, model(ids))  # and the parallel (training) form


def test_spikegpt_lif_is_standard_nir_with_its_threshold_test(tmp_path):
    graph, _ = _round_trip("spikegpt-char-2x64", tmp_path)
    back = nir.read(str(tmp_path / "spikegpt-char-2x64.nir"))
    lif = back.nodes["blocks.0.lif1"]
    assert type(lif) is nir.LIF and type(back.nodes["blocks.1.att_shift"]) is nir.Delay
    for field, value in {"tau": 2.0, "r": 1.0, "v_leak": 0.0, "v_threshold": 1.0, "v_reset": 0.0}.items():
        np.testing.assert_array_equal(getattr(lif, field), np.full(64, value))
    assert lif.metadata["spikestack.threshold_test"] == ">="
    assert graph.nodes["blocks.0.att_wkv"].operands == "blocks.0.att_key,blocks.0.att_value"


def test_spikellm_round_trip_is_exact_in_quant_mode(tmp_path):
    from spikestack.models.spikellm import SpikeMode, load_checkpoint

    graph, module = _round_trip("spikellm-char-tiny", tmp_path)
    model = load_checkpoint(CHECKPOINTS / "spikellm-char-tiny.pt")[0].double()
    ids = _ids(model.cfg.vocab_size, (3, 40))
    with torch.no_grad():
        out = run_tokens(module, ids)  # the whole sequence in one call
        assert torch.equal(out, model(ids))
        # SPIKE mode sums the K events through W before scaling: equal up to float rounding only
        torch.testing.assert_close(out, model.set_mode(SpikeMode.SPIKE)(ids), rtol=0, atol=1e-12)
    gifs = [n for n in graph.nodes.values() if type(n).__name__ == "GIF"]
    assert len(gifs) == 7 * model.cfg.n_layers and {g.steps for g in gifs} == {2}


def test_export_any_rejects_an_unknown_family(tmp_path):
    path = tmp_path / "odd.pt"
    torch.save({"family": "mystery", "config": {}, "state_dict": {}, "vocab": ""}, path)
    with pytest.raises(SpikestackError, match="unknown checkpoint family 'mystery'"):
        export_any(path, tmp_path / "odd.nir")


def _without_head(graph: nir.NIRGraph, head: str, width: int) -> nir.NIRGraph:
    """The same graph ending at the head's input: the hidden state the model averages over steps."""
    nodes = {n: node for n, node in graph.nodes.items() if n != head}
    nodes["output"] = nir.Output(output_type={"output": np.array([width])})
    edges = [(a, "output" if b == head else b) for a, b in graph.edges if a != head]
    return nir.NIRGraph(nodes=nodes, edges=edges)


@pytest.mark.parametrize("name", ["spikelm-dec-tiny", "spikelm-dec-tiny-ann"])
def test_spikelm_decoder_round_trip(name, tmp_path):
    spikelm = pytest.importorskip("spikestack.models.spikelm")
    graph, module = _round_trip(name, tmp_path)
    model = spikelm.load_checkpoint(CHECKPOINTS / f"{name}.pt")[0].double()
    ids = _ids(model.cfg.vocab, (3, model.cfg.context))
    steps = int(graph.metadata["spikestack.steps_per_token"])
    hidden = nir_to_module(_without_head(graph, "lm_head", model.cfg.d_model), dtype=torch.float64)
    with torch.no_grad():
        # bit-exact up to the head; the model averages before its affine head, the graph after: rounding only
        assert torch.equal(run_steps(hidden, [ids[..., None]] * steps).mean(0), model.backbone(ids))
        torch.testing.assert_close(run_steps(module, [ids[..., None]] * steps).mean(0), model(ids), rtol=0,
                                   atol=1e-12)


def test_spikelm_encoder_exports_its_mlm_head():
    spikelm = pytest.importorskip("spikestack.models.spikelm")
    from spikestack.models.nir.export_spikelm import spikelm_to_nir

    torch.manual_seed(0)
    cfg = spikelm.SpikeLMConfig(vocab=11, context=8, d_model=8, heads=2, layers=1, ffn=16)
    model = spikelm.SpikeLMEncoder(cfg).double().eval()
    graph = spikelm_to_nir(model)
    assert graph.metadata["spikestack.omitted"].startswith("cls_head")
    ids = _ids(cfg.vocab + 1, (2, cfg.context))  # the [MASK] id is vocab
    module = nir_to_module(graph, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(run_steps(module, [ids[..., None]] * cfg.steps).mean(0), model(ids)[0], rtol=0,
                                   atol=1e-12)


@pytest.mark.parametrize("path", sorted(CHECKPOINTS.glob("*.pt")), ids=lambda p: p.stem)
def test_every_shipped_checkpoint_exports_reads_inspects_and_runs(path, tmp_path):
    from spikestack.models.nir.inspect import inspect_nir

    out = tmp_path / f"{path.stem}.nir"
    graph = export_any(path, out)
    assert sorted(nir.read(str(out)).nodes) == sorted(graph.nodes)
    assert f"{len(graph.nodes)} nodes, {len(graph.edges)} edges" in inspect_nir(out)
    vocab = int(graph.metadata["spikestack.vocab_size"])
    window = 8 if graph.metadata["spikestack.family"] == "bispike-mlp" else 5
    with torch.no_grad():
        logits = run_tokens(nir_to_module(out), _ids(vocab, (2, window)))
    assert logits.shape[0] == 2 and logits.shape[-1] == vocab and torch.isfinite(logits).all()
