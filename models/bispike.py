"""SpikeLM's elastic bi-spiking neuron, generalised to signed levels -K..+K.

This is the float (training) definition; the compiler lowers it to the integer neuron whose one reference step
lives in `spikestack.runtime.neurons`. Equations follow REFERENCE.md §1.1 (SpikeLM code, `spiking.py`):

    s_t = clip(round_half_even(u_t / α_t), -K, +K)        # K = 1 is SpikeLM's ternary case
    o_t = α_t · s_t                                        # what the next linear layer sees
    u_1 = x_1;   u_t = 0.25 · α_{t-1} · (1 - s_{t-1}/K) · u_{t-1} + x_t   (t >= 2)

For K = 1 the carry factor is SpikeLM's 0.25·(α - o): 0 after +1 (hard reset), 0.25α after 0, 0.5α after -1.
For K > 1 we scale the spike by 1/K so the factor still runs from 0 (top level) to 0.5α (bottom level); SpikeLM
has no multi-level neuron, so this generalisation is ours. As in the seed code, the factor is detached (no
gradient through the reset) while u keeps BPTT.

α: one scalar per (layer, step). On the first training forward, while α_t is still exactly 1.0, it is set to
2·mean|u_t| over batch and channels (floored at 1e-5) and then frozen (SpikeLM's `AlphaInit`; its LSQ gradient is
discarded). `learnable_alpha=True` keeps the LSQ-style gradient instead.
Surrogate: straight-through, ∂o/∂u = 1 where |u/α| <= K, else 0.
"""

from __future__ import annotations

import torch
from torch import nn

ALPHA_FLOOR = 1e-5  # SpikeLM code floors α at 1e-5 (REFERENCE.md §1.1)
RESET_SCALE = 0.25  # the 0.25 in the carry factor 0.25·(α - o) (REFERENCE.md §1.1)


def spike_levels(u: torch.Tensor, alpha: torch.Tensor, levels: int) -> torch.Tensor:
    """Signed spike level clip(round_half_even(u/α), -K, K); torch.round rounds half to even."""
    return torch.clamp(torch.round(u / alpha), -levels, levels)


def carry_factor(alpha: torch.Tensor, s: torch.Tensor, levels: int) -> torch.Tensor:
    """Multiplicative reset 0.25·α·(1 - s/K) applied to the membrane before the next input."""
    return RESET_SCALE * alpha * (1.0 - s / levels)


class _STEBiSpike(torch.autograd.Function):
    """o = α·s with the straight-through gradient of REFERENCE.md §1.1 and an LSQ-style α gradient."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, alpha: torch.Tensor, levels: int) -> torch.Tensor:  # type: ignore[override]
        s = spike_levels(u, alpha, levels)
        ctx.save_for_backward(u, alpha, s)
        ctx.levels = levels
        return alpha * s

    @staticmethod
    def backward(ctx, grad_o: torch.Tensor):  # type: ignore[override]
        u, alpha, s = ctx.saved_tensors
        ratio = u / alpha
        inside = (ratio.abs() <= ctx.levels).to(grad_o.dtype)
        grad_u = grad_o * inside
        # LSQ: ∂(α·s)/∂α = s - u/α inside the range, s outside (only used when α is learnable).
        grad_alpha = (grad_o * (s - ratio * inside)).sum().reshape(alpha.shape)
        return grad_u, grad_alpha, None


class ElasticBiSpike(nn.Module):
    """Elastic bi-spiking neuron over T steps; input and output are [T, ..., C] (step axis first)."""

    def __init__(self, steps: int = 4, levels: int = 1, learnable_alpha: bool = False) -> None:
        super().__init__()
        if steps < 1 or levels < 1:
            raise ValueError(f"ElasticBiSpike needs steps >= 1 and levels >= 1, got steps={steps}, levels={levels}")
        self.steps = steps
        self.levels = levels
        self.alpha = nn.Parameter(torch.ones(steps), requires_grad=learnable_alpha)
        self.last_spikes: torch.Tensor | None = None  # s of the latest forward, for firing-rate reports

    def _init_alpha(self, t: int, u: torch.Tensor) -> None:
        if self.training and float(self.alpha.detach()[t]) == 1.0:
            # through .data: earlier steps of this forward already used α, so an in-place write on the
            # parameter itself would invalidate their autograd records when α is learnable
            self.alpha.data[t] = torch.clamp(2.0 * u.detach().abs().mean(), min=ALPHA_FLOOR)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != self.steps:
            raise ValueError(f"ElasticBiSpike expects {self.steps} steps on axis 0, got shape {tuple(x.shape)}")
        outputs, spikes = [], []
        u = x[0]
        for t in range(self.steps):
            if t > 0:
                factor = carry_factor(self.alpha[t - 1], spikes[-1], self.levels).detach()
                u = factor * u + x[t]
            self._init_alpha(t, u)
            alpha_t = torch.clamp(self.alpha[t], min=ALPHA_FLOOR)
            o = _STEBiSpike.apply(u, alpha_t, self.levels)
            spikes.append(spike_levels(u.detach(), alpha_t.detach(), self.levels))
            outputs.append(o)
        self.last_spikes = torch.stack(spikes)
        return torch.stack(outputs)

    def extra_repr(self) -> str:
        return f"steps={self.steps}, levels={self.levels}"
