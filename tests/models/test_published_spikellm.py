"""SpikeLLM's saved layout (models/published/spikellm_saved.py): tiny state dicts with the published key names go
through conversion → load_model → forward → export → compile → run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from spikestack.models.checkpoint import InMemoryCheckpoint, load_model
from spikestack.models.published import PublishedFormatError, detect, read_source
from spikestack.models.published.spikellm_saved import convert, requantized_weight
from spikestack.models.spikellm_load import load_llama_state_dict
from spikestack.models.spikellm_network import SpikeLLMConfig
from spikestack.models.spikellm_train import CHECKPOINT_SPEC

CHARS = "abcdefgh ij."  # 12 ids
HIDDEN, FFN, HEADS = 8, 16, 2
PROJ = {"self_attn.q_proj": (8, 8), "self_attn.k_proj": (8, 8), "self_attn.v_proj": (8, 8),
        "self_attn.o_proj": (8, 8), "mlp.gate_proj": (16, 8), "mlp.up_proj": (16, 8), "mlp.down_proj": (8, 16)}


def test_requantized_weight_hand_computed() -> None:
    # s = 0.5, z = 2, 4 bits: 0.3 → code round(0.6)+2 = 3 → 0.5; -1.2 → -2+2 = 0 → -1.0; 9.0 → 18+2 = 20 → 15 → 6.5
    out = requantized_weight(torch.tensor([[0.3, -1.2, 9.0]]), torch.tensor([[0.5]]), torch.tensor([[2.0]]), 4)
    assert out.tolist() == [[0.5, -1.0, 6.5]]


def _grid(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """OmniQuant's 4-bit per-row grid of `weight` in fp16: (saved weight, scales, zeros)."""
    w = weight.half()
    lo, hi = w.amin(1, keepdim=True), w.amax(1, keepdim=True)
    scales = ((hi - lo) / 15).clamp_min(1e-5)
    zeros = torch.round(-lo / scales)
    return requantized_weight(w, scales, zeros, 4), scales, zeros


def saved_state(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {"model.embed_tokens.weight": torch.randn(12, HIDDEN, generator=g).half(),
             "model.norm.weight": (1 + 0.1 * torch.randn(HIDDEN, generator=g)).half(),
             "lm_head.weight": torch.randn(12, HIDDEN, generator=g).half()}
    p = "model.layers.0"
    for norm in ("input_layernorm", "post_attention_layernorm"):
        state[f"{p}.{norm}.weight"] = (1 + 0.1 * torch.randn(HIDDEN, generator=g)).half()
    for name, (rows, cols) in PROJ.items():
        weight, scales, zeros = _grid(0.3 * torch.randn(rows, cols, generator=g))
        low = torch.ones(cols, dtype=torch.bool)
        low[torch.randperm(cols, generator=g)[:2]] = False  # two salient channels each
        state.update({f"{p}.{name}.weight": weight, f"{p}.{name}.weight_quantizer.scales": scales,
                      f"{p}.{name}.weight_quantizer.zeros": zeros, f"{p}.{name}.mask_low_mse": low.reshape(1, 1, cols),
                      f"{p}.{name}.weight_quantizer.upbound_factor": torch.ones(rows, 1).half()})
    state.update({f"{p}.qkt_smooth_scale": torch.ones(HIDDEN).half(), f"{p}.qkv_smooth_scale": torch.ones(HIDDEN),
                  f"{p}.qkv_smooth_shift": torch.zeros(HIDDEN),
                  f"{p}.self_attn.qkt_matmul.mask_low_mse": torch.ones(HIDDEN, dtype=torch.bool)})
    return state


def write_saved(folder, state, **config) -> None:
    folder.mkdir(exist_ok=True)
    torch.save(state, folder / "pytorch_model.bin")
    cfg = {"num_attention_heads": HEADS, "num_key_value_heads": HEADS, "max_position_embeddings": 16,
           "rms_norm_eps": 1e-6, "rope_theta": 10000.0, **config}
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "vocab.json").write_text(json.dumps({str(i): c for i, c in enumerate(CHARS)}))


def test_conversion_maps_grid_masks_and_config(tmp_path) -> None:
    state = saved_state()
    write_saved(tmp_path / "m", state)
    source = read_source(tmp_path / "m")
    assert detect(source).name == "spikellm-saved"
    ckpt = convert(source)
    native = ckpt["state_dict"]
    for name in PROJ:
        key = f"model.layers.0.{name}"
        # the saved weight is already on its grid: re-applying scales/zeros reproduces it bit for bit
        assert torch.equal(native[f"{key}.weight"], state[f"{key}.weight"].float())
        assert torch.equal(native[f"{key}.salient_mask"], ~state[f"{key}.mask_low_mse"].reshape(-1))
    assert ckpt["config"]["rms_norm_eps"] == 1e-6 and ckpt["config"]["max_seq_len"] == 16
    assert (ckpt["config"]["act_bits"], ckpt["config"]["add_bits"]) == (4, 1)
    assert ckpt["config"]["salient_fraction"] == 14 / 64  # 2 salient each of 7 layers; inputs 6 × 8 + 16
    assert "model.layers.*.self_attn.qkt_matmul.mask_low_mse" in ckpt["source"]["dropped"]

    model, _ = load_model(InMemoryCheckpoint(tmp_path / "m", ckpt), CHECKPOINT_SPEC)
    # the same float weights and masks through the plain LLaMA loader give the same logits, bit for bit
    llama = {k: v.float() for k, v in state.items() if k.endswith("weight") and "quantizer" not in k}
    reference = load_llama_state_dict(llama, SpikeLLMConfig(**{**ckpt["config"], "spiking": True}))
    for name, layer in reference.spike_linears():
        layer.salient_mask.copy_(native[f"{name}.salient_mask"])
    ids = torch.tensor([[0, 3, 5, 1, 8, 2]])
    with torch.no_grad():
        assert torch.equal(model(ids), reference.eval()(ids))


def test_off_grid_weight_is_put_on_the_saved_grid(tmp_path) -> None:
    state = saved_state()
    key = "model.layers.0.self_attn.q_proj"
    state[f"{key}.weight"] = state[f"{key}.weight"] + 0.01  # as if saved before in-place quantization
    write_saved(tmp_path / "m", state)
    native = convert(read_source(tmp_path / "m"))["state_dict"]
    expected = requantized_weight(state[f"{key}.weight"], state[f"{key}.weight_quantizer.scales"],
                                  state[f"{key}.weight_quantizer.zeros"], 4).float()
    assert torch.equal(native[f"{key}.weight"], expected)
    assert not torch.equal(native[f"{key}.weight"], state[f"{key}.weight"].float())


@pytest.mark.parametrize(("edit", "message"), [
    (lambda s: s.pop("model.layers.0.mlp.up_proj.weight"), "missing key 'model.layers.0.mlp.up_proj.weight'"),
    (lambda s: s.__setitem__("model.layers.0.self_attn.q_proj.act_scales", torch.ones(1)),
     "unexpected key 'model.layers.0.self_attn.q_proj.act_scales'"),
    (lambda s: s.__setitem__("model.layers.0.mlp.up_proj.weight_quantizer.zeros", torch.zeros(3, 1)),
     "has shape (3, 1)"),
    (lambda s: s.__setitem__("model.layers.0.qkv_smooth_shift", torch.ones(HIDDEN)),
     "'model.layers.0.qkv_smooth_shift' is non-zero"),
])
def test_bad_inputs_are_one_line(tmp_path, edit, message) -> None:
    state = saved_state()
    edit(state)
    write_saved(tmp_path / "m", state)
    with pytest.raises(PublishedFormatError) as err:
        convert(read_source(tmp_path / "m"))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_export_compile_run_on_tiny_text(tmp_path) -> None:
    from spikestack import api

    write_saved(tmp_path / "m", saved_state())
    ckpt = convert(read_source(tmp_path / "m"))
    path = tmp_path / "native.pt"
    torch.save(ckpt, path)
    program = api.compile(path)
    ids = np.array([[CHARS.index(c) for c in "a big cafe."]])
    result = api.run(program, inputs=ids)
    assert result.family == "spikellm" and result.tokens == ids.size
    assert np.isfinite(np.asarray(result.trace.logits)).all()
