"""SpikeLM's BERT layout (models/published/spikelm_bert.py): tiny state dicts with the published key names
(Hugging Face BERT plus SpikeLM's act_clip_val / clip_key / clip_value) go through conversion → load_model → the
float model's forward, compared with a plain-torch forward written from spike_bert.py's equations, then export →
compile → run."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from spikestack.models.checkpoint import InMemoryCheckpoint, load_model
from spikestack.models.published import PublishedFormatError, detect, read_source
from spikestack.models.published.spikelm_bert import convert
from spikestack.models.spikelm_network import SpikeLMConfig
from spikestack.models.spikelm_train import BERT_CHECKPOINT_SPEC, CHECKPOINT_SPEC, checkpoint_spec, parameter_count

TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "c", "the", "cat", "sat", "##s"]
V, D, HEADS, FFN, T, CONTEXT, EPS = len(TOKENS), 8, 2, 16, 4, 16, 1e-12
DENSES = {"attention.self.query": (D, D), "attention.self.key": (D, D), "attention.self.value": (D, D),
          "attention.output.dense": (D, D), "intermediate.dense": (FFN, D), "output.dense": (D, FFN)}


def bert_state(seed: int = 0, heads: str = "pretraining") -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=0.5):
        return scale * torch.randn(*shape, generator=g)

    s = {"bert.embeddings.word_embeddings.weight": rnd(V, D), "bert.embeddings.position_embeddings.weight":
         rnd(CONTEXT, D), "bert.embeddings.token_type_embeddings.weight": rnd(2, D),
         "bert.embeddings.LayerNorm.weight": 1 + rnd(D, scale=0.1), "bert.embeddings.LayerNorm.bias": rnd(D, scale=0.1),
         "bert.embeddings.position_ids": torch.arange(CONTEXT).unsqueeze(0)}
    p = "bert.encoder.layer.0"
    for name, (rows, cols) in DENSES.items():
        s[f"{p}.{name}.weight"], s[f"{p}.{name}.bias"] = rnd(rows, cols), rnd(rows, scale=0.1)
        s[f"{p}.{name}.weight_clip_val"] = torch.tensor([2.5])
        for t in range(T):
            s[f"{p}.{name}.act_clip_val.{t}"] = torch.tensor(0.4 + 0.3 * t)
    for t in range(T):
        s[f"{p}.attention.self.clip_key.{t}"] = torch.tensor(0.6 + 0.1 * t)
        s[f"{p}.attention.self.clip_value.{t}"] = torch.tensor(0.5 + 0.2 * t)
    for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
        s[f"{p}.{ln}.weight"], s[f"{p}.{ln}.bias"] = 1 + rnd(D, scale=0.1), rnd(D, scale=0.1)
    s["bert.pooler.dense.weight"], s["bert.pooler.dense.bias"] = rnd(D, D), rnd(D, scale=0.1)
    if heads == "pretraining":
        s.update({"cls.predictions.bias": rnd(V, scale=0.1), "cls.predictions.transform.dense.weight": rnd(D, D),
                  "cls.predictions.transform.dense.bias": rnd(D, scale=0.1),
                  "cls.predictions.transform.LayerNorm.weight": 1 + rnd(D, scale=0.1),
                  "cls.predictions.transform.LayerNorm.bias": rnd(D, scale=0.1),
                  "cls.seq_relationship.weight": rnd(2, D), "cls.seq_relationship.bias": rnd(2, scale=0.1)})
    else:
        s.update({"classifier.weight": rnd(3, D), "classifier.bias": rnd(3, scale=0.1)})
    return s


def write_bert(folder, state) -> None:
    folder.mkdir(exist_ok=True)
    torch.save(state, folder / "pytorch_model.bin")
    (folder / "config.json").write_text(json.dumps({"num_attention_heads": HEADS, "layer_norm_eps": EPS, "T": T}))
    (folder / "vocab.txt").write_text("\n".join(TOKENS) + "\n")


# ---------------------------------------------------------------- spike_bert.py's forward in plain torch ops
def _bispike(u, alpha):
    return torch.clamp(torch.round(u / alpha), -1, 1) * alpha


def _spike_linear(s, name, x):
    """SpikeLM's SpikeLinear: membrane over T with the 0.25·(α − o) carry, then the dense layer."""
    outs, mem = [], None
    for t in range(T):
        alpha = s[f"{name}.act_clip_val.{t}"]
        mem = x[0] if t == 0 else mem * 0.25 * (s[f"{name}.act_clip_val.{t - 1}"] - outs[-1]) + x[t]
        outs.append(_bispike(mem, alpha))
    return F.linear(torch.stack(outs), s[f"{name}.weight"], s[f"{name}.bias"])


def reference_forward(s, ids):
    L = ids.shape[1]
    e = s["bert.embeddings.word_embeddings.weight"][ids] + s["bert.embeddings.token_type_embeddings.weight"][0]
    e = e + s["bert.embeddings.position_embeddings.weight"][:L]
    h = F.layer_norm(e, (D,), s["bert.embeddings.LayerNorm.weight"], s["bert.embeddings.LayerNorm.bias"], EPS)
    h = h.unsqueeze(0).repeat(T, 1, 1, 1)
    p = "bert.encoder.layer.0"
    q = _spike_linear(s, f"{p}.attention.self.query", h)
    k = _spike_linear(s, f"{p}.attention.self.key", h)
    v = _spike_linear(s, f"{p}.attention.self.value", h)
    k = torch.stack([_bispike(k[t], s[f"{p}.attention.self.clip_key.{t}"]) for t in range(T)])
    v = torch.stack([_bispike(v[t], s[f"{p}.attention.self.clip_value.{t}"]) for t in range(T)])

    def split(x):
        return x.reshape(T, 1, L, HEADS, D // HEADS).permute(0, 1, 3, 2, 4)

    scores = split(q) @ split(k).transpose(-1, -2) / math.sqrt(D // HEADS)
    a = (torch.softmax(scores, -1) @ split(v)).permute(0, 1, 3, 2, 4).reshape(T, 1, L, D)
    a = _spike_linear(s, f"{p}.attention.output.dense", a)
    h = F.layer_norm(a + h, (D,), s[f"{p}.attention.output.LayerNorm.weight"],
                     s[f"{p}.attention.output.LayerNorm.bias"], 1e-12)
    f = _spike_linear(s, f"{p}.output.dense", F.gelu(_spike_linear(s, f"{p}.intermediate.dense", h)))
    h = F.layer_norm(f + h, (D,), s[f"{p}.output.LayerNorm.weight"], s[f"{p}.output.LayerNorm.bias"], 1e-12).mean(0)
    tr = F.layer_norm(F.gelu(F.linear(h, s["cls.predictions.transform.dense.weight"],
                                      s["cls.predictions.transform.dense.bias"])), (D,),
                      s["cls.predictions.transform.LayerNorm.weight"],
                      s["cls.predictions.transform.LayerNorm.bias"], EPS)
    mlm = F.linear(tr, s["bert.embeddings.word_embeddings.weight"], s["cls.predictions.bias"])  # tied decoder
    pooled = torch.tanh(F.linear(h[:, 0], s["bert.pooler.dense.weight"], s["bert.pooler.dense.bias"]))
    return mlm, F.linear(pooled, s["cls.seq_relationship.weight"], s["cls.seq_relationship.bias"])


def _load(folder):
    ckpt = convert(read_source(folder))
    source = InMemoryCheckpoint(folder, ckpt)
    model, _ = load_model(source, checkpoint_spec(source))
    return model, ckpt


def test_bert_mapping_matches_a_plain_forward(tmp_path) -> None:
    state = bert_state()
    write_bert(tmp_path / "b", state)
    assert detect(read_source(tmp_path / "b")).name == "spikelm-bert"
    model, ckpt = _load(tmp_path / "b")
    cfg = ckpt["config"]
    assert (cfg["vocab"], cfg["steps"], cfg["context"], cfg["layer_norm_eps"]) == (V, T, CONTEXT, EPS)
    assert cfg["classes"] == 2  # next-sentence prediction
    # [MASK] (id 4) gets a copy at our mask id V: masking either way gives the same input
    emb = ckpt["state_dict"]["backbone.tok_emb.weight"]
    assert emb.shape == (V + 1, D) and torch.equal(emb[V], emb[4])
    ids = torch.tensor([[2, 8, 9, 4, 10, 3]])  # [CLS] the cat [MASK] sat [SEP]
    with torch.no_grad():
        mlm, cls = model(ids)
        ref_mlm, ref_cls = reference_forward(state, ids)
    assert torch.allclose(mlm, ref_mlm, atol=1e-5) and torch.allclose(cls, ref_cls, atol=1e-5)
    with torch.no_grad():
        assert torch.equal(model(torch.tensor([[2, 8, 9, V, 10, 3]]))[0], mlm)  # our mask id


def test_classifier_only_checkpoint(tmp_path) -> None:
    write_bert(tmp_path / "c", bert_state(heads="classifier"))
    model, ckpt = _load(tmp_path / "c")
    assert ckpt["config"]["classes"] == 3 and ckpt["source"]["absent_heads"] == ["mlm"]
    with torch.no_grad():
        mlm, cls = model(torch.tensor([[2, 5, 6, 3]]))
    assert cls.shape == (1, 3) and torch.equal(mlm, torch.zeros(1, 4, V))  # zero head: constant logits


@pytest.mark.parametrize(("edit", "message"), [
    (lambda s: s.pop("bert.encoder.layer.0.output.dense.bias"), "missing key 'bert.encoder.layer.0.output.dense.bias'"),
    (lambda s: s.__setitem__("bert.encoder.layer.0.attention.self.query.lora", torch.ones(1)),
     "unexpected key 'bert.encoder.layer.0.attention.self.query.lora'"),
    (lambda s: s.__setitem__("bert.encoder.layer.0.intermediate.dense.weight", torch.ones(FFN, D + 1)),
     "'bert.encoder.layer.0.intermediate.dense.weight' has shape (16, 9), expected (16, 8)"),
    (lambda s: s.__setitem__("bert.encoder.layer.0.attention.self.clip_key.4", torch.tensor(1.0)),
     "unexpected key 'bert.encoder.layer.0.attention.self.clip_key.4'"),
])
def test_bad_inputs_are_one_line(tmp_path, edit, message) -> None:
    state = bert_state()
    edit(state)
    write_bert(tmp_path / "b", state)
    with pytest.raises(PublishedFormatError) as err:
        convert(read_source(tmp_path / "b"))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_export_compile_run_on_tiny_text(tmp_path) -> None:
    from spikestack.models.tokenizer import Tokenizer

    from spikestack import api

    write_bert(tmp_path / "b", bert_state())
    ckpt = convert(read_source(tmp_path / "b"))
    path = tmp_path / "native.pt"
    torch.save(ckpt, path)
    program = api.compile(path)
    ids = np.array([Tokenizer.from_json(ckpt["tokenizer"]).encode("the cat sat")])
    assert ids.tolist() == [[8, 9, 10]]
    result = api.run(program, inputs=ids)
    assert result.family == "spikelm-enc" and np.isfinite(np.asarray(result.trace.logits)).all()
    # the MLM transform reads the mean over T (StepMean): the program's logits are its last call's, also loaded
    assert program.readout == "last_step" and api.load(api.save(program, tmp_path / "art")).readout == "last_step"


def test_mlm_head_reads_the_mean_over_steps() -> None:
    """BERT's MLM transform (dense, GELU, LayerNorm) is not affine, so it must see the mean of h over the T steps,
    as the model computes it: the graph's StepMean and last-call readout give the model's MLM logits with spikes
    (T > 1) to float64 rounding, where averaging per-call logits is off by far more."""
    from spikestack.models.nir.export_spikelm import spikelm_to_nir
    from spikestack.models.nir.to_torch import nir_to_module, run_steps, run_tokens
    from spikestack.models.spikelm_network import SpikeLMConfig, SpikeLMEncoder

    torch.manual_seed(0)
    cfg = SpikeLMConfig(vocab=11, context=8, d_model=8, heads=2, layers=1, ffn=16, bert_heads=True,
                        layer_norm_eps=1e-12)
    model = SpikeLMEncoder(cfg).double().eval()
    module = nir_to_module(spikelm_to_nir(model), dtype=torch.float64)
    ids = torch.randint(0, cfg.vocab + 1, (2, cfg.context))
    with torch.no_grad():
        want, got = model(ids)[0], run_tokens(module, ids)
        calls = run_steps(module, [ids[..., None]] * cfg.run_steps)
    assert cfg.run_steps > 1 and got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    assert float((calls.mean(0) - want).abs().max()) > 1e-4  # a mean of per-call logits is not the model's


def test_specs_and_parameter_count() -> None:
    names = [f.name for f in dataclasses.fields(SpikeLMConfig)]
    assert list(BERT_CHECKPOINT_SPEC.fields) == names
    assert list(CHECKPOINT_SPEC.fields) == names[:-2]  # the shipped checkpoints predate the two BERT fields
    cfg = dataclasses.asdict(SpikeLMConfig(vocab=V, context=CONTEXT, d_model=D, heads=HEADS, layers=1, ffn=FFN,
                                           steps=T, layer_norm_eps=EPS, bert_heads=True))
    model = BERT_CHECKPOINT_SPEC.build("spikelm-enc", cfg)
    assert parameter_count(cfg) == sum(t.numel() for t in model.state_dict().values())
