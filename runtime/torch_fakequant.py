"""A torch fake-quant model of a compiled program: the same network in *real units* (float64), with every
quantity snapped to the grid the compiler chose — an independent derivation of the integer semantics.

Where the reference executor keeps u as an integer count of δ, this model keeps u_real = u·δ and applies the
same rounding in real arithmetic: floor(u_real·c/2^shift/δ + 1/2)·δ for the carry, thresholds θ·δ, payload
α-quantised as amplitude·amplitude_unit, weights m·2^(e-1) (from the destination's unit). All grid values are
dyadic rationals well inside float64's 53 bits, so agreement with the integer executors must be exact.
"""

from __future__ import annotations

import numpy as np
import torch
from spikestack.compiler.ir import Program, QReadoutPop, QSpikingPop

from .reference import host_inputs
from .trace import Trace


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.tensor(np.asarray(a, dtype=np.float64))


class FakeQuantNet(torch.nn.Module):
    def __init__(self, program: Program) -> None:
        super().__init__()
        self.program = program
        self.input_table = _t(program.host_input.table) * program.host_input.unit

    @torch.no_grad()
    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        prog = self.program
        x_real = self.input_table[ids].reshape(ids.shape[0], -1)  # real-valued input current
        current = x_real[:, None, :].expand(-1, prog.steps, -1)
        spikes: dict[str, torch.Tensor] = {}
        logits = torch.empty(0)
        for pop in prog.populations:
            proj = prog.incoming(pop.name)
            if isinstance(pop, QSpikingPop):
                delta = pop.state_unit
                x = current + _t(pop.bias) * delta
                theta = _t(pop.thresholds) * delta  # [T, K]
                carry = _t(pop.carry) / 2**pop.carry_shift  # [T, 2K+1]
                smax = prog.state_max * delta
                levels, s = [], torch.zeros_like(x[:, 0])
                u = torch.zeros_like(x[:, 0])
                for t in range(prog.steps):
                    if t == 0:
                        u = x[:, 0].clone()
                    else:
                        factor = carry[t - 1][(s + pop.levels).long()]
                        u = torch.floor(u * factor / delta + 0.5) * delta + x[:, t]
                    u = torch.clamp(u, -smax, smax)
                    s = (u[..., None] > theta[t]).sum(-1).double() - (u[..., None] < -theta[t]).sum(-1).double()
                    levels.append(s)
                lv = torch.stack(levels, 1)  # [tokens, T, n]
                spikes[pop.name] = lv
                out_proj = next(p for p in prog.projections if p.src == pop.name)
                dst = prog.pop(out_proj.dst)
                # spike in the folded frame: α_t/α_ref·s ≈ amplitude_t · 2^-p · s; weights W·α_ref ≈ m·2^(e-1)
                o = lv * (_t(pop.amplitude) * pop.amplitude_unit)[None, :, None]
                w_real = _t(out_proj.weight) * dst.state_unit / pop.amplitude_unit
                current = o @ w_real.T
            else:
                assert isinstance(pop, QReadoutPop) and proj is not None
                smax = prog.state_max * pop.state_unit
                acc = torch.zeros_like(current[:, 0])
                for t in range(prog.steps):
                    acc = torch.clamp(current[:, t] if t == 0 else acc + current[:, t], -smax, smax)
                logits = acc / prog.steps + _t(pop.host_bias)
        return logits, spikes


def run(program: Program, ids: np.ndarray) -> Trace:
    """The fake-quant model as a backend: spikes converted back to integer levels, readout to LSB counts."""
    if program.timing != "token":
        raise ValueError("the torch fake-quant model covers token (bi-spike) programs only")
    net = FakeQuantNet(program)
    logits, spikes = net(torch.as_tensor(np.asarray(ids, dtype=np.int64)))
    out = program.populations[-1]
    acc = np.rint((logits.numpy() - np.asarray(out.host_bias)) * program.steps / out.state_unit).astype(np.int64)

    return Trace(spikes={k: v.numpy().astype(np.int8) for k, v in spikes.items()}, readout=acc,
                 logits=logits.numpy(), inputs=host_inputs(program, ids))
