"""Behaviour snapshot of every shipped checkpoint (issue #12, "Behaviour kept"): record before a redesign, compare
after it, bit for bit.

Why: the redesign of compiler/runtime/simulators must not change what a compiled model computes. `record` runs
each variant below through the current code (compile as `spikestack compile` does, run the reference backend on
the windows `spikestack run` uses, simulate as `spikestack simulate --json`, generate as `spikestack generate`)
and saves, per variant, one `.npz` (every integer spike/payload array of the trace, the input ids, the logits'
exact float bytes, the readout) and one `.json` (run summary, simulator report, generated text, the calibration's
per-layer quantisation error, artifact hashes, the rest of the compile report). `compare` diffs two snapshots and
exits 1 on any behaviour difference; the artifact hashes, the rest of the compile report and the environment are
informational (the artifact format and the report's layout may change by design).

Everything that touches the spikestack API lives in the "current API" section (`collect` and its helpers): after
the redesign, re-point those at the new public API and leave `compare` and the file format alone.

    # before: a pristine worktree of the old commit, installed non-editably into /work/baseline_site (≈ 30 s)
    cd /work/baseline && PYTHONPATH=/work/baseline_site /work/main/.venv/bin/python bench/behaviour_snapshot.py \
        record /work/snapshots/before
    # after, in the redesigned tree; then the table (exit 1 on any behaviour difference)
    cd /work/main && .venv/bin/python bench/behaviour_snapshot.py record /work/snapshots/after
    .venv/bin/python bench/behaviour_snapshot.py compare /work/snapshots/before /work/snapshots/after [--json]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # before numpy loads BLAS: one
    os.environ.setdefault(_var, "1")  # thread, so float reductions sum in the same order on every run

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from importlib import metadata  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = ROOT / "models" / "checkpoints"
FORMAT_VERSION = 1
RUN_TOKENS = 64  # `spikestack run --tokens 64`
SIMULATE_TOKENS = 64  # `spikestack simulate --json --tokens 64`
GENERATE_PROMPT, GENERATE_TOKENS = "The ", 8  # `spikestack generate ART --prompt "The " --tokens 8`
FOREIGN_LIF = "foreign-lif"  # source name of the LIF chain built below with stock nir
FOREIGN_SEED = 12


@dataclass(frozen=True)
class Variant:
    """One compiled configuration: `spikestack compile SOURCE --target … [--encoding …] [--dataflow] [--steps …]`.
    `float_only`: an ANN twin, which does not compile; only its float logits (and greedy text) are recorded."""

    name: str
    source: str  # checkpoint stem under models/checkpoints, or FOREIGN_LIF
    target: str = "loihi2"
    encoding: str | None = None
    dataflow: bool = False
    steps: int | None = None
    generate: bool = True  # the bidirectional encoder and the foreign LIF chain do not generate
    float_only: bool = False


VARIANTS: tuple[Variant, ...] = (
    Variant("bispike-mlp", "bispike-mlp"),
    Variant("bispike-mlp-graded", "bispike-mlp", encoding="graded"),
    Variant("bispike-mlp-unary", "bispike-mlp", encoding="unary"),
    Variant("bispike-mlp-bitserial", "bispike-mlp", encoding="bitserial"),
    Variant("spikegpt-char-2x64", "spikegpt-char-2x64"),
    Variant("spikegpt-char-2x64-dataflow", "spikegpt-char-2x64", dataflow=True),
    Variant("spikegpt-char-2x64-dataflow-loihi1", "spikegpt-char-2x64", target="loihi1", dataflow=True),
    Variant("spikellm-char-tiny", "spikellm-char-tiny"),
    Variant("spikellm-char-tiny-bitserial", "spikellm-char-tiny", encoding="bitserial"),
    Variant("spikelm-dec-tiny", "spikelm-dec-tiny"),
    Variant("spikelm-enc-tiny", "spikelm-enc-tiny", generate=False),
    Variant("foreign-lif-chain", FOREIGN_LIF, steps=16, generate=False),
    Variant("bispike-mlp-ann", "bispike-mlp-ann", float_only=True),
    Variant("spikegpt-char-2x64-ann", "spikegpt-char-2x64-ann", float_only=True),
    Variant("spikelm-dec-tiny-ann", "spikelm-dec-tiny-ann", float_only=True),
    Variant("spikelm-enc-tiny-ann", "spikelm-enc-tiny-ann", float_only=True, generate=False),
)


# ---- current API: everything below up to "snapshot files" calls spikestack; re-point it after the redesign ----


def collect(variant: Variant, calibrate: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(arrays, record) of one variant. Array names: `ids` (inputs), `logits`, `readout` (chain programs),
    `trace/<kind>/<layer>` (spikes, payloads, host_tensors, inputs). The record holds JSON values only.

    Through the public API (`spikestack.api`: compile, save, load, run, simulate, generate) and its inputs
    (`spikestack.evaluation.eval_inputs`), the same calls and inputs `spikestack compile|run|simulate|generate`
    make."""
    if variant.float_only:
        return _collect_float(variant)
    from spikestack import api

    with tempfile.TemporaryDirectory() as tmp:
        source = _foreign_lif_nir(Path(tmp)) if variant.source == FOREIGN_LIF else CHECKPOINTS / f"{variant.source}.pt"
        art = Path(tmp) / "artifact"
        api.save(api.compile(source, variant.target, steps=variant.steps, encoding=variant.encoding,
                             calibrate=calibrate, dataflow=variant.dataflow), art)
        program = api.load(art)  # run what every command runs: the artifact as read back
        hybrid = api.kind_of(program) == "hybrid"
        arrays, run_summary = _run_hybrid(program) if hybrid else _run_chain(program)
        record = {
            "run": run_summary,
            "simulate": json.loads(json.dumps(api.simulate(art, tokens=SIMULATE_TOKENS).to_dict())),
            "generation": api.generate(program, GENERATE_PROMPT, GENERATE_TOKENS) if variant.generate else None,
            "artifact": _artifact_hashes(art),
            "calibration": json.loads(json.dumps(program.report.get("calibration"))),
            "compile_report": json.loads(json.dumps({k: v for k, v in program.report.items() if k != "calibration"})),
        }
    return arrays, record


def _run_chain(program: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """`spikestack run ART --tokens RUN_TOKENS` on a chain artifact (spine network or foreign LIF chain)."""
    from spikestack import api
    from spikestack.evaluation import bpc, eval_inputs

    data = eval_inputs(program, RUN_TOKENS)
    trace = api.run(program, data.inputs).trace
    arrays = {"ids": np.asarray(data.inputs), "logits": trace.logits, "readout": trace.readout,
              "trace/inputs": trace.inputs}
    arrays |= {f"trace/spikes/{k}": v for k, v in trace.spikes.items()}
    summary: dict[str, Any] = {"tokens": trace.tokens, "firing_rate": trace.firing_rate(),
                               "saturations": dict(trace.saturations)}
    if data.targets is not None:
        summary["bpc"] = bpc(trace.logits, data.targets)
    else:
        summary["output_spike_counts"] = trace.readout.tolist()
    return arrays, json.loads(json.dumps(summary))


def _run_hybrid(program: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """`spikestack run ART --tokens RUN_TOKENS` on a hybrid (language-model) artifact."""
    from spikestack import api
    from spikestack.evaluation import bpc, eval_inputs

    data = eval_inputs(program, RUN_TOKENS)
    ids = data.inputs
    trace = api.run(program, ids).trace
    arrays = {"ids": np.asarray(ids), "logits": trace.logits}
    arrays |= {f"trace/payloads/{k}": v for k, v in trace.payloads.items()}
    arrays |= {f"trace/host_tensors/{k}": v for k, v in trace.host_tensors.items()}
    summary: dict[str, Any] = {"family": program.family, "positions": int(ids.size), "calls": trace.calls,
                               "events": trace.events(), "saturations": dict(trace.saturations)}
    if data.targets is not None:
        summary["bpc"] = bpc(trace.logits, data.targets)
    return arrays, json.loads(json.dumps(summary))


def _collect_float(variant: Variant) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """An ANN twin: float logits of its torch model on the windows its spiking twin runs on, and greedy text."""
    import torch
    from spikestack.models.bispike_mlp import context_windows
    from spikestack.models.data import load_corpus
    from spikestack.models.registry import checkpoint_family, family_function

    from spikestack import api
    from spikestack.evaluation import sample_ids

    path = CHECKPOINTS / f"{variant.source}.pt"
    family = checkpoint_family(path)
    model, vocab = family_function(path, "load_checkpoint")(path)
    if family == "bispike-mlp":
        ids, _ = context_windows(load_corpus().val_ids[: RUN_TOKENS + model.cfg.context], model.cfg.context)
    else:  # SpikeGPT streams tokens (one window of RUN_TOKENS); SpikeLM windows are its context
        ids = sample_ids(len(vocab), 0 if family == "spikegpt" else model.cfg.context, RUN_TOKENS).inputs
    with torch.no_grad():
        out = model(torch.from_numpy(np.asarray(ids, np.int64)))
    logits = (out[0] if isinstance(out, tuple) else out).numpy()  # the encoder also returns class logits
    text = api.generate(path, GENERATE_PROMPT, GENERATE_TOKENS) if variant.generate else None
    return {"ids": np.asarray(ids), "logits": logits}, {"generation": text, "family": family}


def _foreign_lif_nir(folder: Path) -> Path:
    """Input → Affine → LIF → Affine → CubaLIF → Output with fixed seeded weights, written with stock nir.
    The second Affine has zero bias: a CubaLIF's synaptic current takes no constant input on the chip."""
    import nir

    rng = np.random.default_rng(FOREIGN_SEED)
    n_in, hidden, n_out = 10, 12, 4
    graph = nir.NIRGraph.from_list(
        nir.Input(input_type={"input": np.array([n_in])}),
        nir.Affine(weight=rng.normal(0, 3, (hidden, n_in)), bias=rng.normal(0, 2, hidden)),
        nir.LIF(tau=np.full(hidden, 1e-3), r=np.ones(hidden), v_leak=np.zeros(hidden),
                v_threshold=np.ones(hidden), v_reset=np.zeros(hidden)),
        nir.Affine(weight=rng.normal(0, 3, (n_out, hidden)), bias=np.zeros(n_out)),
        nir.CubaLIF(tau_syn=np.full(n_out, 5e-4), tau_mem=np.full(n_out, 2e-3), r=np.ones(n_out),
                    v_leak=np.full(n_out, 0.2), v_threshold=np.ones(n_out), v_reset=np.zeros(n_out),
                    w_in=np.full(n_out, 30.0)),
        nir.Output(output_type={"output": np.array([n_out])}),
    )
    path = folder / "foreign_lif.nir"
    nir.write(path, graph)
    return path


def _artifact_hashes(art: Path) -> dict[str, Any]:
    manifest = json.loads((art / "manifest.json").read_text())
    files = {p.relative_to(art).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(art.rglob("*")) if p.is_file()}
    return {"content_sha256": manifest.get("content_sha256"), "files": files}


def environment() -> dict[str, Any]:
    """Versions that can change float bits (informational in `compare`)."""
    import spikestack

    versions = {}
    for dist in ("numpy", "torch", "onnxruntime", "onnx", "nir", "lava-nc"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {"python": sys.version.split()[0], "spikestack_path": str(Path(spikestack.__file__).parent),
            "versions": versions}


# ---- snapshot files: <variant>.npz + <variant>.json, index.json ----


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def record(out_dir: Path, only: list[str], calibrate: int) -> int:
    import torch

    torch.set_num_threads(1)  # fixed reduction order in the float calibration and the ANN twins
    out_dir.mkdir(parents=True, exist_ok=True)
    variants = [v for v in VARIANTS if not only or v.name in only]
    unknown = set(only) - {v.name for v in VARIANTS}
    if unknown:
        print(f"unknown variant(s) {sorted(unknown)}; known: {', '.join(v.name for v in VARIANTS)}", file=sys.stderr)
        return 2
    seconds: dict[str, float] = {}
    for variant in variants:
        start = time.perf_counter()
        arrays, rec = collect(variant, calibrate)
        np.savez_compressed(out_dir / f"{variant.name}.npz", **arrays)
        rec = {"variant": asdict(variant), "calibrate": calibrate, "logits_sha256": _sha(arrays["logits"]),
               "arrays": {k: {"dtype": str(a.dtype), "shape": list(a.shape), "sha256": _sha(a)}
                          for k, a in sorted(arrays.items())}, **rec}
        (out_dir / f"{variant.name}.json").write_text(json.dumps(rec, indent=1, sort_keys=True) + "\n")
        seconds[variant.name] = round(time.perf_counter() - start, 2)
        print(f"{variant.name:40s} {seconds[variant.name]:7.2f} s  {len(arrays)} arrays", flush=True)
    index = {"format": "spikestack-behaviour-snapshot", "version": FORMAT_VERSION,
             "variants": [v.name for v in variants], "settings": {"run_tokens": RUN_TOKENS,
             "simulate_tokens": SIMULATE_TOKENS, "prompt": GENERATE_PROMPT, "generate_tokens": GENERATE_TOKENS,
             "calibrate": calibrate}, "environment": environment(), "seconds": seconds}
    (out_dir / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
    print(f"recorded {len(variants)} variants into {out_dir} in {sum(seconds.values()):.1f} s")
    return 0


def _load(snapshot: Path, name: str) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    if not (snapshot / f"{name}.json").exists():
        return None
    with np.load(snapshot / f"{name}.npz") as z:
        arrays = {k: z[k] for k in z.files}
    return arrays, json.loads((snapshot / f"{name}.json").read_text())


def _flatten(obj: Any, prefix: str = "") -> dict[str, str]:
    """Leaf path → canonical JSON text (so NaN equals NaN and 1 vs 1.0 counts as a difference)."""
    if isinstance(obj, dict):
        out: dict[str, str] = {}
        for k in sorted(obj):
            out |= _flatten(obj[k], f"{prefix}.{k}" if prefix else str(k))
        return out or {prefix: "{}"}
    if isinstance(obj, list):
        out = {}
        for i, v in enumerate(obj):
            out |= _flatten(v, f"{prefix}[{i}]")
        return out or {prefix: "[]"}
    return {prefix or "value": json.dumps(obj)}


def _json_diff(a: Any, b: Any) -> list[str]:
    """Leaves of A missing or changed in B. A leaf only B has (a report key added since A was recorded) is no
    change of behaviour: every figure A had must still be there with the same value."""
    fa, fb = _flatten(a), _flatten(b)
    return [f"{k}: {fa[k]} vs {fb.get(k, '<missing>')}" for k in sorted(fa) if fa[k] != fb.get(k)]


def _values_differing(a: np.ndarray, b: np.ndarray) -> int:
    """Elements whose bytes differ (a float NaN equal to itself, -0.0 unequal to 0.0: bits, not values)."""
    bytes_a = np.ascontiguousarray(a).view(np.uint8).reshape(a.size, -1)
    bytes_b = np.ascontiguousarray(b).view(np.uint8).reshape(b.size, -1)
    return int((bytes_a != bytes_b).any(axis=1).sum())


def _array_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray], names: set[str]) -> list[str]:
    out = []
    for k in sorted(names):
        if k not in a or k not in b:
            out.append(f"{k}: only in {'B' if k not in a else 'A'}")
        elif a[k].dtype != b[k].dtype or a[k].shape != b[k].shape:
            out.append(f"{k}: {a[k].dtype}{list(a[k].shape)} vs {b[k].dtype}{list(b[k].shape)}")
        elif np.ascontiguousarray(a[k]).tobytes() != np.ascontiguousarray(b[k]).tobytes():
            out.append(f"{k}: {_values_differing(a[k], b[k])} of {a[k].size} values differ in their bytes")
    return out


CHECKS = ("arrays", "logits", "run", "simulate", "generation", "calibration")  # behaviour: any difference fails
INFO = ("artifact", "compile_report", "sources")  # informational: format, report layout, citation wording


def _without_sources(record):
    return {k: v for k, v in record.items() if k != "profile_sources"} if isinstance(record, dict) else record


def compare_variant(a: tuple[dict, dict] | None, b: tuple[dict, dict] | None) -> dict[str, list[str]]:
    """Check name → list of differences (empty: equal)."""
    if a is None or b is None:
        return {"missing": [f"only in {'A' if b is None else 'B'}"]}
    (arr_a, rec_a), (arr_b, rec_b) = a, b
    traced = (arr_a.keys() | arr_b.keys()) - {"logits"}
    diffs = {"arrays": _array_diff(arr_a, arr_b, traced), "logits": _array_diff(arr_a, arr_b, {"logits"})}
    for key in ("run", "simulate", "generation", "calibration", "compile_report"):
        diffs[key] = _json_diff(_without_sources(rec_a.get(key)), _without_sources(rec_b.get(key)))
    # the profiles' citation text (profile_sources) is wording, not behaviour: compared, but informational
    diffs["sources"] = _json_diff((rec_a.get("simulate") or {}).get("profile_sources"),
                                  (rec_b.get("simulate") or {}).get("profile_sources"))
    art_a, art_b = rec_a.get("artifact") or {}, rec_b.get("artifact") or {}
    diffs["artifact"] = _json_diff(art_a, art_b)
    return diffs


def compare(dir_a: Path, dir_b: Path, as_json: bool) -> int:
    index_a = json.loads((dir_a / "index.json").read_text())
    index_b = json.loads((dir_b / "index.json").read_text())
    names = list(dict.fromkeys(index_a["variants"] + index_b["variants"]))
    results = {n: compare_variant(_load(dir_a, n), _load(dir_b, n)) for n in names}
    failed = sorted(n for n, d in results.items() if any(d.get(c) for c in ("missing", *CHECKS)))
    env = {"settings": _json_diff(index_a["settings"], index_b["settings"]),
           "environment": _json_diff(index_a["environment"], index_b["environment"])}
    if as_json:
        print(json.dumps({"a": str(dir_a), "b": str(dir_b), "equal": not failed, "failed": failed,
                          "variants": results, **env}, indent=1))
        return 1 if failed else 0
    print(f"A = {dir_a}\nB = {dir_b}")
    cols = (*CHECKS, *INFO)
    print(f"{'variant':36s} " + " ".join(f"{c:>12s}" for c in cols))
    for n, d in results.items():
        if "missing" in d:
            print(f"{n:36s} {d['missing'][0]}")
            continue
        cells = ["equal" if not d[c] else f"{len(d[c])} diff" for c in cols]
        print(f"{n:36s} " + " ".join(f"{c:>12s}" for c in cells))
    for n, d in results.items():
        for check, lines in d.items():
            for line in lines[:20]:
                print(f"  {n} {check}{' (info)' if check in INFO else ''}: {line}")
            if len(lines) > 20:
                print(f"  {n} {check}{' (info)' if check in INFO else ''}: … {len(lines) - 20} more")
    for what, lines in env.items():
        for line in lines:
            print(f"  {what} (info): {line}")
    print(f"behaviour: {'ALL EQUAL' if not failed else 'DIFFERS in ' + ', '.join(failed)} "
          f"({len(names) - len(failed)}/{len(names)} variants equal; artifact hashes and compile reports "
          "informational)")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("record", help="compile, run, simulate and generate every variant; write OUT_DIR")
    r.add_argument("out_dir", type=Path)
    r.add_argument("--only", nargs="*", default=[], help="variant names (default: all)")
    r.add_argument("--calibrate", type=int, default=256,
                   help="`compile --calibrate N` (the CLI default, 256): the per-layer error in the compile report")
    c = sub.add_parser("compare", help="diff two snapshots; exit 1 on any behaviour difference")
    c.add_argument("a_dir", type=Path)
    c.add_argument("b_dir", type=Path)
    c.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = p.parse_args(argv)
    if args.command == "record":
        return record(args.out_dir, args.only, args.calibrate)
    return compare(args.a_dir, args.b_dir, args.json)


if __name__ == "__main__":
    sys.exit(main())
