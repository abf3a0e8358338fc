"""`spikestack` command line: train, export, compile, run, simulate, verify, generate, targets, demo.

User errors (SpikestackError and its families, a bad argument, an unreadable or unwritable path, running out of
memory) print one line `spikestack: error: …` and exit 2; a traceback appears only with --debug (accepted before
or after the subcommand). Outputs are checked before any work (spikestack/outputs.py): no command overwrites its
input or, without --force, an existing file, and every file is replaced atomically.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from spikestack.cli_args import DEFAULT_VERIFY_BACKENDS, EXIT_USER_ERROR, build_parser
from spikestack.errors import SpikestackError, VerificationError
from spikestack.outputs import check_file_output, check_folder_output, strict_json

INPUT_EVENT_RATE = 0.2  # fraction of input channels active per step for foreign (LIF) artifacts
INPUT_SEED = 0
MAX_INPUT_VALUES = 1 << 26  # seeded input events of a foreign LIF artifact held at once (512 MiB as int64)

class ForeignVocabularyError(SpikestackError):
    """A token artifact whose vocabulary is not the shipped corpus's: there is no validation text for it."""


def _eval_windows(program, n_tokens: int):
    """Token artifacts: the first n_tokens (context, next char) pairs of the pydoc validation split, exactly.
    Foreign LIF artifacts (delayed timing): n_tokens samples of seeded Bernoulli input events, no targets."""
    import numpy as np

    if n_tokens < 1:
        raise SpikestackError(f"--tokens must be at least 1, got {n_tokens}")
    if program.timing == "delayed":
        per_sample = program.steps * program.host_input.size
        if n_tokens * per_sample > MAX_INPUT_VALUES:
            raise SpikestackError(f"--tokens {n_tokens}: {n_tokens} samples x {program.steps} steps x "
                                  f"{program.host_input.size} inputs exceed the limit of {MAX_INPUT_VALUES} input "
                                  f"values; use at most {MAX_INPUT_VALUES // per_sample} --tokens")
        rng = np.random.default_rng(INPUT_SEED)
        shape = (n_tokens, program.steps, program.host_input.size)
        return (rng.random(shape) < INPUT_EVENT_RATE).astype(np.int64), None

    from spikestack.models.data import load_corpus

    corpus = load_corpus()
    if program.host_input.table.shape[0] != corpus.vocab_size:
        raise ForeignVocabularyError(f"artifact vocabulary has {program.host_input.table.shape[0]} ids, the corpus "
                                     f"{corpus.vocab_size}; this artifact was not trained on the shipped corpus")
    from spikestack.models.bispike_mlp import context_windows

    ctx = program.host_input.context
    available = len(corpus.val_ids) - ctx
    if n_tokens > available:
        raise SpikestackError(f"--tokens {n_tokens}: the validation text, which has {available} windows of "
                              f"{ctx} characters, bounds it; use at most {available}")
    return context_windows(corpus.val_ids[: n_tokens + ctx], ctx)


def cmd_train(args: argparse.Namespace) -> int:
    from spikestack.models.registry import train_function

    out = check_file_output(args.output, "-o", force=args.force)
    metrics = train_function(args.family)(out, steps=args.steps, seed=args.seed, spiking=not args.ann, progress=True)
    print(strict_json(metrics, "train metrics"))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from spikestack.models.registry import checkpoint_family

    source = Path(args.checkpoint)
    out = check_file_output(args.output, "-o", inputs=[source], force=args.force)
    checkpoint_family(source)  # one clear line for a missing or foreign file
    from spikestack.models.nir.export import export_any

    graph = export_any(source, out)
    print(f"wrote {out}: {len(graph.nodes)} nodes")
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
    except ForeignVocabularyError:  # not a model of the shipped corpus: no sample data to calibrate on
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
    out = check_folder_output(args.output, "-o")  # an artifact is a folder; the artifact module guards the rest
    program = compile_to(Path(args.source), args.target, out, args.dump_after, dt=args.dt, steps=args.steps,
                         encoding=args.encoding, calibrate=args.calibrate, dataflow=args.dataflow)
    if _is_hybrid(program):
        print(f"wrote {out}: target {program.target}, {len(program.cores)} cores, "
              f"{len(program.layers)} chip layers, {len(program.stages)} host stages ({program.family})")
        return 0
    print(f"wrote {out}: target {program.target}, {len(program.cores)} cores, {len(program.populations)} layers")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from spikestack.compiler import artifact
    from spikestack.runtime.verify import backend_runner

    trace_path = None
    if args.trace:
        trace_path = check_file_output(args.trace, "--trace", inputs=[args.artifact], force=args.force,
                                       suffixes=(".npz", ".nir"))
    program = artifact.load(args.artifact)
    if _is_hybrid(program):
        from spikestack import hybrid_cli

        return hybrid_cli.cmd_run(program, args.backend, args.tokens, trace_path)
    ids, targets = _eval_windows(program, args.tokens)
    trace = backend_runner(args.backend)(program, ids)
    result = {"backend": args.backend, "tokens": trace.tokens, "firing_rate": trace.firing_rate(),
              "saturations": trace.saturations}
    if targets is not None:
        from spikestack.hybrid_cli import bpc

        result["bpc"] = round(bpc(trace.logits, targets), 4)
    else:
        result["output_spike_counts"] = trace.readout.tolist()
    text = strict_json(result, "run result")
    if trace_path is not None and trace_path.suffix.lower() == ".nir":
        from spikestack.runtime.nir_data import write_nir_data

        write_nir_data(trace, trace_path)
    elif trace_path is not None:
        trace.save(trace_path)
    print(text)
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
    from spikestack.simulators.plots import PLOT_FILES
    from spikestack.simulators.report import check_report_format

    plots_dir = check_folder_output(args.plots, "--plots") if args.plots else None
    if plots_dir is not None and plots_dir.is_dir():
        for name in PLOT_FILES.values():
            check_file_output(plots_dir / name, "--plots", inputs=[args.artifact], force=args.force)
    report_path = None
    if args.report:
        report_path = check_report_format(Path(args.report))
        check_file_output(report_path, "--report", inputs=[args.artifact], force=args.force,
                          created=[plots_dir] if plots_dir is not None else [])  # --plots makes its folders
    report = simulate_artifact(Path(args.artifact), args.profile, args.tokens)
    text = strict_json(report, "simulation report") if args.json else None  # before writing anything
    plots = None
    if plots_dir is not None:
        from spikestack.simulators.plots import write_all

        plots = write_all(report, plots_dir)
    if report_path is not None:
        from spikestack.simulators.report import write_markdown

        write_markdown(report, report_path, plots)
    if text is None:
        from spikestack.simulators.report import human_table

        text = human_table(report)
    print(text)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from spikestack.simulators.sweep import format_table, sweep, write_table

    out = None
    if args.output:
        out = check_file_output(args.output, "-o", inputs=[args.source], force=args.force,
                                suffixes=(".csv", ".json"))
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    profiles = [p.strip() for p in args.profiles.split(",") if p.strip()]
    encodings = [e.strip() for e in args.encodings.split(",") if e.strip()]
    rows = sweep(Path(args.source), targets, profiles, args.tokens, _eval_windows, workers=args.workers,
                 encodings=encodings)
    if out is not None:
        write_table(rows, out)
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
        if program.timing == "delayed":
            raise SpikestackError(f"{source}: a foreign LIF artifact reads input events, not text: it has no "
                                  "vocabulary to generate from; use run or simulate")
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

    verify_tokens = args.verify_tokens if args.verify_tokens is not None else min(32, args.tokens)
    return run_demo(Path(args.out), tokens=args.tokens, verify_tokens=verify_tokens)


COMMANDS = {"train": cmd_train, "export": cmd_export, "compile": cmd_compile, "run": cmd_run,
            "simulate": cmd_simulate, "sweep": cmd_sweep, "verify": cmd_verify, "generate": cmd_generate,
            "inspect": cmd_inspect, "targets": cmd_targets, "demo": cmd_demo}


def error_line(exc: BaseException) -> str:
    """The one line a user sees for an error of theirs or of their machine (no traceback)."""
    if isinstance(exc, OSError):
        names = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
        reason = exc.strerror or str(exc) or type(exc).__name__
        message = f"{names}: {reason}" if names else reason
    elif isinstance(exc, MemoryError):
        message = "out of memory; use fewer --tokens or a smaller model"
    elif isinstance(exc, RecursionError):
        message = "recursion limit exceeded: an input nested too deeply (a graph or file) to process"
    else:
        message = str(exc) or type(exc).__name__
    return "spikestack: error: " + " ".join(message.splitlines())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # a bad argument: one line and SystemExit(2) (cli_args.CliParser)
    try:
        return COMMANDS[args.command](args)
    except BrokenPipeError:  # `spikestack … | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (SpikestackError, OSError, MemoryError, RecursionError) as exc:
        if args.debug:
            raise
        print(error_line(exc), file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
