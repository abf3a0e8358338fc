"""A second, independent implementation of the chip-layer semantics (compiler/hybrid/ir.py) in torch tensors.

Why: `verify` needs three backends that share nothing but the artifact, so a slip in the numpy reference
(`chip.py`) cannot hide. This one is written from the IR docstring with torch integer ops (int64 tensors,
`torch.div(rounding_mode="trunc")` for Lava's truncating decays) and vectorises the GIF steps differently
(closed form: s_k = clamp(u − k(L−1), 0, L−1)). Widths and shifts come from the program's target, as there.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from spikestack.compiler.hybrid.ir import HybridProgram, QChipLayer
from spikestack.compiler.kinds import kind_of
from spikestack.compiler.targets import Target
from torch import Tensor


def _trunc_decay(x: Tensor, keep: int, shift: int) -> Tensor:
    """x · keep / 2^shift truncated toward zero (Lava's decays)."""
    return torch.div(x * keep, 1 << shift, rounding_mode="trunc")


def _bispike(chip: TorchChip, la: QChipLayer, x: Tensor, st: dict[str, Tensor], call: int) -> Tensor:
    t = call % la.period
    if t == 0:
        u = x.clone()
    else:
        carry = torch.as_tensor(np.array(la.carry[t - 1]), dtype=torch.int64)
        u = st["u"] * carry[st["s"] + la.levels]
        u = torch.div(u + (1 << (la.carry_shift - 1)), 1 << la.carry_shift, rounding_mode="floor") + x
    state_max = chip.target.state_max
    chip.sat[la.name] += int((u.abs() > state_max).sum())
    u = u.clamp(-state_max, state_max)
    theta = torch.as_tensor(np.array(la.thresholds[t]), dtype=torch.int64)
    s = (u[..., None] > theta).sum(-1) - (u[..., None] < -theta).sum(-1)
    st["u"], st["s"] = u, s
    return (s * int(la.amplitude[t]))[None]


def _lif(chip: TorchChip, la: QChipLayer, x: Tensor, st: dict[str, Tensor], call: int) -> Tensor:
    u = st.get("u", torch.zeros_like(x))
    v = st.get("v", torch.zeros_like(x))
    target = chip.target
    bits, shift, half = target.decay_bits, target.activation_shift, 1 << (target.state_bits - 1)
    u = _trunc_decay(u, (1 << bits) - la.du - 1, bits) + x * (1 << shift)
    u = torch.where(u > half, u - 2 * half, u)
    u = torch.where(u <= -half, u + 2 * half, u)
    v = (_trunc_decay(v, (1 << bits) - la.dv, bits) + u).clamp(-half + 1, half - 1)
    s = (v > la.vth * (1 << shift)).long()
    st["u"], st["v"] = u, v * (1 - s)
    return s[None]


def _gif(chip: TorchChip, la: QChipLayer, x: Tensor, st: dict[str, Tensor], call: int) -> Tensor:
    chip.sat[la.name] += int((x < 0).sum())
    u = x.clamp_min(0)
    k = torch.arange(la.steps, dtype=torch.int64).view(-1, *([1] * x.ndim))
    return (u[None] - k * (la.levels - 1)).clamp(0, la.levels - 1)


def _relay(chip: TorchChip, la: QChipLayer, x: Tensor, st: dict[str, Tensor], call: int) -> Tensor:
    chip.sat[la.name] += int((x.abs() > la.levels).sum())
    return x.clamp(-la.levels, la.levels)[None]


def _readout(chip: TorchChip, la: QChipLayer, x: Tensor, st: dict[str, Tensor], call: int) -> Tensor:
    """Accumulators over the token's calls (runtime/neurons.py `readout_step` in torch): kept in st["u"]."""
    state_max = chip.target.state_max
    acc = x.clone() if call % la.period == 0 else st["u"] + x
    chip.sat[la.name] += int((acc.abs() > state_max).sum())
    st["u"] = acc.clamp(-state_max, state_max)
    return torch.zeros((1, *acc.shape), dtype=torch.int64)  # no events: the value leaves as the output


TorchStep = Callable[["TorchChip", QChipLayer, Tensor, dict[str, Tensor], int], Tensor]
# one torch step per chip kind (compiler/kinds/): payloads int64 [steps, ..., width], counting saturations
STEPS: dict[str, TorchStep] = {"bispike": _bispike, "lif": _lif, "gif": _gif, "relay": _relay,
                               "readout": _readout}


class TorchChip:
    name = "torch"

    def __init__(self) -> None:
        self.state: dict[str, dict[str, Tensor]] = {}
        self.sat: dict[str, int] = {}
        self.target: Target | None = None

    def reset(self, program: HybridProgram, lead: tuple[int, ...]) -> None:
        self.state = {la.name: {} for la in program.layers}
        self.sat = {la.name: 0 for la in program.layers}
        self.target = program.target_spec

    def segment(self, layers, inputs, call):
        outputs, payloads = {}, {}
        for la in layers:
            x = torch.as_tensor(np.asarray(inputs[la.input]), dtype=torch.int64)
            if la.source is not None:  # chained: the source's dendritic sums (one group) plus the neuron's bias
                x = x.select(-2, 0) + torch.as_tensor(np.array(la.bias), dtype=torch.int64)
            step = STEPS.get(la.kind)
            if step is None:
                raise NotImplementedError(f"layer {la.name!r}: no torch step for chip kind {la.kind!r}")
            pay = step(self, la, x, self.state[la.name], call)
            payloads[la.name] = pay.numpy()
            p = la.projection
            if p is None:
                out = kind_of(la).chip_output(pay, self.state[la.name])
                outputs[la.output] = np.asarray(out.numpy() if isinstance(out, Tensor) else out)
                continue
            w = torch.as_tensor(np.array(p.weight), dtype=torch.float64)
            onehot = torch.nn.functional.one_hot(torch.as_tensor(np.array(p.groups), dtype=torch.int64),
                                                 p.n_groups).to(torch.float64)  # [in, G]
            total = pay.sum(0).to(torch.float64)
            acc = torch.einsum("...i,ig,oi->...go", total, onehot, w)
            outputs[la.output] = acc.round().long().numpy()
        return outputs, payloads

    def saturations(self) -> dict[str, int]:
        return dict(self.sat)

    def close(self) -> None:
        pass
