"""models/checkpoint.py's fast path for big checkpoints (issue 13 item 6): the finiteness check by `aminmax`, and
the checked tensors assigned to the meta-built model instead of copied into a randomly initialised one. Both must
give exactly what the slow path gave: the same refusals, the same model."""

from __future__ import annotations

import math

import pytest
import torch
from spikestack.models.checkpoint import CheckpointError, CheckpointSpec, Field, _all_finite, _assignable, load_model


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_one_non_finite_value_anywhere_is_found(dtype, bad):
    t = torch.linspace(-3, 3, 1000, dtype=dtype).reshape(10, 100)
    assert _all_finite(t)
    for where in [(0, 0), (4, 57), (9, 99)]:
        broken = t.clone()
        broken[where] = bad
        assert not _all_finite(broken)
        assert not _all_finite(broken[where[0]])  # a row view
    assert _all_finite(torch.empty(0, 5, dtype=dtype))  # aminmax refuses empty tensors: never called on them


class _Tied(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Linear(3, 3, bias=False)
        self.b = torch.nn.Linear(3, 3, bias=False)
        self.b.weight = self.a.weight


class _Buffered(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Linear(3, 3)
        self.register_buffer("table", torch.arange(3.0), persistent=False)


class _Attribute(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Linear(3, 3)
        self.table = torch.arange(3.0)


@pytest.mark.parametrize(("build", "assignable"), [
    (lambda: torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4)), True),
    (_Tied, False),  # assigning would untie the shared weight
    (_Buffered, False),  # the non-persistent buffer would stay on the meta device
    (_Attribute, False),  # so would a plain tensor attribute
])
def test_only_models_whose_state_dict_names_every_tensor_once_are_assigned(build, assignable):
    with torch.device("meta"):
        model = build()
    assert _assignable(model, model.state_dict()) is assignable


def _spec(build) -> CheckpointSpec:
    return CheckpointSpec(families=("spikegpt",), fields={"width": Field(int, low=1, high=8)}, vocab_field="width",
                          parameter_count=lambda cfg: 100, build=lambda family, cfg: build())


@pytest.mark.parametrize("build", [_Tied, _Buffered, lambda: torch.nn.Linear(3, 3)])
def test_both_paths_give_the_checkpoint_weights(build, tmp_path):
    torch.manual_seed(1)
    state = {k: torch.randn(v.shape, dtype=torch.float64) for k, v in build().state_dict().items()}  # → float32
    if build is _Tied:  # a tied model's state dict holds the shared weight twice
        state["b.weight"] = state["a.weight"]
    path = tmp_path / "m.pt"
    torch.save({"family": "spikegpt", "config": {"width": 3}, "state_dict": state, "vocab": "abc"}, path)
    model, _ = load_model(path, _spec(build))
    loaded = model.state_dict()
    assert set(loaded) == set(state) and not model.training
    for key, value in state.items():
        assert loaded[key].dtype == torch.float32 and torch.equal(loaded[key], value.float())
    assert all(not t.is_meta for t in [*model.parameters(), *model.buffers()])
    if build is _Tied:
        assert model.a.weight is model.b.weight
    if build is _Buffered:
        assert torch.equal(model.table, torch.arange(3.0))


def test_a_nan_in_a_big_float32_tensor_is_refused(tmp_path):
    state = {"weight": torch.zeros(3, 3)}
    state["weight"][2, 1] = math.nan
    path = tmp_path / "nan.pt"
    torch.save({"family": "spikegpt", "config": {"width": 3}, "state_dict": state, "vocab": "abc"}, path)
    with pytest.raises(CheckpointError, match="state_dict key 'weight' holds non-finite values"):
        load_model(path, _spec(lambda: torch.nn.Linear(3, 3, bias=False)))


def test_one_storage_under_two_keys_is_copied_not_shared(tmp_path):
    """A file may hold one storage under two keys; the model must get two independent weights, as a copy gives."""
    shared = torch.randn(3, 3)
    path = tmp_path / "shared.pt"
    torch.save({"family": "spikegpt", "config": {"width": 3}, "vocab": "abc",
                "state_dict": {"a.weight": shared, "b.weight": shared}}, path)

    class Two(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = torch.nn.Linear(3, 3, bias=False)
            self.b = torch.nn.Linear(3, 3, bias=False)

    model, _ = load_model(path, _spec(Two))
    assert torch.equal(model.a.weight, shared) and torch.equal(model.b.weight, shared)
    assert model.a.weight.data_ptr() != model.b.weight.data_ptr()
