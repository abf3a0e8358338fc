"""Per-layer quantization report of a hybrid program: every chip layer's dequantized output against the float
model's value of the same NIR node, on the same ids, call by call.

Errors compound (layer n sees layer n−1's quantized result through the host), which is what a user of the compiled
model gets; the report says where the compounding starts. `compile` attaches it to the artifact's report and
`inspect` prints it.
"""

from __future__ import annotations

import nir
import numpy as np
import torch
from spikestack.compiler.hybrid.ir import HybridProgram, QChipLayer
from spikestack.compiler.kinds import kind_of
from spikestack.models.nir.to_torch import NIRModule, _key, run_tokens
from spikestack.models.threads import one_torch_thread

from .executor import ReferenceChip, Session, check_ids


def dequantize(layer: QChipLayer, env: dict[str, np.ndarray]) -> np.ndarray:
    """The real value the host reconstructs from a chip layer's output (numpy twin of the ONNX dequantizer; each
    kind's `ChipKind.dequantize`)."""
    return kind_of(layer).dequantize(layer, env)


def layer_errors(graph: nir.NIRGraph, program: HybridProgram, ids: np.ndarray) -> dict[str, dict[str, float]]:
    """{layer: max_abs, mean_abs, rel_mean (mean |err| / mean |float|), saturations} over every call.
    Host-injected layers (relays: folded Linears) are left out: their value is formed on the host; it shows in the
    layers after."""
    ids = check_ids(program, ids)
    module = NIRModule(graph).double().eval()
    want: dict[str, list[np.ndarray]] = {}
    hooks = []
    for la in program.layers:
        if kind_of(la).host_injected:
            continue
        value = la.projection.name if la.projection else la.name

        def hook(_m, _args, out, name=la.name):
            want.setdefault(name, []).append((out[0] if isinstance(out, tuple) else out).detach().numpy())
        hooks.append(module.mods[_key(value)].register_forward_hook(hook))
    with torch.no_grad(), one_torch_thread():
        run_tokens(module, torch.as_tensor(ids))
    for h in hooks:
        h.remove()
    got: dict[str, list[np.ndarray]] = {}
    def observe(la: QChipLayer, env: dict[str, np.ndarray]) -> None:
        if not kind_of(la).host_injected:
            got.setdefault(la.name, []).append(dequantize(la, env))

    session = Session(program, ReferenceChip(lean=True), batch=ids.shape[0], observer=observe)  # few calls: no
    # float copy of every layer's weights (the compile's peak memory at the 216M shape)
    try:
        session.forward(ids)
        sats = session.chip.saturations()
    finally:
        session.close()
    report = {}
    for la in program.layers:
        if kind_of(la).host_injected:
            continue  # a folded Linear's value is formed on the host from per-token scalars: it shows downstream
        a, b = np.stack(got[la.name]), np.stack(want[la.name])
        err = np.abs(a - b)
        report[la.name] = {"max_abs": round(float(err.max()), 6), "mean_abs": round(float(err.mean()), 6),
                           "rel_mean": round(float(err.mean() / max(np.abs(b).mean(), 1e-30)), 6),
                           "saturations": int(sats.get(la.name, 0))}
    return report
