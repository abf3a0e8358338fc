"""SpikeLLM's own saved model (its OmniQuant-fork pipeline) → a native `spikellm` checkpoint.

Place in the picture (STYLE.md): one layout of the *models/* border (`models/published/base.py`). The SpikeLLM
project (Xing et al., "SpikeLLM", ICLR 2025, arXiv 2407.04752; code `Xingrun-Xing2/SpikeLLM`,
`spike_driven_quant/`) replaces every LLaMA decoder layer by one whose seven Linears are `SpikeQuantLinear`s, runs
its calibration, folds the learned equivalent transforms into norms and weights, quantizes the weights *in place*
and saves the model. On top of Hugging Face LLaMA's keys its state dict holds, per decoder layer N:

    model.layers.N.{self_attn.{q,k,v,o}_proj, mlp.{gate,up,down}_proj}.
        weight                        already fake-quantized (stored as (code − zero)·scale, fp16)
        mask_low_mse                  bool [in] (or [1, 1, in]): True = "low" channel, b bits in one step
        weight_quantizer.scales       [out · groups, 1]: the weight grid's step per row (or per group)
        weight_quantizer.zeros        same shape: the grid's zero point
        weight_quantizer.{upbound,lowbound}_factor   learnable clipping (LWC), only used to find the scales
    model.layers.N.{qkt,qkv,out,fc1}_smooth_scale, {qkv,out,fc1}_smooth_shift   LET transforms
    model.layers.N.self_attn.{qkt,pv}_matmul.mask_low_mse   salient channels of the K and V quantizers

How each maps onto ours (models/spikellm_network.py, spikellm_neurons.py), so the converted model computes what
the saved one does in its spiking forward:

- `mask_low_mse` → `salient_mask = ~mask_low_mse`: upstream codes the low channels with `act_quantizer` (b bits)
  and the others with `act_quantizer_high` (b + a bits, K = 2^a GIF steps of L = 2^b levels), which is exactly our
  two-group code (spikellm_neurons docstring; our choices where upstream is silent are listed there).
- `weight_quantizer.scales/zeros` → the weight itself: the saved model's forward uses `weight` as stored (its
  weight quantizer was applied before saving), and our SpikeLinear has no weight quantizer, so the converter
  re-applies the saved grid, W = (clamp(round(W/s) + z, 0, 2^wbits − 1) − z)·s, in the file's dtype. On a saved
  (already quantized) weight this is the identity bit for bit; on a weight saved before quantization it gives the
  weights the grid describes. LWC factors only chose that grid, so they are dropped.
- LET scales and shifts: already folded into the norms and weights before saving (`smooth_and_quant_inplace`),
  so they are dropped; a non-zero shift is refused by name, because LLaMA runs without shifts (`use_shift` off)
  and our RMSNorm has no bias to hold one.
- The K/V matmul masks have no counterpart: our SpikeLLM keeps QKᵀ and P·V float (spikellm_network docstring);
  they are dropped and listed in the checkpoint's `source.dropped` so the difference is on record.

Sizes come from the directory's config.json (LlamaConfig); SpikeLLM's run flags are not saved by upstream, so
`abits`, `addbit` and `wbits` are read from config.json when the user adds them there, else upstream's `arun.sh`
values (4, 1, 4) are used and the checkpoint's `source` says so.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import partial
from typing import Any

import torch
from torch import Tensor

from .base import Layout, PublishedFormatError, Source, attention_heads, count_layers, register

LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
           "mlp.up_proj", "mlp.down_proj")
MARKERS = (".mask_low_mse", ".weight_quantizer.scales", "_smooth_scale")  # keys only SpikeLLM's saved layout has
# arun.sh (REFERENCE.md §2.2): abits 4, addbit 1, wbits 4 (W4A4)
DEFAULT_FLAGS = {"abits": 4, "addbit": 1, "wbits": 4}
_LAYER = r"model\.layers\.\d+\."
_PROJ = r"(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)"
KEY_PATTERN = (r"model\.embed_tokens\.weight|model\.norm\.weight|lm_head\.weight|"
               rf"{_LAYER}(input_layernorm|post_attention_layernorm)\.weight|"
               rf"{_LAYER}{_PROJ}\.(weight|mask_low_mse|weight_quantizer\.(scales|zeros|upbound_factor|lowbound_factor))|"
               rf"{_LAYER}(qkt|qkv|out|fc1)_smooth_(scale|shift)|"
               rf"{_LAYER}self_attn\.(qkt|pv)_matmul\.mask_low_mse|"
               rf"{_LAYER}self_attn\.rotary_emb\.inv_freq")
_DROPPED = re.compile(rf"{_LAYER}((qkt|qkv|out|fc1)_smooth_scale|self_attn\.(qkt|pv)_matmul\.mask_low_mse|"
                      rf"{_PROJ}\.weight_quantizer\.(upbound|lowbound)_factor|self_attn\.rotary_emb\.inv_freq)")
_SHIFT = re.compile(rf"{_LAYER}(qkv|out|fc1)_smooth_shift")


def matches(source: Source) -> bool:
    """LLaMA's embedding plus at least one key that only SpikeLLM's saved model has."""
    state = source.state
    return "model.embed_tokens.weight" in state and any(k.endswith(MARKERS) for k in state)


def _fail(source: Source, message: str) -> PublishedFormatError:
    return PublishedFormatError(f"{source.path}: SpikeLLM saved layout: {message}")


def _flag(source: Source, name: str) -> tuple[int, bool]:
    """(value, True if taken from config.json) of one of SpikeLLM's run flags."""
    config = source.config or {}
    value = config.get(name, DEFAULT_FLAGS[name])
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 16:
        raise _fail(source, f"config.json field {name!r} = {value!r}: expected an integer in [0, 16]")
    return value, name in config


def _config(source: Source, state: Mapping[str, Tensor]) -> dict[str, Any]:
    """Our SpikeLLMConfig fields from config.json (LlamaConfig names), shapes where config.json has no entry."""
    if "model.embed_tokens.weight" not in state:
        raise _fail(source, "missing key 'model.embed_tokens.weight'")
    vocab, hidden = (int(n) for n in state["model.embed_tokens.weight"].shape)
    fail = partial(_fail, source)
    n_layers = count_layers(state.__contains__, "model.layers.{}.input_layernorm.weight", fail)
    heads = attention_heads(source.config, hidden, fail)
    config = source.config
    ffn_key = "model.layers.0.mlp.gate_proj.weight"
    if ffn_key not in state:
        raise _fail(source, f"missing key {ffn_key!r}")
    abits, _ = _flag(source, "abits")
    addbit, _ = _flag(source, "addbit")
    return {
        "vocab_size": vocab, "hidden_size": hidden, "n_layers": n_layers, "n_heads": heads,
        "n_kv_heads": config.get("num_key_value_heads", heads),
        "intermediate_size": int(state[ffn_key].shape[0]),
        "max_seq_len": config.get("max_position_embeddings", 2048),  # LLaMA-2's 4096; LLaMA-1's 2048
        "rope_theta": float(config.get("rope_theta", 10000.0)),
        "rms_norm_eps": float(config.get("rms_norm_eps", 1e-6)),  # LlamaConfig's default
        "tie_word_embeddings": "lm_head.weight" not in state,
        "act_bits": abits, "add_bits": addbit, "salient_fraction": 0.0, "spiking": True,
    }


def requantized_weight(weight: Tensor, scales: Tensor, zeros: Tensor, wbits: int) -> Tensor:
    """(clamp(round(W/s) + z, 0, 2^wbits − 1) − z)·s in the scales' dtype, per row or per group of columns.

    OmniQuant's `fake_quant` order (REFERENCE.md §2.3), rounding half to even like its `round_ste`. The grid has
    `scales.numel()` rows of `weight.numel() / scales.numel()` consecutive columns (per-row: one per output row).
    """
    groups = scales.numel()
    rows = weight.to(scales.dtype).reshape(groups, -1)
    codes = torch.clamp(torch.round(rows / scales.reshape(groups, 1)) + zeros.reshape(groups, 1), 0, 2**wbits - 1)
    return ((codes - zeros.reshape(groups, 1)) * scales.reshape(groups, 1)).reshape(weight.shape)


def _linear(source: Source, state: Mapping[str, Tensor], prefix: str, wbits: int) -> tuple[Tensor, Tensor]:
    """(float32 weight on the saved grid, salient mask) of one SpikeQuantLinear."""
    weight_key = f"{prefix}.weight"
    if weight_key not in state:
        raise _fail(source, f"missing key {weight_key!r}")
    weight = state[weight_key]
    out_features, in_features = (int(n) for n in weight.shape)
    scales_key, zeros_key = f"{prefix}.weight_quantizer.scales", f"{prefix}.weight_quantizer.zeros"
    if (scales_key in state) != (zeros_key in state):
        raise _fail(source, f"{scales_key!r} and {zeros_key!r} come in pairs; only one is present")
    if scales_key in state:
        scales, zeros = state[scales_key], state[zeros_key]
        if scales.shape != zeros.shape:
            raise _fail(source, f"{zeros_key!r} has shape {tuple(zeros.shape)}, {scales_key!r} "
                                f"{tuple(scales.shape)}")
        groups = scales.numel()
        if groups == 0 or groups % out_features or in_features % (groups // out_features):
            raise _fail(source, f"{scales_key!r} has shape {tuple(scales.shape)}: not one step per row or per "
                                f"equal group of the {tuple(weight.shape)} weight")
        weight = requantized_weight(weight, scales, zeros, wbits)
    mask_key = f"{prefix}.mask_low_mse"
    if mask_key in state:
        low = state[mask_key]
        if low.dtype != torch.bool or low.numel() != in_features or max(low.shape, default=0) != in_features:
            raise _fail(source, f"{mask_key!r} has shape {tuple(low.shape)} and dtype {low.dtype}, expected "
                                f"bool ({in_features},)")
        salient = ~low.reshape(in_features)
    else:
        salient = torch.zeros(in_features, dtype=torch.bool)  # upstream's initial mask: every channel low
    return weight.to(torch.float32), salient


def _check_shifts(source: Source, state: Mapping[str, Tensor]) -> None:
    for key in state:
        if _SHIFT.fullmatch(key) and bool((state[key] != 0).any()):
            raise _fail(source, f"{key!r} is non-zero: a LET shift has no counterpart here (LLaMA runs with shifts "
                                "off and our RMSNorm has no bias)")


def convert(source: Source) -> dict:
    """The native `spikellm` checkpoint dict (checked later by models/checkpoint.py `load_model`)."""
    state = source.state
    pattern = re.compile(KEY_PATTERN)
    unexpected = next((k for k in sorted(state) if not pattern.fullmatch(k)), None)
    if unexpected is not None:
        raise _fail(source, f"unexpected key {unexpected!r} (no counterpart in our SpikeLLM)")
    _check_shifts(source, state)
    config = _config(source, state)
    wbits, wbits_given = _flag(source, "wbits")
    native: dict[str, Tensor] = {}
    salient_total = channels = 0
    beyond = next((k for k in sorted(state) if k.startswith("model.layers.")
                   and int(k.split(".")[2]) >= config["n_layers"]), None)
    if beyond is not None:
        raise _fail(source, f"unexpected key {beyond!r} ({config['n_layers']} layers have an input_layernorm)")
    for key in ("model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"):
        if key in state:
            native[key] = state[key].to(torch.float32)
    for layer in range(config["n_layers"]):
        for norm in ("input_layernorm", "post_attention_layernorm"):
            key = f"model.layers.{layer}.{norm}.weight"
            if key not in state:
                raise _fail(source, f"missing key {key!r}")
            native[key] = state[key].to(torch.float32)
        for name in LINEARS:
            prefix = f"model.layers.{layer}.{name}"
            weight, salient = _linear(source, state, prefix, wbits)
            native[f"{prefix}.weight"], native[f"{prefix}.salient_mask"] = weight, salient
            salient_total, channels = salient_total + int(salient.sum()), channels + salient.numel()
    if config["tie_word_embeddings"]:
        native["lm_head.weight"] = native["model.embed_tokens.weight"]
    config["salient_fraction"] = round(salient_total / max(channels, 1), 6)
    checkpoint = {"family": "spikellm", "config": config, "state_dict": native,
                  "source": _provenance(source, state, wbits if wbits_given else None)}
    checkpoint.update(_vocabulary(source, config["vocab_size"]))
    return checkpoint


def _provenance(source: Source, state: Mapping[str, Tensor], wbits: int | None) -> dict:
    """What the conversion assumed and dropped, kept in the checkpoint so it is on record."""
    flags = {name: (_flag(source, name)[0], "config.json" if _flag(source, name)[1] else "arun.sh default")
             for name in DEFAULT_FLAGS}
    dropped = sorted({re.sub(r"model\.layers\.\d+\.", "model.layers.*.", k) for k in state if _DROPPED.fullmatch(k)
                      or _SHIFT.fullmatch(k)})
    return {"layout": "spikellm-saved", "path": str(source.path),
            "flags": {name: f"{value} ({where})" for name, (value, where) in flags.items()},
            "dropped": dropped,
            "note": "attention matmul quantizers (qkt/pv_matmul) are kept float here; LET transforms and LWC "
                    "factors were folded into the saved weights upstream"}


def _vocabulary(source: Source, vocab_size: int) -> dict:
    """{"tokenizer": tokenizer.json text} from the tokenizer beside the weights; without one, refused by name
    (a LLaMA vocabulary is not a string of characters)."""
    from .vocabulary import checked_tokenizer

    tokenizer = checked_tokenizer(source, vocab_size, missing="SpikeLLM saved layout: no tokenizer beside the "
                                  "weights (tokenizer.json or tokenizer.model); pass --tokenizer")
    return {"tokenizer": tokenizer.to_json()}


LAYOUT = register(Layout(
    name="spikellm-saved",
    family="spikellm",
    expected="LLaMA keys plus model.layers.{l}.*_proj.mask_low_mse / .weight_quantizer.scales|zeros, "
             "*_smooth_scale (SpikeLLM's saved model)",
    matches=matches,
    convert=convert,
    required=("model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.mask_low_mse",
              "model.layers.0.self_attn.q_proj.weight_quantizer.scales"),
    key_pattern=KEY_PATTERN,
))
