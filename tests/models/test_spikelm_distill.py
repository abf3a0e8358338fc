"""SpikeLM's training recipe: distillation from the ANN twin (models/distill.py) and elastic (learned) α."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from spikestack.models import spikelm
from spikestack.models.checkpoint import CheckpointError
from spikestack.models.distill import DistillWeights, hidden_mse, kd_logits_loss
from spikestack.models.nir.export_spikelm import spikelm_to_nir
from spikestack.models.spikelm import SpikeLMConfig, SpikeLMDecoder, TrainSettings, _train, spiking_sites
from spikestack.models.spikelm_tasks import decoder_distill_terms
from spikestack.models.spikelm_train import _config_fields, load_teacher

from spikestack.cli import main

SMALL = SpikeLMConfig(vocab=11, context=12, d_model=16, heads=2, layers=2, ffn=32, causal=True)
SETTINGS = TrainSettings(context=12, batch_windows=8, lr=1e-2, warmup_steps=5)
LN = math.log
WEIGHTS = DistillWeights()  # SpikeLM's learner: τ = 1, weights 1


def test_kd_loss_equals_hand_computed_kl_on_2x3_logits() -> None:
    # row 0: teacher (ln 2, 0, 0) → p_t = (1/2, 1/4, 1/4); student (0, 0, 0) → p_s = (1/3, 1/3, 1/3)
    #   KL = 1/2·ln(3/2) + 2·1/4·ln(3/4) = 1/2·ln(9/8)
    # row 1: teacher (0, 0, 0) uniform; student (ln 2, 0, 0) → (1/2, 1/4, 1/4)
    #   KL = 1/3·ln(2/3) + 2·1/3·ln(4/3) = 1/3·ln(32/27)
    # mean over the 2 rows: (0.0588915 + 0.0566330) / 2 = 0.0577623
    student = torch.tensor([[0.0, 0.0, 0.0], [LN(2), 0.0, 0.0]])
    teacher = torch.tensor([[LN(2), 0.0, 0.0], [0.0, 0.0, 0.0]])
    expected = (0.5 * LN(9 / 8) + LN(32 / 27) / 3) / 2
    assert kd_logits_loss(student, teacher).item() == pytest.approx(expected, abs=1e-7)
    assert expected == pytest.approx(0.0577623, abs=1e-7)
    # τ = 2 on row 0: teacher (ln 2/2, 0, 0) → p_t = (√2, 1, 1)/(2 + √2), student uniform; loss = τ²·KL
    p_t = np.array([math.sqrt(2), 1.0, 1.0]) / (2 + math.sqrt(2))
    expected_t2 = 4 * float((p_t * np.log(3 * p_t)).sum())
    assert kd_logits_loss(student[:1], teacher[:1], temperature=2.0).item() == pytest.approx(expected_t2, abs=1e-6)
    assert kd_logits_loss(teacher, teacher).item() == pytest.approx(0.0, abs=1e-7)


def test_kd_loss_sends_no_gradient_to_the_teacher() -> None:
    student = torch.tensor([[0.0, 1.0, 2.0]], requires_grad=True)
    teacher = torch.tensor([[2.0, 1.0, 0.0]], requires_grad=True)
    kd_logits_loss(student, teacher).backward()
    assert teacher.grad is None
    # ∂KL/∂z_s = p_s - p_t (τ = 1): p_s = softmax(0, 1, 2), p_t its reverse, so the middle entry is 0
    p_s = torch.softmax(student.detach(), -1)
    assert torch.allclose(student.grad, p_s - p_s.flip(-1), atol=1e-7)


def test_hidden_mse_is_the_mean_over_states_of_each_mse() -> None:
    # state 0: errors (1, 1) → MSE 1; state 1: errors (0, 2) → MSE 2; mean 1.5
    s = [torch.tensor([1.0, 1.0]), torch.tensor([0.0, 2.0])]
    t = [torch.zeros(2), torch.zeros(2)]
    assert hidden_mse(s, t).item() == 1.5
    with pytest.raises(ValueError, match="hidden states"):
        hidden_mse(s, t[:1])


def _teacher(seed: int = 1) -> SpikeLMDecoder:
    """A random ANN twin of SMALL with a peaked next-character distribution (a trained teacher is confident)."""
    torch.manual_seed(seed)
    teacher = SpikeLMDecoder(replace(SMALL, spiking=False))
    with torch.no_grad():
        teacher.lm_head.weight.mul_(8.0)
    return teacher.eval()


def _batches(seed: int):
    rng = np.random.default_rng(seed)

    def next_batch() -> tuple[torch.Tensor]:
        return (torch.from_numpy(rng.integers(0, SMALL.vocab, size=(SETTINGS.batch_windows, SMALL.context + 1))),)

    return next_batch


def _kd_loss_fn(teacher: SpikeLMDecoder, weights: DistillWeights = WEIGHTS):
    return lambda model, batch: decoder_distill_terms(model, teacher, batch, weights)["total"]


def _student(learnable_alpha: bool, seed: int = 0) -> SpikeLMDecoder:
    torch.manual_seed(seed)
    return SpikeLMDecoder(replace(SMALL, learnable_alpha=learnable_alpha))


def _alphas(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: m.alpha.detach().clone() for n, m in spiking_sites(model).items()}


@pytest.mark.parametrize("learnable", [True, False])
def test_one_step_with_a_teacher_moves_alpha_only_when_learnable(learnable: bool) -> None:
    student, teacher = _student(learnable), _teacher()
    next_batch = _batches(0)
    first = next_batch()
    student.train()
    with torch.no_grad():  # the first-batch α init (REFERENCE.md §1.1), as `_train` does it
        student(first[0][:, :-1])
    before = _alphas(student)
    assert all(not torch.equal(a, torch.ones_like(a)) for a in before.values())  # initialised
    batches = iter([first])
    _train(student, SETTINGS, lambda: next(batches), _kd_loss_fn(teacher), steps=1, progress=False)
    after = _alphas(student)
    moved = [n for n in before if not torch.equal(before[n], after[n])]
    sites = spiking_sites(student)
    assert len(sites) == 16  # 2 blocks × (6 SpikeLinears + K, V re-spikes)
    if learnable:
        assert sorted(moved) == sorted(sites)  # every site's α received a gradient and moved
        assert all(float(m.alpha.grad.abs().sum()) > 0 for m in sites.values())
        # Adam's first step moves each α_t by at most lr·warm-up factor = 1e-2 · 1/5 (plus decay 0 for α)
        assert max(float((after[n] - before[n]).abs().max()) for n in before) <= 2e-3 + 1e-7
    else:
        assert moved == []


def test_thirty_kd_steps_lower_the_kd_loss() -> None:
    student, teacher = _student(learnable_alpha=True), _teacher()
    held_out = _batches(99)()
    weights = DistillWeights()

    def kd_terms() -> dict[str, float]:
        student.eval()
        with torch.no_grad():
            return {k: float(v) for k, v in decoder_distill_terms(student, teacher, held_out, weights).items()}

    # the α init needs a training forward; `_train` does it on its first batch
    losses = _train(student, SETTINGS, _batches(0), _kd_loss_fn(teacher), steps=1, progress=False)
    start = kd_terms()
    losses += _train(student, SETTINGS, _batches(1), _kd_loss_fn(teacher), steps=30, progress=False)
    end = kd_terms()
    assert len(losses) == 31
    # measured: logits KL 1.81 → 1.28 nats/char (×0.71), hidden MSE 2.18 → 1.26 (×0.58); random characters, so
    # the task CE has nothing to learn (2.53 → 2.49) and only the teacher's terms can fall this far
    assert end["logits"] < 0.8 * start["logits"], (start, end)
    assert end["hidden"] < 0.7 * start["hidden"], (start, end)


def test_export_reads_the_learned_alpha() -> None:
    student, teacher = _student(learnable_alpha=True), _teacher()
    _train(student, SETTINGS, _batches(0), _kd_loss_fn(teacher), steps=3, progress=False)
    student.eval()
    graph = spikelm_to_nir(student)
    exported = {n: node.alpha for n, node in graph.nodes.items() if hasattr(node, "alpha")}
    learned = {n: m.alpha.detach().numpy() for n, m in spiking_sites(student).items()}
    assert len(exported) == len(learned) == 16
    assert sorted(np.concatenate(list(exported.values())).tolist()) == sorted(
        np.concatenate(list(learned.values())).astype(np.float64).tolist())


def test_teacher_must_be_the_ann_twin_of_the_same_shape(tmp_path) -> None:
    def save(model: SpikeLMDecoder, name: str):
        path = tmp_path / name
        torch.save({"family": "spikelm-dec", "config": _config_fields(model.cfg), "state_dict": model.state_dict(),
                    "vocab": "abcdefghijk", "metrics": {}, "train": {}}, path)
        return path

    assert load_teacher(save(_teacher(), "twin.pt"), _student(True)).cfg.spiking is False
    with pytest.raises(CheckpointError, match="'spiking' = False"):
        load_teacher(save(_student(False), "spiking.pt"), _student(True))
    wide = SpikeLMDecoder(replace(SMALL, spiking=False, d_model=32, ffn=64))
    with pytest.raises(CheckpointError, match="'d_model' = 32, the student's is 16"):
        load_teacher(save(wide, "wide.pt"), _student(True))


def test_cli_rejects_teacher_for_a_family_without_distillation(tmp_path, capsys) -> None:
    out = tmp_path / "m.pt"
    assert main(["train", "spikellm", "--teacher", str(tmp_path / "t.pt"), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["spikestack: error: family 'spikellm' does not take --teacher (see spikestack train --help)"]
    assert not out.exists()
    assert main(["train", "spikelm-dec", "--ann", "--teacher", str(tmp_path / "t.pt"), "-o", str(out)]) == 2
    assert "cannot be combined with --ann" in capsys.readouterr().err


def test_train_decoder_with_teacher_saves_a_loadable_checkpoint_with_its_learned_alpha(tmp_path) -> None:
    from spikestack.models.checkpoint import read_checkpoint
    from spikestack.models.spikelm import load_checkpoint, train_decoder

    twin = Path(spikelm.__file__).parent / "checkpoints" / "spikelm-dec-tiny-ann.pt"
    out = tmp_path / "dec.pt"
    metrics = train_decoder(out, steps=2, seed=0, progress=False, learnable_alpha=True, teacher=twin)
    stored = read_checkpoint(out)
    assert stored["train"]["teacher"] == "spikelm-dec-tiny-ann.pt"
    assert stored["train"]["distill"] == {"temperature": 1.0, "logits": 1.0, "hidden": 1.0}
    assert "bert_heads" not in stored["config"]  # read by CHECKPOINT_SPEC, the decoder's
    model, _ = load_checkpoint(out)
    assert model.cfg.learnable_alpha and model.cfg.spiking
    alpha = model.backbone.blocks[0].attn.key.spike.alpha.detach()
    assert torch.equal(alpha, stored["state_dict"]["backbone.blocks.0.attn.key.spike.alpha"])
    assert float(alpha.min()) > 0
    assert 2.0 < metrics["val_bpc"] < 8.0  # two steps from random init: near log2(95) = 6.57


@pytest.mark.parametrize("causal", [True, False])
def test_a_student_equal_to_its_teacher_has_zero_distillation_terms(causal: bool) -> None:
    import copy

    from spikestack.models.spikelm import SpikeLMEncoder, encoder_batch
    from spikestack.models.spikelm_tasks import encoder_distill_terms

    torch.manual_seed(0)
    cfg = replace(SMALL, spiking=False, causal=causal)
    teacher = SpikeLMDecoder(cfg) if causal else SpikeLMEncoder(cfg)
    student = copy.deepcopy(teacher)
    rng = np.random.default_rng(0)
    windows = rng.integers(0, SMALL.vocab, size=(8, SMALL.context + (1 if causal else 0)))
    if causal:
        terms = decoder_distill_terms(student, teacher, (torch.from_numpy(windows),), WEIGHTS)
    else:
        terms = encoder_distill_terms(student, teacher, encoder_batch(windows, SMALL.vocab, rng, corrupt=True),
                                      WEIGHTS)
    assert float(terms["logits"]) == pytest.approx(0.0, abs=1e-6)
    assert float(terms["hidden"]) == 0.0
    assert float(terms["total"]) == pytest.approx(float(terms["task"]), abs=1e-6)
    assert float(terms["task"]) > 1.0  # random characters: a CE near ln 11 = 2.4, not a vacuous zero


def test_validation_curve_is_recorded_without_changing_the_trained_weights(tmp_path, monkeypatch) -> None:
    from spikestack.models import spikelm_train
    from spikestack.models.checkpoint import read_checkpoint
    from spikestack.models.spikelm import train_decoder

    monkeypatch.setattr(spikelm_train, "CURVE_EVERY", 1)
    with_curve = train_decoder(tmp_path / "a.pt", steps=2, seed=0, progress=False, learnable_alpha=True)
    monkeypatch.setattr(spikelm_train, "CURVE_EVERY", 10**6)
    without = train_decoder(tmp_path / "b.pt", steps=2, seed=0, progress=False, learnable_alpha=True)
    # one point after step 1 (CURVE_EVERY = 1), the final point is the checkpoint's own metric
    assert [point[0] for point in with_curve["curve"]] == [1, 2]
    assert with_curve["curve"][1] == [2, with_curve["val_bpc"]]
    assert with_curve["curve"][0][1] != with_curve["val_bpc"]  # the model moved between the two points
    assert without["curve"] == [[2, without["val_bpc"]]]
    a, b = read_checkpoint(tmp_path / "a.pt")["state_dict"], read_checkpoint(tmp_path / "b.pt")["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # evaluating changed nothing
