"""A torch fake-quant model of a compiled program: the same network in *real units* (float64), with every
quantity snapped to the grid the compiler chose — an independent derivation of the integer semantics.

Where the reference executor keeps u as an integer count of δ, this model keeps u_real = u·δ and applies the
same rounding in real arithmetic: floor(u_real·c/2^shift/δ + 1/2)·δ for the carry, thresholds θ·δ, payload
α-quantised as amplitude·amplitude_unit, weights m·2^(e-1) (from the destination's unit). All grid values are
dyadic rationals well inside float64's 53 bits, so agreement with the integer executors must be exact.

Delayed-timing (foreign LIF, also recurrent) programs run through `run_delayed`: Lava's LIF equations written
again in torch int64 (not a call of `runtime.neurons`), with every synapse gathering its own delayed event.
"""

from __future__ import annotations

import numpy as np
import torch
from spikestack.compiler.ir import Program, QLIFPop, QReadoutPop, QSpikingPop

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
    if program.timing == "delayed":
        return run_delayed(program, ids)
    net = FakeQuantNet(program)
    logits, spikes = net(torch.as_tensor(np.asarray(ids, dtype=np.int64)))
    out = program.populations[-1]
    acc = np.rint((logits.numpy() - np.asarray(out.host_bias)) * program.steps / out.state_unit).astype(np.int64)

    return Trace(spikes={k: v.numpy().astype(np.int8) for k, v in spikes.items()}, readout=acc,
                 logits=logits.numpy(), inputs=host_inputs(program, ids))


def _lif_torch(u: torch.Tensor, v: torch.Tensor, a_in: torch.Tensor, pop: QLIFPop, bias: torch.Tensor,
               program: Program) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lava's fixed_pt LIF (lava/proc/lif/models.py, PyLifModelBitAcc) written again in torch int64, from Lava's
    equations rather than from `runtime.neurons.lif_step`, so that agreement is evidence: truncating division
    toward zero, u wrapping and v saturating at the target's state width, reset to 0."""
    t = program.target_spec
    unity, half = 1 << t.decay_bits, 1 << (t.state_bits - 1)
    u = torch.div(u * (unity - pop.du - 1), unity, rounding_mode="trunc") + a_in * (1 << t.activation_shift)
    u = torch.where(u > half, u - 2 * half, torch.where(u <= -half, u + 2 * half, u))
    v = torch.div(v * (unity - pop.dv), unity, rounding_mode="trunc") + u + bias
    v = torch.clamp(v, -half + 1, half - 1)
    s = v > (pop.vth << t.activation_shift)
    return u, torch.where(s, torch.zeros_like(v), v), s.long()


@torch.no_grad()
def run_delayed(program: Program, spikes_in: np.ndarray) -> Trace:
    """Delayed-timing (foreign LIF, also recurrent) programs: every projection reads its source's events of
    step t-1-d (d its synapse's extra delay), gathered per synapse from a history of past events."""
    from .reference import check_spike_inputs

    x = torch.as_tensor(check_spike_inputs(program, spikes_in))
    n_s, steps = x.shape[0], program.steps
    pops = [p for p in program.populations if isinstance(p, QLIFPop)]
    delays = {p.name: torch.zeros(p.weight.shape, dtype=torch.long) if p.delay is None
              else torch.tensor(np.asarray(p.delay, np.int64)) for p in program.projections}
    depth = 1 + max((int(d.max()) for d in delays.values() if d.numel()), default=0)
    sizes = {program.host_input.name: program.host_input.size} | {p.name: p.size for p in pops}
    history = {n: torch.zeros((depth, n_s, size), dtype=torch.long) for n, size in sizes.items()}  # [t-1, t-2, …]
    u = {p.name: torch.zeros((n_s, p.size), dtype=torch.long) for p in pops}
    v = {p.name: torch.zeros((n_s, p.size), dtype=torch.long) for p in pops}
    bias = {p.name: torch.tensor(np.asarray(p.bias_mant, np.int64)) * (1 << torch.tensor(
        np.asarray(p.bias_exp, np.int64))) for p in pops}
    spikes = {p.name: torch.zeros((n_s, steps, p.size), dtype=torch.long) for p in pops}
    for t in range(steps):
        a_in = {p.name: torch.zeros((n_s, p.size), dtype=torch.long) for p in pops}
        for proj in program.projections:
            w = torch.tensor(np.asarray(proj.weight, np.int64))
            cols = torch.arange(w.shape[1]).expand_as(w)
            seen = history[proj.src][delays[proj.name], :, cols]  # [n_dst, n_src, samples]
            a_in[proj.dst] += (seen * w[..., None]).sum(1).T
        for p in pops:
            u[p.name], v[p.name], spikes[p.name][:, t] = _lif_torch(u[p.name], v[p.name], a_in[p.name], p,
                                                                    bias[p.name], program)
        for name in history:
            events = x[:, t] if name == program.host_input.name else spikes[name][:, t]
            history[name] = torch.cat([events[None], history[name][:-1]])
    out = pops[-1]
    levels = {k: s.numpy().astype(np.int8) for k, s in spikes.items()}
    if out.neuron == "LI":
        final = v[out.name].numpy()
        return Trace(spikes=levels, readout=final, logits=final * out.state_unit, inputs=x.numpy(),
                     saturations={p.name: 0 for p in pops})
    counts = levels[out.name].sum(1).astype(np.int64)
    return Trace(spikes=levels, readout=counts, logits=counts.astype(np.float64), inputs=x.numpy(),
                 saturations={p.name: 0 for p in pops})
