"""models/checkpoint.py: checkpoints load without executing anything, and are checked before a model is built.

Hostile files (a torch.save and a plain pickle whose object touches a marker file when unpickled) given to the CLI
and to every family's loader; every schema and state-dict violation as one line naming the file and the key; the
shipped checkpoints loading to the same models as a plain tensor-only load.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import pickle
import re
from pathlib import Path

import pytest
import torch
from spikestack.models import bispike_mlp, spikegpt, spikegpt_train, spikellm, spikellm_train, spikelm, spikelm_train
from spikestack.models.checkpoint import (
    MAX_PARAMETERS,
    CheckpointError,
    CheckpointSpec,
    count,
    load_model,
    read_checkpoint,
)
from spikestack.models.registry import FAMILIES, checkpoint_family

from spikestack.cli import main

CHECKPOINTS = Path(bispike_mlp.__file__).parent / "checkpoints"
SHIPPED = sorted(CHECKPOINTS.glob("*.pt"))
BASE = CHECKPOINTS / "bispike-mlp.pt"  # the smallest shipped checkpoint: the base every broken file starts from

LOADERS = {  # family → its public loader
    "bispike-mlp": bispike_mlp.load_checkpoint,
    "spikegpt": spikegpt.load_checkpoint,
    "spikellm": spikellm.load_checkpoint,
    "spikelm-enc": spikelm.load_checkpoint,
    "spikelm-dec": spikelm.load_checkpoint,
}
SPECS = {
    "bispike-mlp": (bispike_mlp.CHECKPOINT_SPEC, bispike_mlp.BiSpikeMLPConfig),
    "spikegpt": (spikegpt_train.CHECKPOINT_SPEC, spikegpt.SpikeGPTConfig),
    "spikellm": (spikellm_train.CHECKPOINT_SPEC, spikellm.SpikeLLMConfig),
    "spikelm": (spikelm_train.CHECKPOINT_SPEC, spikelm.SpikeLMConfig),
    "spikelm-bert": (spikelm_train.BERT_CHECKPOINT_SPEC, spikelm.SpikeLMConfig),  # converted BERT: all fields
}


class _TouchOnUnpickle:
    """Unpickling this object creates `marker`: the code execution weights_only=False would allow."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def _hostile_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(torch.save file, plain pickle.dump file, the marker either would create) — both named .pt."""
    marker = tmp_path / "marker"
    saved = tmp_path / "hostile-torch.pt"
    torch.save({"family": "bispike-mlp", "config": _TouchOnUnpickle(marker), "state_dict": {}, "vocab": ""}, saved)
    dumped = tmp_path / "hostile-pickle.pt"
    with open(dumped, "wb") as f:
        pickle.dump({"family": _TouchOnUnpickle(marker)}, f)
    return saved, dumped, marker


def _one_line_error(capsys) -> str:
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("spikestack: error: ") and "\n" not in err and "Traceback" not in err
    assert captured.out == ""
    return err


def test_the_hostile_files_do_run_code_when_loaded_unsafely(tmp_path):
    """Proves the payload is live, so the tests below that find no marker mean something."""
    saved, dumped, marker = _hostile_files(tmp_path)
    torch.load(saved, weights_only=False)
    assert marker.exists()
    marker.unlink()
    with open(dumped, "rb") as f:
        pickle.load(f)
    assert marker.exists()


@pytest.mark.parametrize("command", ["compile", "export", "generate", "sweep"])
def test_cli_refuses_hostile_checkpoints_without_running_them(command, tmp_path, capsys):
    saved, dumped, marker = _hostile_files(tmp_path)
    out = tmp_path / "out"
    extra = {"compile": ["-o", str(out)], "export": ["-o", str(out)], "generate": ["--tokens", "1"],
             "sweep": ["--workers", "1"]}[command]
    assert main([command, str(saved), *extra]) == 2
    assert f"{saved}: refuses to unpickle getattr (only tensors" in _one_line_error(capsys)
    assert main([command, str(dumped), *extra]) == 2
    assert f"{dumped}: not a torch checkpoint (pickle opcode 149 is not accepted)" in _one_line_error(capsys)
    assert not marker.exists() and not out.exists()


@pytest.mark.parametrize("family", sorted(LOADERS))
def test_every_loader_refuses_hostile_checkpoints(family, tmp_path):
    saved, dumped, marker = _hostile_files(tmp_path)
    for path in (saved, dumped):
        with pytest.raises(CheckpointError, match=re.escape(str(path))):
            LOADERS[family](path)
    with pytest.raises(CheckpointError, match="refuses to unpickle getattr"):
        checkpoint_family(saved)
    assert not marker.exists()


# ------------------------------------------------------------------------------ unreadable files


def test_unreadable_files_are_one_line_naming_the_file(tmp_path):
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(BASE.read_bytes()[: BASE.stat().st_size // 2])
    text = tmp_path / "text.pt"
    text.write_text("not a checkpoint")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    listed = tmp_path / "list.pt"
    torch.save([1, 2], listed)
    cases = {
        tmp_path / "missing.pt": "checkpoint not found",
        tmp_path: "not a checkpoint file (a folder or device)",
        truncated: "not a readable checkpoint (RuntimeError: PytorchStreamReader failed",
        text: "not a torch checkpoint (pickle opcode 110 is not accepted)",  # 110: "n", its first byte
        empty: "not a readable checkpoint (EOFError",
        listed: "top level is a list, expected a dict with keys family, config, state_dict, vocab",
    }
    for path, message in cases.items():
        with pytest.raises(CheckpointError) as caught:
            read_checkpoint(path)
        assert str(caught.value).startswith(f"{path}: {message}") and "\n" not in str(caught.value)


# ------------------------------------------------------------------------------ schema


def _base() -> dict:
    return read_checkpoint(BASE)


def _with_config(**fields) -> dict:
    base = _base()
    return dict(base, config={**base["config"], **fields})


def _without_config(name: str) -> dict:
    base = _base()
    return dict(base, config={k: v for k, v in base["config"].items() if k != name})


def _with_tensor(key: str, value) -> dict:
    base = _base()
    return dict(base, state_dict={**base["state_dict"], key: value})


def _without_tensor(key: str) -> dict:
    base = _base()
    return dict(base, state_dict={k: v for k, v in base["state_dict"].items() if k != key})


def _nan_head() -> dict:
    head = _base()["state_dict"]["head.weight"].clone()
    head[3, 7] = math.nan
    return _with_tensor("head.weight", head)


HUGE_BISPIKE = 95 * 4096 + (4096**3 + 4096) + (4096**2 + 4096) + (4096 * 95 + 95) + 3 * 4  # by hand: emb,fc1,fc2,head

BROKEN = {  # checkpoint dict → the message after "<path>: "
    "wrong family": (lambda: dict(_base(), family="spikegpt"),
                     "checkpoint family is 'spikegpt', expected 'bispike-mlp'"),
    "unknown family": (lambda: dict(_base(), family="mystery"),
                       "checkpoint family is 'mystery', expected 'bispike-mlp'"),
    "family not a string": (lambda: dict(_base(), family=7), "checkpoint family is 7, expected 'bispike-mlp'"),
    "no vocab": (lambda: {k: v for k, v in _base().items() if k != "vocab"}, "missing top-level key 'vocab'"),
    "config a list": (lambda: dict(_base(), config=[1]), "'config' is a list, expected a dict"),
    "missing field": (lambda: _without_config("hidden"), "config is missing field 'hidden'"),
    "unexpected field": (lambda: _with_config(dropout=0.1), "config has unexpected field 'dropout'"),
    "str for int": (lambda: _with_config(hidden="128"), "config field 'hidden' = '128': expected int, got str"),
    "float for int": (lambda: _with_config(hidden=128.0), "config field 'hidden' = 128.0: expected int, got float"),
    "bool for int": (lambda: _with_config(hidden=True), "config field 'hidden' = True: expected int, got bool"),
    "int for bool": (lambda: _with_config(spiking=1), "config field 'spiking' = 1: expected bool, got int"),
    "negative dim": (lambda: _with_config(hidden=-1), "config field 'hidden' = -1: below the minimum 1"),
    "zero steps": (lambda: _with_config(steps=0), "config field 'steps' = 0: below the minimum 1"),
    "huge dim": (lambda: _with_config(hidden=10**12),
                 "config field 'hidden' = 1000000000000: above the maximum 65536"),
    "too many parameters": (lambda: _with_config(context=4096, emb_dim=4096, hidden=4096),
                            f"config describes {HUGE_BISPIKE:,} parameters, over the limit of 2,000,000,000"),
    "vocab length": (lambda: dict(_base(), vocab="abc"), "'vocab' has 3 characters, config field 'vocab' says 95"),
    "vocab not str": (lambda: dict(_base(), vocab=list("abc")), "'vocab' is a list, expected a string"),
    "state_dict a list": (lambda: dict(_base(), state_dict=[]), "'state_dict' is a list, expected a dict"),
    "missing key": (lambda: _without_tensor("fc2.bias"), "state_dict is missing key 'fc2.bias'"),
    "unexpected key": (lambda: _with_tensor("fc4.weight", torch.zeros(2)),
                       "state_dict has unexpected key 'fc4.weight'"),
    "wrong shape": (lambda: _with_tensor("fc1.weight", torch.zeros(128, 127)),
                    "state_dict key 'fc1.weight' has shape (128, 127), the model (128, 128)"),
    "int weights": (lambda: _with_tensor("fc1.bias", torch.zeros(128, dtype=torch.int64)),
                    "state_dict key 'fc1.bias' has dtype torch.int64, the model torch.float32"),
    "not a tensor": (lambda: _with_tensor("fc1.bias", [0.0] * 128),
                     "state_dict key 'fc1.bias' is a list, expected a dense tensor"),
    "NaN weight": (_nan_head, "state_dict key 'head.weight' holds non-finite values (NaN or inf)"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_checkpoint_is_one_line_naming_the_key(case, tmp_path):
    make, message = BROKEN[case]
    path = tmp_path / "broken.pt"
    torch.save(make(), path)
    with pytest.raises(CheckpointError) as caught:
        bispike_mlp.load_checkpoint(path)
    text = str(caught.value)
    assert text.startswith(f"{path}: {message}") and "\n" not in text


def test_registry_names_an_unknown_family(tmp_path):
    path = tmp_path / "odd.pt"
    torch.save(dict(_base(), family="x" * 500), path)
    with pytest.raises(CheckpointError) as caught:
        checkpoint_family(path)
    shown = repr("x" * 500)[:60] + "…"  # a hostile file cannot flood the one line
    assert str(caught.value) == (f"{path}: unknown checkpoint family {shown}; known: bispike-mlp, spikegpt, "
                                 "spikellm, spikelm-enc, spikelm-dec")


def test_cli_export_of_a_broken_checkpoint_writes_nothing(tmp_path, capsys):
    path = tmp_path / "nan.pt"
    torch.save(_nan_head(), path)
    out = tmp_path / "model.nir"
    assert main(["export", str(path), "-o", str(out)]) == 2
    assert _one_line_error(capsys) == (f"spikestack: error: {path}: state_dict key 'head.weight' holds non-finite "
                                       "values (NaN or inf)")
    assert not out.exists()


def _shipped(name: str, **config) -> dict:
    checkpoint = read_checkpoint(CHECKPOINTS / name)
    return dict(checkpoint, config={**checkpoint["config"], **config})


FAMILY_RULES = {  # (loader, checkpoint dict) → message after "<path>: "
    "spikegpt tau NaN": (spikegpt.load_checkpoint, lambda: _shipped("spikegpt-char-2x64.pt", tau=math.nan),
                         "config field 'tau' = nan: not finite"),
    "spikegpt tau below one token": (spikegpt.load_checkpoint, lambda: _shipped("spikegpt-char-2x64.pt", tau=0.5),
                                     "config field 'tau' = 0.5: below the minimum 1.0"),
    "spikellm heads do not split hidden": (
        spikellm.load_checkpoint, lambda: _shipped("spikellm-char-tiny.pt", n_heads=3),
        "config refused by the model: SpikeLLMConfig: hidden_size must be divisible by n_heads"),
    "spikellm kv heads a string": (spikellm.load_checkpoint,
                                   lambda: _shipped("spikellm-char-tiny.pt", n_kv_heads="4"),
                                   "config field 'n_kv_heads' = '4': expected int, got str"),
    "spikelm heads do not split d_model": (
        spikelm.load_checkpoint, lambda: _shipped("spikelm-dec-tiny.pt", heads=3),
        "config: field 'd_model' = 64 is not divisible by field 'heads' = 3"),
    "spikelm decoder that is not causal": (
        spikelm.load_checkpoint, lambda: _shipped("spikelm-dec-tiny.pt", causal=False),
        "config: field 'causal' = False does not match family 'spikelm-dec'"),
    "spikelm encoder tensor shape": (
        spikelm.load_checkpoint, lambda: _shipped("spikelm-enc-tiny.pt", classes=3),
        "state_dict key 'cls_head.weight' has shape (2, 64), the model (3, 64)"),
}


@pytest.mark.parametrize("case", sorted(FAMILY_RULES))
def test_family_rules(case, tmp_path):
    loader, make, message = FAMILY_RULES[case]
    path = tmp_path / "broken.pt"
    torch.save(make(), path)
    with pytest.raises(CheckpointError) as caught:
        loader(path)
    assert str(caught.value).startswith(f"{path}: {message}") and "\n" not in str(caught.value)


def _recording_spec(parameters: int, calls: list) -> CheckpointSpec:
    """A one-Linear family that records the default device of every build."""

    def build(family: str, cfg: dict) -> torch.nn.Module:
        calls.append(torch.empty(0).device.type)
        return torch.nn.Linear(cfg["width"], 1, bias=False)

    return CheckpointSpec(families=("spikegpt",), fields={"width": count(8)}, vocab_field="width",
                          parameter_count=lambda cfg: parameters, build=build)


@pytest.mark.parametrize(("parameters", "weight", "builds"), [
    (MAX_PARAMETERS + 1, torch.ones(1, 2), []),  # the size cap comes before any model
    (2, torch.ones(1, 3), ["meta"]),  # a mismatch is found on the meta model: no memory spent
    (2, torch.ones(1, 2), ["meta"]),  # a checked file's tensors are assigned to the meta model: no second build
])
def test_checks_run_before_the_real_model_is_built(parameters, weight, builds, tmp_path):
    path = tmp_path / "tiny.pt"
    torch.save({"family": "spikegpt", "config": {"width": 2}, "state_dict": {"weight": weight}, "vocab": "ab"}, path)
    calls: list = []
    spec = _recording_spec(parameters, calls)
    if parameters == 2 and weight.shape == (1, 2):  # the one file that passes every check
        model, _ = load_model(path, spec)
        assert torch.equal(model.weight, weight) and not model.training
    else:
        with pytest.raises(CheckpointError):
            load_model(path, spec)
    assert calls == builds


# ------------------------------------------------------------------------------ specs and shipped files


@pytest.mark.parametrize("name", sorted(SPECS))
def test_spec_fields_are_the_config_fields(name):
    spec, config_type = SPECS[name]
    fields = [f.name for f in dataclasses.fields(config_type)]
    if name == "spikelm":  # the shipped files' spec predates the BERT flags, which default to today's model
        assert fields[len(spec.fields):] == ["layer_norm_eps", "bert_heads"]
        fields = fields[:len(spec.fields)]
    assert list(spec.fields) == fields
    assert set(spec.families) <= set(FAMILIES)


PARAMETER_CASES = [
    (bispike_mlp.CHECKPOINT_SPEC, "bispike-mlp", dataclasses.asdict(bispike_mlp.BiSpikeMLPConfig(spiking=False))),
    (spikegpt_train.CHECKPOINT_SPEC, "spikegpt", dataclasses.asdict(spikegpt.SpikeGPTConfig(33, n_layer=3, n_embd=24))),
    (spikellm_train.CHECKPOINT_SPEC, "spikellm", dataclasses.asdict(spikellm.SpikeLLMConfig(
        vocab_size=50, hidden_size=48, n_heads=6, n_kv_heads=2, intermediate_size=80, n_layers=3,
        tie_word_embeddings=True))),
    (spikelm_train.CHECKPOINT_SPEC, "spikelm-enc", dataclasses.asdict(spikelm.SpikeLMConfig(
        vocab=40, context=12, d_model=32, heads=2, layers=3, ffn=48, steps=3, classes=5))),
    (spikelm_train.CHECKPOINT_SPEC, "spikelm-dec", dataclasses.asdict(spikelm.SpikeLMConfig(
        vocab=40, context=12, d_model=32, heads=2, layers=1, ffn=48, spiking=False, causal=True))),
]


@pytest.mark.parametrize(("spec", "family", "config"), PARAMETER_CASES)
def test_parameter_count_is_exact_before_building(spec, family, config):
    with torch.device("meta"):
        model = spec.build(family, config)
    assert spec.parameter_count(config) == sum(t.numel() for t in model.state_dict().values())


def _family_spec(family: str) -> CheckpointSpec:
    return next(spec for spec, _ in SPECS.values() if family in spec.families)  # the first: shipped files' spec


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_checkpoint_loads_to_the_same_model(path):
    """Same logits as the model built from a plain tensor-only torch.load; the parameter count is exact."""
    family = checkpoint_family(path)
    model, vocab = LOADERS[family](path)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    spec = _family_spec(family)
    expected = spec.build(family, raw["config"])
    expected.load_state_dict(raw["state_dict"])
    expected.eval()
    assert vocab == raw["vocab"] and len(vocab) == 95 and not model.training
    assert spec.parameter_count(raw["config"]) == sum(t.numel() for t in raw["state_dict"].values())
    ids = torch.tensor([[5, 17, 0, 94, 33, 60, 2, 11]])
    with torch.no_grad():
        got, want = model(ids), expected(ids)
    for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,),
                    strict=True):
        assert torch.equal(g, w) and bool(torch.isfinite(g).all())
