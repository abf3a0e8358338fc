"""The faster paths the 7B streaming compile takes (issue 17), each against the straightforward computation it
replaced, bit for bit: fitted weight mantissas without whole-matrix temporaries (compiler/hybrid/quantize.py),
GIF group sums without the grouped matrix (compiler/kinds/layer.py), saliency scores reusing the layer's own
product (models/spikellm_saliency.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from spikestack.compiler.hybrid import quantize as q
from spikestack.compiler.kinds.layer import QChipProjection
from spikestack.compiler.passes.mantissas import weight_mantissa_max
from spikestack.compiler.targets import load_target
from spikestack.models.spikellm_neurons import SpikeLinear
from spikestack.models.spikellm_saliency import calibrate_saliency
from torch import nn

TARGET = load_target("hala_point")


def reference_fitted(w: np.ndarray, payload_max: int) -> tuple[np.ndarray, float, dict[str, float]]:
    """fitted_mantissas and its grid report as written before: the whole w / step array, its |max|, fresh
    temporaries for every norm."""
    peak = max(float(w.max()), -float(w.min())) if w.size else 0.0
    q_max = weight_mantissa_max(TARGET)
    step = peak / q_max if peak > 0 else 1.0
    scaled = w / step
    while peak > 0 and float(np.abs(scaled).max()) > q_max:
        step = float(np.nextafter(step, np.inf))
        scaled = w / step
    m, e = q.mantissas(scaled, payload_max, "x", TARGET)
    step *= 2.0**e
    m2, e2 = q.mantissas(w, payload_max, "x", TARGET)

    def rel(mm: np.ndarray, st: float) -> float:
        norm = float(np.sqrt(np.square(w).sum()))
        err = float(np.sqrt(np.square(mm.astype(np.float64) * (st / 2) - w).sum()))
        return round(err / norm, 6) if norm > 0 else 0.0

    return m, step, {"rel_rms_pow2": rel(m2, 2.0**e2), "rel_rms": rel(m, step)}


def one_ulp_over() -> np.ndarray:
    """A matrix whose peak / (peak / q_max) rounds above q_max, so the step must grow by one ulp."""
    q_max = weight_mantissa_max(TARGET)
    rng = np.random.default_rng(7)
    for _ in range(100_000):
        peak = float(rng.uniform(0.5, 2.0))
        if peak / (peak / q_max) > q_max:
            w = rng.uniform(-peak, peak, (40, 30))
            w[3, 4] = -peak
            return w
    raise AssertionError("no such peak found")


@pytest.mark.parametrize("case", ["normal", "fp16", "ulp", "coarse", "zeros", "tiny"])
def test_fitted_mantissas_equal_the_unchunked_computation(case):
    rng = np.random.default_rng(3)
    w = rng.standard_normal((700, 300)) * 0.02
    payload_max = 15
    if case == "fp16":
        w = w.astype(np.float16).astype(np.float64)
    elif case == "ulp":
        w = one_ulp_over()
    elif case == "coarse":  # the accumulator bound needs e > 0: (w / step) / 2^e, chunk by chunk
        payload_max = 2**15
    elif case == "zeros":
        w = np.zeros((5, 9))
    elif case == "tiny":
        w = w[:1, :1]
    report: dict[str, dict[str, float]] = {}
    with q._reporting(report):
        m, step = q.fitted_mantissas(w, payload_max, "x", TARGET)
    m_ref, step_ref, grid_ref = reference_fitted(w, payload_max)
    assert m.dtype == np.int16 and np.array_equal(m, m_ref) and step == step_ref
    assert report == {"x": grid_ref}
    if case == "coarse":
        assert step > max(abs(w.max()), abs(w.min())) / weight_mantissa_max(TARGET) * 1.5  # e grew


def test_gif_group_sums_equal_the_grouped_matrix_sums():
    rng = np.random.default_rng(0)
    for n_groups in (1, 2, 3):
        w = rng.integers(-127, 128, (37, 53)).astype(np.int16) * 2
        groups = rng.integers(0, n_groups, 53).astype(np.int8)
        p = QChipProjection(name="p", weight=w, unit=1.0, message_bits=0, groups=groups, n_groups=n_groups)
        sums = p.group_sums()
        assert sums.dtype == np.int64 and sums.shape == (n_groups, 37)
        assert np.array_equal(sums, p.grouped().sum(1).reshape(n_groups, 37))
        assert np.array_equal(sums[0], np.where(groups == 0, w.astype(np.int64), 0).sum(1))


class TwoLinears(nn.Module):
    """Just what calibrate_saliency reads of a model: spike_linears, the spiking switch, a forward."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.a = SpikeLinear(24, 40, bias=True)  # a bias: the score's x Wᵀ is computed, not read from the output
        self.b = SpikeLinear(40, 16)

    def spike_linears(self):
        return [("a", self.a), ("b", self.b)]

    def set_spiking(self, enabled: bool):
        for _, m in self.spike_linears():
            m.spiking = enabled
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)))


def test_saliency_scores_equal_the_two_product_formula_bit_for_bit():
    model = TwoLinears()
    x = torch.randn(3, 11, 24)
    seen: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_pre_hook(lambda _m, i, n=n: seen.__setitem__(n, i[0].detach()))
             for n, m in model.spike_linears()]
    scores = calibrate_saliency(model, x, salient_fraction=0.25)
    for h in hooks:
        h.remove()
    for name, layer in model.spike_linears():
        xs = seen[name].reshape(-1, layer.in_features)
        w = layer.weight.detach()
        expected = ((xs @ w.T) @ w * xs).sum(0).double() / xs.shape[0]
        assert torch.equal(scores[name], expected)
    assert int(model.a.salient_mask.sum()) == 6 and int(model.b.salient_mask.sum()) == 10


@pytest.mark.parametrize("shape", [(3, 5), (8193, 3), (700, 500), (1100, 600)])
def test_rel_rms_sums_are_the_whole_matrix_sums_bit_for_bit(shape, monkeypatch):
    """Unrounded: shapes across numpy's 8,192-element reduction blocks and `_rel_rms`'s 262,144-element chunks."""
    monkeypatch.setattr(q, "round", lambda x, _digits: x, raising=False)
    rng = np.random.default_rng(11)
    w = rng.standard_normal(shape) * 0.02
    step = float(np.abs(w).max() / 127)
    m = np.rint(w / step).astype(np.int16) * 2
    norm = float(np.sqrt(np.square(w).sum()))
    err = [float(np.sqrt(np.square(mm.astype(np.float64) * (st / 2) - w).sum())) for mm, st in
           ((m, step), (m // 4 * 2, 2 * step))]
    assert q._rel_rms(w, [(m, step), (m // 4 * 2, 2 * step)]) == [e / norm for e in err]


def test_export_forks_beside_fork_safe_threads_only(monkeypatch):
    """The streaming compile's page releaser (marked fork_safe) leaves the two-process export on; any other thread
    keeps it in one process."""
    import threading

    from spikestack.compiler.hybrid import host_export

    for safe in (True, False):
        other = threading.Thread(target=lambda: None)
        other.fork_safe = safe
        monkeypatch.setattr(host_export.threading, "enumerate", lambda o=other: [threading.current_thread(), o])
        assert host_export._alone() is safe
