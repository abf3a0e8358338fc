"""Training options added for the twin-gap experiments (issue #16): SpikeLM decoder T, K and distillation weights;
SpikeGPT distillation from its twin and width. Each option at its default must leave the shipped recipe's weights
bit-identical (the cards' commands reproduce the shipped files), and away from it must change what it says."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from spikestack.models import spikegpt, spikelm
from spikestack.models.checkpoint import read_checkpoint
from spikestack.models.distill import DistillWeights
from spikestack.models.spikegpt import train
from spikestack.models.spikegpt_load import CheckpointFormatError
from spikestack.models.spikelm import train_decoder

CHECKPOINTS = Path(spikelm.__file__).parent / "checkpoints"
LM_TWIN = CHECKPOINTS / "spikelm-dec-tiny-ann.pt"
GPT_TWIN = CHECKPOINTS / "spikegpt-char-2x64-ann.pt"


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)["state_dict"]


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_decoder_options_at_their_defaults_give_the_same_weights(tmp_path: Path) -> None:
    common = {"steps": 2, "seed": 0, "progress": False, "learnable_alpha": True, "teacher": LM_TWIN}
    plain = train_decoder(tmp_path / "a.pt", **common)
    spelled = train_decoder(tmp_path / "b.pt", **common, time_steps=4, levels=1, distill_weights=DistillWeights())
    assert _same(_weights(tmp_path / "a.pt"), _weights(tmp_path / "b.pt"))
    assert plain["val_bpc"] == spelled["val_bpc"]
    assert read_checkpoint(tmp_path / "b.pt")["train"]["distill"] == {"temperature": 1.0, "logits": 1.0,
                                                                      "hidden": 1.0}


def test_decoder_levels_time_steps_and_weights_reach_the_model(tmp_path: Path) -> None:
    common = {"steps": 2, "seed": 0, "progress": False, "learnable_alpha": True, "teacher": LM_TWIN}
    train_decoder(tmp_path / "a.pt", **common)
    train_decoder(tmp_path / "k.pt", **common, levels=2, time_steps=2, distill_weights=DistillWeights(2.0, 0.5, 0.0))
    stored = read_checkpoint(tmp_path / "k.pt")
    assert stored["config"]["levels"] == 2 and stored["config"]["steps"] == 2
    assert stored["train"]["distill"] == {"temperature": 2.0, "logits": 0.5, "hidden": 0.0}
    assert stored["state_dict"]["backbone.blocks.0.ffn.up.spike.alpha"].shape == (2,)  # one α per step
    model, _ = spikelm.load_checkpoint(tmp_path / "k.pt")
    spikes = model.backbone.blocks[0].ffn.up.spike
    with torch.no_grad():
        model(torch.zeros(1, 8, dtype=torch.long))
    assert spikes.levels == 2 and float(spikes.last_spikes.abs().max()) <= 2.0


def test_spikegpt_zero_weight_distillation_equals_plain_training(tmp_path: Path) -> None:
    """τ²·KL enters the loss times its weight: at weight 0 the gradients, hence the weights, are the plain ones."""
    common = {"steps": 3, "seed": 3, "progress": False, "eval_chars": 640, "curve_every": 0}
    plain = train(tmp_path / "a.pt", **common)
    zero = train(tmp_path / "z.pt", **common, teacher=GPT_TWIN, distill_weights=DistillWeights(1.0, 0.0, 0.0))
    kd = train(tmp_path / "k.pt", **common, teacher=GPT_TWIN)
    assert _same(_weights(tmp_path / "a.pt"), _weights(tmp_path / "z.pt"))
    assert zero["val_bpc"] == plain["val_bpc"] and "teacher" not in plain
    assert kd["teacher"] == GPT_TWIN.name and kd["distill"] == {"temperature": 1.0, "logits": 1.0}
    assert not _same(_weights(tmp_path / "a.pt"), _weights(tmp_path / "k.pt"))


def test_spikegpt_width_option_and_teacher_shape_check(tmp_path: Path) -> None:
    metrics = train(tmp_path / "w.pt", steps=1, seed=0, progress=False, eval_chars=640, curve_every=0, width=32)
    stored = read_checkpoint(tmp_path / "w.pt")
    assert stored["config"]["n_embd"] == 32 and stored["state_dict"]["emb.weight"].shape == (95, 32)
    assert metrics["steps"] == 1
    with pytest.raises(CheckpointFormatError, match="teacher config 'n_embd' = 64, the student's is 32"):
        train(tmp_path / "x.pt", steps=1, progress=False, width=32, teacher=GPT_TWIN)
    with pytest.raises(CheckpointFormatError, match="teacher must be the ANN twin"):
        train(tmp_path / "y.pt", steps=1, progress=False, teacher=CHECKPOINTS / "spikegpt-char-2x64.pt")
    assert spikegpt.SpikeGPTConfig(vocab_size=95).n_embd == 64  # the default width is the shipped one
