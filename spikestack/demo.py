"""`make demo`: the shipped checkpoints through every stage, and one short report.

Spine: the bi-spike checkpoint → NIR file → compiler (loihi2) → artifact → reference executor and Lava
(bit-exactness on a few tokens) → simulator (SOPs, energy, latency) → report and a firing-rate plot.
Language models (`demo_lm.py`): SpikeGPT, SpikeLM and SpikeLLM through the hybrid compiler, the three chip
backends and the simulator.
"""

from __future__ import annotations

import time
from pathlib import Path

from spikestack.errors import SpikestackError
from spikestack.outputs import check_folder_output, strict_json, write_text

SHIPPED = Path(__file__).resolve().parent.parent / "models" / "checkpoints" / "bispike-mlp.pt"
OWN_FILES = ("model.nir", "artifact", "firing_rates.png", "report.json")  # plus demo_lm's artifact folders


def check_demo_args(out: Path, tokens: int, verify_tokens: int, context: int) -> None:
    """Everything the demo could refuse, refused before it writes anything: the counts (the validation text
    bounds --tokens; --verify-tokens checks a prefix of them) and the folder, which may be new, empty, or an
    earlier demo's, but never a file or a folder holding anything else (a user's files are not ours to replace)."""
    from spikestack.demo_lm import output_names
    from spikestack.models.data import load_corpus

    available = len(load_corpus().val_ids) - context
    if not 1 <= tokens <= available:
        raise SpikestackError(f"--tokens {tokens}: must be in 1..{available} (the validation text's windows of "
                              f"{context} characters)")
    if not 1 <= verify_tokens <= tokens:
        raise SpikestackError(f"--verify-tokens {verify_tokens}: must be in 1..{tokens} (at most --tokens)")
    check_folder_output(out, "--out")
    if out.is_dir():
        ours = set(OWN_FILES) | set(output_names())
        foreign = sorted(p.name for p in out.iterdir() if p.name not in ours and not p.name.startswith("."))
        if foreign:
            raise SpikestackError(f"--out {out}: holds {', '.join(foreign[:3])}{' …' if len(foreign) > 3 else ''}, "
                                  "which the demo did not write; choose a new or empty folder")


def run_demo(out: Path, *, tokens: int = 4096, verify_tokens: int = 32) -> int:
    import torch

    from spikestack import api
    from spikestack.evaluation import bpc as _bpc
    from spikestack.evaluation import chain_inputs
    from spikestack.models.bispike_mlp import load_checkpoint
    from spikestack.progress import progress
    from spikestack.simulators.report import human_table, plot_firing_rates

    out = Path(out)
    model, _ = load_checkpoint(SHIPPED)
    check_demo_args(out, tokens, verify_tokens, model.cfg.context)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    stages = iter(progress(range(4), "demo: bispike-mlp", total=4))
    nir_path = out / "model.nir"
    api.export(SHIPPED, nir_path, force=True)  # check_demo_args allowed only an earlier demo's files here
    program = api.compile(nir_path, "loihi2")
    art = api.save(program, out / "artifact")
    program = api.load(art)
    next(stages, None)

    inputs = chain_inputs(program, tokens)
    ids, targets = inputs.inputs, inputs.targets
    with torch.no_grad():
        float_logits = model(torch.from_numpy(ids)).double().numpy()
    trace = api.run(program, inputs).trace
    next(stages, None)
    problems = list(api.verify(program, inputs=ids[:verify_tokens]).problems)
    next(stages, None)
    sim = api.simulate(program, trace).data
    next(stages, None)
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
    write_text(out / "report.json", strict_json(summary, "demo report"))
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
