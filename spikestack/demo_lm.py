"""The language-model half of `make demo`: every shipped LM family compiled as a hybrid program.

For each family (SpikeGPT in its dataflow fold, SpikeLM decoder, SpikeLLM): checkpoint → NIR → compiler (loihi2)
→ artifact → reference executor on validation text (bits per character against the float model) → torch, numpy
and Lava chip backends on a few tokens (every layer, call and step compared) → simulator (energy per token).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

CHECKPOINTS = Path(__file__).resolve().parent.parent / "models" / "checkpoints"
FAMILIES = (  # (label, family, checkpoint, dataflow)
    ("SpikeGPT (dataflow)", "spikegpt", "spikegpt-char-2x64", True),
    ("SpikeLM decoder", "spikelm-dec", "spikelm-dec-tiny", False),
    ("SpikeLLM", "spikellm", "spikellm-char-tiny", False),
)
EVAL_TOKENS = 256
VERIFY_IDS = (1, 4)  # sequences × tokens for the three-way check (Lava is slow)


def output_names() -> list[str]:
    """The artifact folders `run_lm_demo` writes into the demo's folder (the demo may replace only its own)."""
    return [f"{ckpt}{'-dataflow' if dataflow else ''}" for _, _, ckpt, dataflow in FAMILIES]


def _float_logits(graph, ids: np.ndarray) -> np.ndarray:
    import torch

    from spikestack.models.nir.to_torch import nir_to_module, run_tokens

    with torch.no_grad():
        return run_tokens(nir_to_module(graph, dtype=torch.float64), torch.as_tensor(ids)).numpy()


def run_lm_demo(out: Path) -> tuple[list[dict], bool]:
    """One summary per family and whether every three-way check was bit-exact."""
    from spikestack import api
    from spikestack.evaluation import bpc, hybrid_inputs
    from spikestack.models.nir.export import model_to_nir
    from spikestack.progress import progress

    rows, all_exact = [], True
    for label, family, ckpt, dataflow in progress(FAMILIES, "demo: language models"):
        t0 = time.time()
        graph = model_to_nir(family, CHECKPOINTS / f"{ckpt}.pt")
        art = out / f"{ckpt}{'-dataflow' if dataflow else ''}"  # output_names() lists these
        api.save(api.compile(graph, "loihi2", dataflow=dataflow), art)
        program = api.load(art)
        inputs = hybrid_inputs(program, EVAL_TOKENS)
        ids, targets = inputs.inputs, inputs.targets
        trace = api.run(program, inputs).trace
        ref = _float_logits(graph, ids)
        problems = list(api.verify(program, ("torch", "reference", "lava"),
                                   inputs=ids[: VERIFY_IDS[0], : VERIFY_IDS[1]]).problems)
        all_exact &= not problems
        sim = api.simulate(program, trace).data
        rows.append({
            "model": label, "artifact": str(art), "chip_layers": len(program.layers), "cores": len(program.cores),
            "host_stages": len(program.stages), "float_bpc": round(bpc(ref, targets), 4),
            "compiled_bpc": round(bpc(trace.logits, targets), 4),
            "argmax_agreement": round(float((ref.argmax(-1) == trace.logits.argmax(-1)).mean()), 4),
            "bit_exact": not problems, "mismatches": problems,
            "energy_per_token_j": sim["energy_per_token_j"], "profile": sim["profile"],
            "seconds": round(time.time() - t0, 1)})
    return rows, all_exact


def print_rows(rows: list[dict]) -> None:
    print("  language models (hybrid programs: chip layers + ONNX host stages; bit-exact = torch/ref/Lava chips on "
          f"{VERIFY_IDS[0]}x{VERIFY_IDS[1]} tokens)")
    print(f"  {'model':20s} {'layers':>6s} {'cores':>5s} {'float BPC':>9s} {'compiled':>8s} {'argmax':>7s} "
          f"{'bit-exact':>9s} {'energy/token':>12s}")
    for r in rows:
        print(f"  {r['model']:20s} {r['chip_layers']:6d} {r['cores']:5d} {r['float_bpc']:9.4f} "
              f"{r['compiled_bpc']:8.4f} {r['argmax_agreement']:7.1%} {'yes' if r['bit_exact'] else 'NO':>9s} "
              f"{r['energy_per_token_j'] * 1e6:9.3f} uJ")
