"""`make demo`: the shipped checkpoints through every stage, and one short report.

Spine: the bi-spike checkpoint → NIR file → compiler (loihi2) → artifact → reference executor and Lava
(bit-exactness on a few tokens) → simulator (SOPs, energy, latency) → report and a firing-rate plot.
Language models (`demo_lm.py`): SpikeGPT, SpikeLM and SpikeLLM through the hybrid compiler, the three chip
backends and the simulator.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

SHIPPED = Path(__file__).resolve().parent.parent / "models" / "checkpoints" / "bispike-mlp.pt"


def run_demo(out: Path, *, tokens: int = 4096, verify_tokens: int = 32) -> int:
    import torch

    from spikestack.cli import _eval_windows
    from spikestack.compiler import artifact
    from spikestack.compiler.pipeline import compile_graph
    from spikestack.compiler.targets import load_target
    from spikestack.hybrid_cli import bpc as _bpc
    from spikestack.models.bispike_mlp import load_checkpoint
    from spikestack.models.nir.export import export_checkpoint
    from spikestack.runtime import reference
    from spikestack.runtime.verify import verify
    from spikestack.simulators.model import simulate
    from spikestack.simulators.profiles import load_profile
    from spikestack.simulators.report import human_table, plot_firing_rates

    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    nir_path = out / "model.nir"
    export_checkpoint(SHIPPED, nir_path)
    program = compile_graph(nir_path, "loihi2")
    art = artifact.save(program, out / "artifact")
    program = artifact.load(art)

    ids, targets = _eval_windows(program, tokens)
    model, _ = load_checkpoint(SHIPPED)
    with torch.no_grad():
        float_logits = model(torch.from_numpy(ids)).double().numpy()
    trace = reference.run(program, ids)
    _, problems = verify(program, ids[:verify_tokens])
    profile = load_profile(load_target(program.target).default_profile)
    sim = simulate(program, trace, profile)
    plot = plot_firing_rates(trace.firing_rate(), out / "firing_rates.png",
                             f"bispike-mlp on {program.target}: firing rate per layer")
    summary = {
        "checkpoint": str(SHIPPED.name),
        "nir": str(nir_path),
        "artifact": str(art),
        "eval_tokens": int(len(targets)),
        "float_bpc": round(_bpc(float_logits, targets), 4),
        "compiled_bpc": round(_bpc(trace.logits, targets), 4),
        "argmax_agreement": round(float((float_logits.argmax(1) == trace.logits.argmax(1)).mean()), 4),
        "bit_exact": not problems,
        "verify_tokens": verify_tokens,
        "mismatches": problems,
        "saturations": sum(trace.saturations.values()),
        "simulation": {k: v for k, v in sim.items() if k != "per_core"},
        "firing_rate_plot": str(plot),
        "seconds": round(time.time() - t0, 1),
    }
    from spikestack.demo_lm import print_rows, run_lm_demo

    lm_rows, lm_exact = run_lm_demo(out)
    summary["language_models"] = lm_rows
    summary["seconds"] = round(time.time() - t0, 1)
    (out / "report.json").write_text(json.dumps(summary, indent=1))
    print("spikestack demo: bispike-mlp (SpikeLM elastic bi-spikes) → NIR → loihi2 → reference + Lava → simulator")
    print(f"  float model BPC          {summary['float_bpc']:.4f}   ({summary['eval_tokens']} validation chars)")
    print(f"  compiled (fixed point)   {summary['compiled_bpc']:.4f}   "
          f"argmax agreement {summary['argmax_agreement']:.1%}")
    verdict = "yes" if not problems else "NO: " + "; ".join(problems)
    print(f"  bit-exact torch/ref/Lava {verdict}"
          f"   ({verify_tokens} tokens x {program.steps} steps, every layer)")
    print(f"  cores                    {sim['cores']} on {sim['tiles']} tile(s)")
    print(f"  SOPs                     {sim['sops']:.4g} total, {sim['sops_per_token']:.4g} per token")
    print("  " + human_table(sim).replace("\n", "\n  "))
    print_rows(lm_rows)
    print(f"  plot {plot}; report {out / 'report.json'}; {summary['seconds']} s")
    return 0 if not problems and lm_exact else 1


if __name__ == "__main__":
    raise SystemExit(run_demo(Path("build/demo")))
