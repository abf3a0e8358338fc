"""`spikestack` command line: argument parsing (`cli_args.py`) and printing over the public API (`api.py`).

Every command takes chain programs (the bi-spike spine, foreign LIF chains) and language models (hybrid
programs) alike and prints the same keys for both; the library does the work. User errors (SpikestackError and
its families, a bad argument, an unreadable or unwritable path, running out of memory) print one line
`spikestack: error: …` and exit 2; a traceback appears only with --debug (accepted before or after the
subcommand). Outputs are checked before any work (spikestack/outputs.py): no command overwrites its input or,
without --force, an existing file, and every file is replaced atomically.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
from pathlib import Path

from spikestack.cli_args import EXIT_USER_ERROR, build_parser
from spikestack.errors import SpikestackError, VerificationError
from spikestack.outputs import check_file_output, check_folder_output, strict_json
from spikestack.progress import set_quiet


def cmd_train(args: argparse.Namespace) -> int:
    from spikestack.models.registry import train_function
    from spikestack.progress import showing

    out = check_file_output(args.output, "-o", force=args.force)
    train = train_function(args.family)
    options: dict = {}
    if args.teacher is not None:
        if args.ann:
            raise SpikestackError("--teacher distils into the spiking model; it cannot be combined with --ann")
        options["teacher"] = Path(args.teacher)
    if args.learnable_alpha:
        options["learnable_alpha"] = True
    for name in ("levels", "width"):  # only when given, so a family without the option keeps its recipe
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    for name in options:
        if name not in inspect.signature(train).parameters:
            flag = "--" + name.replace("_", "-")
            raise SpikestackError(f"family {args.family!r} does not take {flag} (see spikestack train --help)")
    metrics = train(out, steps=args.steps, seed=args.seed, spiking=not args.ann, progress=showing(), **options)
    print(strict_json(metrics, "train metrics"))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from spikestack import api

    note = api.import_checkpoint(Path(args.source), args.output, family=args.family, tokenizer=args.tokenizer,
                                 text=args.text, force=args.force)
    print(strict_json(note, "import summary"))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from spikestack import api

    source = Path(args.checkpoint)
    out = check_file_output(args.output, "-o", inputs=[source], force=args.force)
    api.export(source, out, force=True, family=args.family)  # the output was checked just above, with --force
    print(f"wrote {out}")
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    from spikestack import api
    from spikestack.compilation import streams

    out = check_folder_output(args.output, "-o")  # an artifact is a folder; the artifact module guards the rest
    dump_ir = check_folder_output(args.dump_ir, "--dump-ir") if args.dump_ir else None
    if streams(Path(args.source), dataflow=args.dataflow, family=args.family, calibrate=args.calibrate,
               dumps=bool(args.dump_ir or args.dump_after)):  # a Hugging Face LLaMA folder, one block at a time
        program = api.compile_stream(Path(args.source), out, args.target, encoding=args.encoding, text=args.text)
        s = api.describe(program)
        print(f"wrote {out}: target {s['target']}, {s['cores']} cores, {s['layers']} chip layers, "
              f"{s['host_stages']} host stages ({s['family']}), streamed block by block"
              f"{' (no per-layer error report)' if args.calibrate else ''}")
        return 0
    program = api.compile(Path(args.source), args.target, encoding=args.encoding, dataflow=args.dataflow,
                          dt=args.dt, steps=args.steps, calibrate=args.calibrate, dump_after=args.dump_after,
                          dump_dir=out.parent / f"{out.name}.dump", dump_ir=dump_ir, family=args.family,
                          text=args.text)
    api.save(program, out)
    s = api.describe(program)
    print(f"wrote {out}: target {s['target']}, {s['cores']} cores, {s['layers']} chip layers, "
          f"{s['host_stages']} host stages ({s['family']})")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from spikestack import api

    trace_path = None
    if args.trace:
        sources = [args.artifact, *(f for f in (args.input, args.nir) if f)]  # never overwrite an input
        trace_path = check_file_output(args.trace, "--trace", inputs=sources, force=args.force,
                                       suffixes=(".npz", ".nir"))
    result = api.run(api.load(args.artifact), args.input, backend=args.backend, tokens=args.tokens,
                     float_source=args.nir, text=args.text, scheduler=args.scheduler, workers=args.workers,
                     streams=args.streams, keep_trace=trace_path is not None)  # else only the figures travel
    text = strict_json(result.to_dict(), "run result")  # before writing anything
    if trace_path is not None:
        result.save_trace(trace_path)
    print(text)
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from spikestack import api
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
    program = api.load(args.artifact)
    trace = None
    if args.trace:
        from spikestack.simulators.trace_file import load_trace

        trace = load_trace(program, args.trace)
    report = api.simulate(program, trace, profile=args.profile, tokens=args.tokens, inputs=args.input,
                          text=args.text, scheduler=args.scheduler, workers=args.workers,
                          streams=args.streams).data
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
    from spikestack.sweep import format_table, write_table

    out = None
    if args.output:
        out = check_file_output(args.output, "-o", inputs=[args.source], force=args.force,
                                suffixes=(".csv", ".json"))
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    profiles = [p.strip() for p in args.profiles.split(",") if p.strip()]
    encodings = [e.strip() for e in args.encodings.split(",") if e.strip()]
    rows = _sweep_published(args, targets, profiles, encodings)
    if out is not None:
        write_table(rows, out)
    print(format_table(rows))
    return 0


def _sweep_published(args: argparse.Namespace, targets: list[str], profiles: list[str], encodings: list[str]):
    """sweep() over the source; a published checkpoint (or --family) is exported once to a NIR file first."""
    import tempfile

    from spikestack import api
    from spikestack.sweep import sweep

    source = Path(args.source)
    if args.family is None and not api.is_published(source):
        return sweep(source, targets, profiles, args.tokens, workers=args.workers, encodings=encodings,
                     scheduler=args.scheduler, text=args.text)
    with tempfile.TemporaryDirectory() as tmp:
        nir_path = api.export(source, Path(tmp) / "model.nir", family=args.family)
        return sweep(nir_path, targets, profiles, args.tokens, workers=args.workers, encodings=encodings,
                     scheduler=args.scheduler, text=args.text)


def cmd_verify(args: argparse.Namespace) -> int:
    from spikestack import api

    backends = tuple(b.strip() for b in args.backends.split(","))
    unknown = [b for b in backends if b not in api.BACKENDS]
    if unknown or len(backends) < 2:
        raise SpikestackError(f"--backends needs two or more of {', '.join(api.BACKENDS)}, got {args.backends!r}")
    program = api.load(args.artifact)
    result = api.verify(program, backends, tokens=args.tokens, inputs=args.input, float_source=args.nir,
                        text=args.text)
    if not result.bit_exact:
        raise VerificationError("; ".join(result.problems))
    print(result.summary())
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from spikestack import api

    result = api.evaluate(Path(args.checkpoint), Path(args.labels), compiled=args.compiled, target=args.target,
                          encoding=args.encoding, family=args.family)
    print(strict_json(result.to_dict(), "evaluation result"))
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from spikestack import api

    source = Path(args.checkpoint)
    if not source.exists():
        raise SpikestackError(f"{source}: not found (give a checkpoint .pt or an artifact folder)")
    if source.is_dir():
        print(api.generate(source, args.prompt, args.tokens, backend=args.backend))
        return 0
    print(api.generate(source, args.prompt, args.tokens, family=args.family))
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from spikestack import api

    path = Path(args.path)
    if path.is_dir():
        print(api.inspect(api.load(path)))
        return 0
    if not path.exists():
        raise SpikestackError(f"{path}: file not found")
    from spikestack.models.nir.inspect import inspect_nir

    print(inspect_nir(path))
    return 0


def cmd_targets(args: argparse.Namespace) -> int:
    from spikestack.compiler.targets import available_targets, load_target

    names = available_targets()
    width = max(map(len, names), default=0)
    for name in names:
        t = load_target(name)
        print(f"{name:{width}s} up to {t.chips:4d} chips {t.chip_cores:4d} cores/chip  "
              f"{t.max_neurons:5d} neurons/core  {t.synaptic_memory_bits // 8192:4d} KB synapses/core  "
              f"payload {t.max_payload_bits:2d} bits  {t.description}")
    return 0


def cmd_profiles(args: argparse.Namespace) -> int:
    from spikestack.simulators.profiles import available_profiles, load_profile

    for name in available_profiles():
        p = load_profile(name)
        flag = "  [ASSUMED constants]" if p.assumption else ""
        print(f"{name}: {p.description}{flag}")
        for source in dict.fromkeys(p.sources.values()):  # distinct sources, in file order
            print(f"    source: {source}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from spikestack.demo import run_demo

    verify_tokens = args.verify_tokens if args.verify_tokens is not None else min(32, args.tokens)
    return run_demo(Path(args.out), tokens=args.tokens, verify_tokens=verify_tokens)


COMMANDS = {"train": cmd_train, "import": cmd_import, "export": cmd_export, "compile": cmd_compile, "run": cmd_run,
            "simulate": cmd_simulate, "sweep": cmd_sweep, "verify": cmd_verify, "evaluate": cmd_evaluate,
            "generate": cmd_generate, "inspect": cmd_inspect, "targets": cmd_targets, "profiles": cmd_profiles,
            "demo": cmd_demo}


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
    set_quiet(args.quiet)
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
