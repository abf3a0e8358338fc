"""`spikestack` command line: train, export, compile, run, simulate, verify, generate, targets, demo.

User errors (SpikestackError and its families) print one line `spikestack: error: …` and exit 2; a traceback
appears only with --debug.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from spikestack.errors import SpikestackError, VerificationError

EXIT_USER_ERROR = 2
DEFAULT_VERIFY_BACKENDS = "torch,reference,lava"


INPUT_EVENT_RATE = 0.2  # fraction of input channels active per step for foreign (LIF) artifacts
INPUT_SEED = 0


def _eval_windows(program, n_tokens: int):
    """Token artifacts: the first n_tokens (context, next char) pairs of the pydoc validation split.
    Foreign LIF artifacts (delayed timing): n_tokens samples of seeded Bernoulli input events, no targets."""
    import numpy as np

    if program.timing == "delayed":
        rng = np.random.default_rng(INPUT_SEED)
        shape = (n_tokens, program.steps, program.host_input.size)
        return (rng.random(shape) < INPUT_EVENT_RATE).astype(np.int64), None

    from spikestack.models.data import load_corpus

    corpus = load_corpus()
    if program.host_input.table.shape[0] != corpus.vocab_size:
        raise SpikestackError(f"artifact vocabulary has {program.host_input.table.shape[0]} ids, the corpus "
                              f"{corpus.vocab_size}; this artifact was not trained on the shipped corpus")
    from spikestack.models.bispike_mlp import context_windows

    ctx = program.host_input.context
    return context_windows(corpus.val_ids[: n_tokens + ctx], ctx)


def cmd_train(args: argparse.Namespace) -> int:
    from spikestack.models.registry import train_function

    metrics = train_function(args.family)(Path(args.output), steps=args.steps, seed=args.seed,
                                          spiking=not args.ann, progress=True)
    print(json.dumps(metrics, indent=1))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from spikestack.models.registry import checkpoint_family

    checkpoint_family(Path(args.checkpoint))  # one clear line for a missing or foreign file
    from spikestack.models.nir.export import export_any

    graph = export_any(Path(args.checkpoint), Path(args.output))
    print(f"wrote {args.output}: {len(graph.nodes)} nodes")
    return 0


def _calibrated(program, nir_path: Path, tokens: int):
    """Attach the per-layer quantisation error on `tokens` validation windows to the program's report."""
    if tokens <= 0 or program.timing != "token":
        return program
    from dataclasses import replace

    from spikestack.compiler.from_nir import from_nir, read_nir
    from spikestack.runtime.calibration import layer_errors

    try:
        ids, _ = _eval_windows(program, tokens)
    except SpikestackError:  # not a model of the shipped corpus: no sample data to calibrate on
        return program
    errors = layer_errors(from_nir(read_nir(nir_path)), program, ids)
    return replace(program, report=dict(program.report, calibration={"tokens": tokens, "layers": errors}))


def compile_to(source: Path, target: str, out: Path, dump_after: str | None = None, *, dt: float | None = None,
               steps: int | None = None, encoding: str | None = None, calibrate: int = 0, dataflow: bool = False):
    from spikestack.compiler import artifact
    from spikestack.compiler.pipeline import compile_graph

    if not source.exists():
        raise SpikestackError(f"{source}: file not found")
    if source.suffix in (".pt", ".pth"):
        from spikestack.models.registry import checkpoint_family

        family = checkpoint_family(source)
        if family != "bispike-mlp":
            from spikestack import hybrid_cli
            from spikestack.models.nir.export import model_to_nir

            return hybrid_cli.compile_graph(model_to_nir(family, source), target, out, encoding=encoding,
                                            dump_after=dump_after, calibrate=calibrate, dataflow=dataflow)
        from spikestack.models.nir.export import export_checkpoint

        _no_dataflow(dataflow, source)
        with tempfile.TemporaryDirectory() as tmp:
            nir_path = Path(tmp) / "model.nir"
            export_checkpoint(source, nir_path)
            program = compile_graph(nir_path, target, dump_after=dump_after,
                                    dump_dir=out.parent / f"{out.name}.dump", encoding=encoding)
            program = _calibrated(program, nir_path, calibrate)
    else:
        from spikestack import hybrid_cli
        from spikestack.compiler.from_nir import read_nir

        graph = read_nir(source)
        if hybrid_cli.is_hybrid_graph(graph):
            return hybrid_cli.compile_graph(graph, target, out, encoding=encoding, dump_after=dump_after,
                                            calibrate=calibrate, dataflow=dataflow)
        _no_dataflow(dataflow, source)
        program = compile_graph(source, target, dump_after=dump_after, dump_dir=out.parent / f"{out.name}.dump",
                                dt=dt, steps=steps, encoding=encoding)
        program = _calibrated(program, source, calibrate)
    artifact.save(program, out)
    return program


def _no_dataflow(dataflow: bool, source: Path) -> None:
    if dataflow:
        raise SpikestackError(f"{source}: --dataflow folds language-model graphs (SpikeGPT); this is a chain program")


def _is_hybrid(program) -> bool:
    from spikestack.compiler.hybrid.ir import HybridProgram

    return isinstance(program, HybridProgram)


def cmd_compile(args: argparse.Namespace) -> int:
    program = compile_to(Path(args.source), args.target, Path(args.output), args.dump_after, dt=args.dt,
                         steps=args.steps, encoding=args.encoding, calibrate=args.calibrate,
                         dataflow=args.dataflow)
    if _is_hybrid(program):
        print(f"wrote {args.output}: target {program.target}, {len(program.cores)} cores, "
              f"{len(program.layers)} chip layers, {len(program.stages)} host stages ({program.family})")
        return 0
    print(f"wrote {args.output}: target {program.target}, {len(program.cores)} cores, "
          f"{len(program.populations)} layers")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from spikestack.compiler import artifact
    from spikestack.runtime.verify import backend_runner

    program = artifact.load(args.artifact)
    if _is_hybrid(program):
        from spikestack import hybrid_cli

        return hybrid_cli.cmd_run(program, args.backend, args.tokens, args.trace)
    ids, targets = _eval_windows(program, args.tokens)
    trace = backend_runner(args.backend)(program, ids)
    if args.trace and Path(args.trace).suffix == ".nir":
        from spikestack.runtime.nir_data import write_nir_data

        write_nir_data(trace, args.trace)
    elif args.trace:
        trace.save(args.trace)
    result = {"backend": args.backend, "tokens": trace.tokens, "firing_rate": trace.firing_rate(),
              "saturations": trace.saturations}
    if targets is not None:
        from spikestack.hybrid_cli import bpc

        result["bpc"] = round(bpc(trace.logits, targets), 4)
    else:
        result["output_spike_counts"] = trace.readout.tolist()
    print(json.dumps(result, indent=1))
    return 0


def simulate_artifact(art: Path, profile_name: str | None, tokens: int) -> dict:
    from spikestack.compiler import artifact
    from spikestack.compiler.targets import load_target
    from spikestack.runtime.reference import run
    from spikestack.simulators.model import simulate
    from spikestack.simulators.profiles import load_profile

    program = artifact.load(art)
    profile = load_profile(profile_name or load_target(program.target).default_profile)
    if _is_hybrid(program):
        from spikestack import hybrid_cli

        return hybrid_cli.simulate(program, profile, tokens)
    ids, _ = _eval_windows(program, tokens)
    return simulate(program, run(program, ids), profile)


def cmd_simulate(args: argparse.Namespace) -> int:
    report = simulate_artifact(Path(args.artifact), args.profile, args.tokens)
    plots = None
    if args.plots:
        from spikestack.simulators.plots import write_all

        plots = write_all(report, Path(args.plots))
    if args.report:
        from spikestack.simulators.report import write_markdown

        write_markdown(report, Path(args.report), plots)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        from spikestack.simulators.report import human_table

        print(human_table(report))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from spikestack.simulators.sweep import format_table, sweep, write_table

    if args.output and Path(args.output).suffix not in (".csv", ".json"):
        raise SpikestackError(f"{args.output}: sweep output must end in .csv or .json")
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    profiles = [p.strip() for p in args.profiles.split(",") if p.strip()]
    encodings = [e.strip() for e in args.encodings.split(",") if e.strip()]
    rows = sweep(Path(args.source), targets, profiles, args.tokens, _eval_windows, workers=args.workers,
                 encodings=encodings)
    if args.output:
        write_table(rows, Path(args.output))
    print(format_table(rows))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from spikestack.compiler import artifact
    from spikestack.runtime.verify import BACKENDS, verify

    backends = tuple(b.strip() for b in args.backends.split(","))
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown or len(backends) < 2:
        raise SpikestackError(f"--backends needs two or more of {', '.join(BACKENDS)}, got {args.backends!r}")
    program = artifact.load(args.artifact)
    if _is_hybrid(program):
        from spikestack import hybrid_cli

        return hybrid_cli.cmd_verify(program, backends, args.tokens)
    if program.timing == "delayed" and "torch" in backends:
        if args.backends != DEFAULT_VERIFY_BACKENDS:
            raise SpikestackError("the torch fake-quant model covers token (bi-spike) programs only; "
                                  "use --backends reference,lava for LIF artifacts")
        backends = tuple(b for b in backends if b != "torch")
    ids, _ = _eval_windows(program, args.tokens)
    traces, problems = verify(program, ids, backends)
    if problems:
        raise VerificationError("; ".join(problems))
    n = traces[backends[0]]
    events = sum(int((s != 0).sum()) for s in n.spikes.values())
    print(f"bit-exact: yes ({', '.join(backends)}; {n.tokens} tokens x {program.steps} steps, "
          f"{len(n.spikes)} spiking layers, {events} spikes, readout equal)")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    source = Path(args.checkpoint)
    if source.is_dir():  # a compiled artifact: generate on a backend
        from spikestack.compiler import artifact
        from spikestack.models.data import load_corpus
        from spikestack.runtime.generate import generate
        from spikestack.runtime.verify import backend_runner

        program = artifact.load(source)
        if _is_hybrid(program):
            from spikestack import hybrid_cli

            return hybrid_cli.cmd_generate(program, args.prompt, args.tokens, args.backend)
        _eval_windows(program, 1)  # checks the artifact's vocabulary is the shipped corpus's
        text, _ = generate(program, load_corpus().vocab, args.prompt, args.tokens, backend_runner(args.backend))
        print(text)
        return 0
    from spikestack.models.registry import family_function

    print(family_function(source, "generate")(source, args.prompt, args.tokens))
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if path.is_dir():
        from spikestack.compiler import artifact
        from spikestack.compiler.inspect import inspect_artifact

        program = artifact.load(path)
        if _is_hybrid(program):
            from spikestack import hybrid_cli

            print(hybrid_cli.inspect(program))
            return 0
        print(inspect_artifact(program))
        return 0
    if not path.exists():
        raise SpikestackError(f"{path}: file not found")
    try:
        from spikestack.models.nir.inspect import inspect_nir
    except ImportError:
        raise SpikestackError(f"{path}: NIR inspection is not available in this build") from None
    print(inspect_nir(path))
    return 0


def cmd_targets(args: argparse.Namespace) -> int:
    from spikestack.compiler.targets import available_targets, load_target

    for name in available_targets():
        t = load_target(name)
        print(f"{name:10s} {t.chip_cores:4d} cores/chip  {t.max_neurons:5d} neurons/core  "
              f"{t.synaptic_memory_bits // 8192:4d} KB synapses/core  payload {t.max_payload_bits:2d} bits  "
              f"{t.description}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from spikestack.demo import run_demo

    return run_demo(Path(args.out), tokens=args.tokens, verify_tokens=args.verify_tokens)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from spikestack.compiler.hybrid.compile import HYBRID_PASSES
    from spikestack.compiler.pipeline import PASS_NAMES

    p = argparse.ArgumentParser(prog="spikestack", description=__doc__.splitlines()[0])
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("train", help="train a model family on pydoc_data.topics and save a checkpoint")
    s.add_argument("family")
    s.add_argument("--steps", type=int, default=3000)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--ann", action="store_true", help="train the ANN twin instead of the spiking model")
    s.add_argument("-o", "--output", required=True)
    s.set_defaults(fn=cmd_train)

    s = sub.add_parser("export", help="checkpoint → NIR file")
    s.add_argument("checkpoint")
    s.add_argument("-o", "--output", required=True)
    s.set_defaults(fn=cmd_export)

    s = sub.add_parser("compile", help="checkpoint or NIR file → artifact directory")
    s.add_argument("source")
    s.add_argument("--target", default="loihi2", help="target name (spikestack targets) or path to a .toml")
    s.add_argument("-o", "--output", required=True)
    s.add_argument("--dump-after", choices=sorted(set(PASS_NAMES) | set(HYBRID_PASSES)),
                   help="write the IR after this pass next to the artifact (chain passes: "
                        f"{', '.join(PASS_NAMES)}; language-model passes: {', '.join(HYBRID_PASSES)})")
    s.add_argument("--dt", type=float, help="Euler step in seconds for foreign LIF graphs (default: graph "
                   "metadata spikestack.dt, else 1e-4)")
    s.add_argument("--steps", type=int, help="steps per input sample for foreign LIF graphs (default 100)")
    s.add_argument("--calibrate", type=int, default=256, metavar="N",
                   help="measure per-layer quantisation error on N validation windows (0: skip)")
    s.add_argument("--dataflow", action="store_true",
                   help="SpikeGPT: fold Linears of the normed residual stream onto the cores (event-driven "
                        "projections; compiler/hybrid/fold.py)")
    s.add_argument("--encoding", choices=("graded", "unary", "bitserial"),
                   help="force one spike encoding on every bi-spike edge (default: the cost model picks)")
    s.set_defaults(fn=cmd_compile)

    s = sub.add_parser("run", help="run an artifact on the validation text")
    s.add_argument("artifact")
    s.add_argument("--backend", choices=("reference", "lava", "torch"), default="reference")
    s.add_argument("--tokens", type=_positive, default=256)
    s.add_argument("--trace", help="save the event trace: .npz (spikestack) or .nir (NIR ValuedEventData)")
    s.set_defaults(fn=cmd_run)

    s = sub.add_parser("simulate", help="SOPs, energy and latency of an artifact under a hardware profile")
    s.add_argument("artifact")
    s.add_argument("--profile", help="profile name or .toml (default: the target's)")
    s.add_argument("--tokens", type=_positive, default=1024)
    s.add_argument("--json", action="store_true")
    s.add_argument("--plots", help="write firing-rate, core-load, energy and ANN-comparison PNGs into this folder")
    s.add_argument("--report", help="write a report (.md or .html) with conventions side by side and sources")
    s.set_defaults(fn=cmd_simulate)

    s = sub.add_parser("sweep", help="targets x profiles table for one NIR file or checkpoint (compiled per target)")
    s.add_argument("source")
    s.add_argument("--targets", default="loihi2", help="comma-separated target names or .toml paths")
    s.add_argument("--profiles", default="loihi2_assumed", help="comma-separated profile names or .toml paths")
    s.add_argument("--tokens", type=_positive, default=256)
    s.add_argument("--encodings", default="auto", help="comma-separated: auto (cost model), graded, unary, bitserial")
    s.add_argument("--workers", type=int, default=2, help="parallel processes (at most 2)")
    s.add_argument("-o", "--output", help="write the table as .csv or .json")
    s.set_defaults(fn=cmd_sweep)

    s = sub.add_parser("verify", help="torch fake-quant vs reference vs Lava, spike for spike")
    s.add_argument("artifact")
    s.add_argument("--backends", default=DEFAULT_VERIFY_BACKENDS)
    s.add_argument("--tokens", "--inputs", dest="tokens", type=_positive, default=32,
                   help="number of input tokens (positions) run through every backend")
    s.set_defaults(fn=cmd_verify)

    s = sub.add_parser("generate", help="greedy text from a float checkpoint or a compiled artifact directory")
    s.add_argument("checkpoint", help="checkpoint (.pt, float model) or artifact directory (compiled)")
    s.add_argument("--backend", choices=("reference", "lava", "torch"), default="reference",
                   help="backend for an artifact")
    s.add_argument("--prompt", default="The ")
    s.add_argument("--tokens", type=_non_negative, default=80)
    s.set_defaults(fn=cmd_generate)

    s = sub.add_parser("inspect", help="an artifact directory (cores, encodings, host ops) or a NIR file (nodes)")
    s.add_argument("path")
    s.set_defaults(fn=cmd_inspect)

    s = sub.add_parser("targets", help="list hardware targets")
    s.set_defaults(fn=cmd_targets)

    s = sub.add_parser("demo", help="the whole chain on the shipped checkpoint, with a short report")
    s.add_argument("--out", default="build/demo")
    s.add_argument("--tokens", type=int, default=4096)
    s.add_argument("--verify-tokens", type=int, default=32)
    s.set_defaults(fn=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except SpikestackError as exc:
        if args.debug:
            raise
        print(f"spikestack: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except BrokenPipeError:  # `spikestack … | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
