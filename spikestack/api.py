"""The public Python API: `spikestack.export`, `compile`, `save`, `load`, `run`, `verify`, `simulate`, `generate`.

Why one front door: a notebook user should not need to know that the bi-spike spine and foreign LIF chains compile
to a chain program and the language models to a hybrid one. Every function here takes either kind and returns
typed results with `.to_dict()` holding the same keys for both. The CLI (`spikestack.cli`) parses arguments,
calls these functions and prints; it holds no library logic.

    import spikestack
    program = spikestack.compile("models/checkpoints/bispike-mlp.pt", target="loihi2")
    spikestack.save(program, "art/")
    result = spikestack.run(spikestack.load("art/"), backend="reference", tokens=256)
    report = spikestack.simulate(program, tokens=256)
    print(result.to_dict()["bpc"], report.to_dict()["energy_per_token_j"])
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from spikestack.errors import SpikestackError, VerificationError

from .evaluation import EvalInputs, bpc, calibration_ids, eval_inputs, is_hybrid
from .results import Report, RunResult, VerifyResult

__all__ = ["BACKENDS", "Report", "RunResult", "VerifyResult", "compile", "describe", "export", "generate",
           "inspect", "is_hybrid", "kind_of", "load", "run", "save", "simulate", "verify"]

BACKENDS = ("reference", "torch", "lava")
CHECKPOINT_SUFFIXES = (".pt", ".pth")


# --------------------------------------------------------------------------------------------------- helpers
def kind_of(program) -> str:
    """"chain" (the bi-spike spine, foreign LIF chains) or "hybrid" (language models: chip layers + host stages)."""
    return "hybrid" if is_hybrid(program) else "chain"


def _family(program) -> str:
    if is_hybrid(program):
        return program.family
    return "bispike-mlp" if program.timing == "token" else "nir-lif"


def _as_program(program_or_path):
    if isinstance(program_or_path, (str, Path)):
        return load(program_or_path)
    return program_or_path


def _inputs(program, inputs, tokens: int) -> EvalInputs:
    if inputs is None:
        return eval_inputs(program, tokens)
    if isinstance(inputs, EvalInputs):
        return inputs
    return EvalInputs(np.asarray(inputs), None, "user")


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise SpikestackError(f"backend {backend!r}: choose from {', '.join(BACKENDS)}")


# --------------------------------------------------------------------------------------------------- export
def export(model_or_checkpoint, path: str | Path, *, force: bool = False) -> Path:
    """A checkpoint (any shipped family) or a NIR graph → a NIR file written with stock `nir.write`, atomically.

    Refuses to replace an existing file unless `force`, and never replaces its own input."""
    import nir

    from spikestack.models.nir.export import export_any
    from spikestack.outputs import atomic_write, check_file_output

    inputs = [model_or_checkpoint] if isinstance(model_or_checkpoint, (str, Path)) else []
    path = check_file_output(path, "export output", inputs=inputs, force=force)
    if inputs:
        export_any(Path(model_or_checkpoint), path)
        return path
    if not isinstance(model_or_checkpoint, nir.NIRGraph):
        raise SpikestackError(f"export takes a checkpoint path or a nir.NIRGraph, got {type(model_or_checkpoint)}")
    return atomic_write(path, lambda tmp: nir.write(str(tmp), model_or_checkpoint))


# --------------------------------------------------------------------------------------------------- compile
def compile(source, target="loihi2", *, encoding: str | None = None, dataflow: bool = False,
            dt: float | None = None, steps: int | None = None, calibrate: int = 0,
            dump_after: str | None = None, dump_dir: str | Path | None = None, dump_ir: str | Path | None = None):
    """A checkpoint (.pt), a NIR file or a `nir.NIRGraph` → a mapped program for `target` (a name, a .toml path
    or a `Target`). Chain graphs give a chain `Program`, language models a `HybridProgram`; both save, load, run,
    verify and simulate through this module. `calibrate` > 0 attaches the per-layer quantisation error on that
    many validation positions to the program's report. `dump_ir` writes the IR after every pass into that
    folder as `NNN_pass.json` (`dump_after` + `dump_dir`: after one pass only)."""
    import nir

    from spikestack.compiler.from_nir import read_nir
    from spikestack.models.nir.export import checkpoint_to_nir

    if isinstance(source, nir.NIRGraph):
        graph = source
    else:
        source = Path(source)
        if not source.exists():
            raise SpikestackError(f"{source}: file not found")
        graph = checkpoint_to_nir(source) if source.suffix in CHECKPOINT_SUFFIXES else read_nir(source)
    on_pass = _ir_dumper(Path(dump_ir)) if dump_ir is not None else None
    if _is_hybrid_graph(graph):
        return _compile_hybrid(graph, target, encoding=encoding, dataflow=dataflow, calibrate=calibrate,
                               dump_after=dump_after, dump_dir=dump_dir, on_pass=on_pass)
    if dataflow:
        raise SpikestackError("--dataflow folds language-model graphs (SpikeGPT); this is a chain program")
    from spikestack.compiler.pipeline import compile_graph

    program = compile_graph(graph, target, dump_after=dump_after, dump_dir=Path(dump_dir) if dump_dir else None,
                            dt=dt, steps=steps, encoding=encoding, on_pass=on_pass)
    if calibrate > 0 and program.timing == "token":
        program = _calibrate_chain(graph, program, calibrate)
    return program


def _is_hybrid_graph(graph) -> bool:
    from spikestack.compiler.program_kind import is_hybrid_graph

    return is_hybrid_graph(graph)


def _calibrate_chain(graph, program, tokens: int):
    from spikestack.compiler.from_nir import from_nir
    from spikestack.runtime.calibration import layer_errors

    try:
        ids = eval_inputs(program, tokens).inputs
    except SpikestackError:  # not a model of the shipped corpus: no sample text to calibrate on
        return program
    errors = layer_errors(from_nir(graph), program, ids)
    return replace(program, report=dict(program.report, calibration={"tokens": tokens, "layers": errors}))


def _ir_dumper(folder: Path):
    """on_pass hook writing `NNN_pass.json` for every pass, numbered in the order the passes ran."""
    from spikestack.compiler.pipeline import to_jsonable

    if folder.exists() and not folder.is_dir():
        raise SpikestackError(f"--dump-ir {folder}: exists and is not a folder")
    count = [0]

    def dump(name: str, ir) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        text = json.dumps(to_jsonable(ir), indent=1, sort_keys=True, allow_nan=False)
        (folder / f"{count[0]:03d}_{name}.json").write_text(text)
        count[0] += 1

    return dump


def _compile_hybrid(graph, target, *, encoding, dataflow, calibrate, dump_after, dump_dir, on_pass=None):
    from spikestack.compiler.hybrid.compile import HYBRID_PASSES, compile_hybrid
    from spikestack.compiler.pipeline import to_jsonable

    if dump_after is not None and dump_after not in HYBRID_PASSES:
        raise SpikestackError(f"--dump-after {dump_after}: not a pass of hybrid (language-model) programs; their "
                              f"passes are {', '.join(HYBRID_PASSES)}")

    def dump(name: str, ir) -> None:
        if on_pass is not None:
            on_pass(name, ir)
        if name == dump_after:
            folder = Path(dump_dir or ".")
            folder.mkdir(parents=True, exist_ok=True)
            text = json.dumps(to_jsonable(ir), indent=1, sort_keys=True)
            (folder / f"{HYBRID_PASSES.index(name):03d}_{name}.json").write_text(text)

    program = compile_hybrid(graph, target, calibration_ids(graph), dataflow=dataflow, on_pass=dump,
                             encoding=encoding)
    if dataflow and not any(la.kind == "relay" for la in program.layers):
        raise SpikestackError("--dataflow: no Linear of this graph reads a normed integer residual stream (SpikeGPT "
                              "with a binary embedding); nothing to fold")
    if calibrate > 0:
        from spikestack.runtime.hybrid.calibration import layer_errors

        from .evaluation import CALIBRATION_OFFSET, sample_ids

        context = program.max_positions if program.time_axis != "tokens" else 0
        windows = sample_ids(program.vocab_size, context, calibrate, offset=CALIBRATION_OFFSET).inputs
        report = {"positions": int(windows.size), "layers": layer_errors(graph, program, windows)}
        program = replace(program, report=dict(program.report, calibration=report))
    return program


# --------------------------------------------------------------------------------------------------- files
def save(program, path: str | Path) -> Path:
    """Write the artifact directory (replaces only an earlier complete artifact at `path`)."""
    from spikestack.compiler import artifact

    return artifact.save(program, Path(path))


def load(path: str | Path):
    """Read and check an artifact directory; every file it names is verified before use."""
    from spikestack.compiler import artifact

    return artifact.load(Path(path))


# --------------------------------------------------------------------------------------------------- run
def _traces(program, inputs: np.ndarray, backends: Sequence[str]) -> dict[str, Any]:
    """One trace per backend, on the same inputs (a bar per backend on a terminal: Lava takes seconds)."""
    from .progress import progress

    shown = progress(backends, "backends", total=len(backends)) if len(backends) > 1 else backends
    if is_hybrid(program):
        from spikestack.runtime.hybrid.executor import run as run_hybrid
        from spikestack.runtime.hybrid.verify import chip_backend

        return {b: run_hybrid(program, inputs, chip_backend(b)) for b in shown}
    from spikestack.runtime.verify import backend_runner

    return {b: backend_runner(b)(program, inputs) for b in shown}


def run(program, inputs=None, backend: str = "reference", *, tokens: int = 256) -> RunResult:
    """Run a program (or an artifact path) on a backend. Without `inputs`, the first `tokens` positions of the
    validation text (token programs) or seeded input events (foreign LIF programs); the result says which."""
    _check_backend(backend)
    program = _as_program(program)
    data = _inputs(program, inputs, tokens)
    trace = _traces(program, data.inputs, (backend,))[backend]
    hybrid = is_hybrid(program)
    n = int(np.asarray(data.inputs).size) if hybrid else int(trace.tokens)
    # bits per character only for a next-token model: one logit per vocabulary id (a chain readout of another
    # width, such as a small test graph fed from the corpus, predicts something else)
    next_token = data.targets is not None and trace.logits.shape[-1] == _vocab_size(program)
    score = round(bpc(trace.logits, data.targets), 4) if next_token else None
    counts = None if hybrid or program.timing == "token" else trace.readout.tolist()
    return RunResult(backend=backend, kind=kind_of(program), family=_family(program), tokens=n, trace=trace,
                     source=data.source, firing_rate={k: round(v, 6) for k, v in trace.firing_rate().items()},
                     events=trace.events(), saturations=dict(trace.saturations), bpc=score,
                     output_spike_counts=counts)


def verify(program, backends: Sequence[str] = ("torch", "reference", "lava"), *, inputs=None,
           tokens: int = 32, raise_on_mismatch: bool = False) -> VerifyResult:
    """Every backend on the same inputs, compared spike for spike at every layer, step, position and neuron."""
    backends = tuple(backends)
    for b in backends:
        _check_backend(b)
    if len(backends) < 2:
        raise SpikestackError(f"verify needs two or more backends of {', '.join(BACKENDS)}, got {backends}")
    program = _as_program(program)
    if not is_hybrid(program) and program.timing == "delayed" and "torch" in backends:
        raise SpikestackError("the torch fake-quant model covers token (bi-spike) programs only; "
                              "use backends reference,lava for LIF programs")
    data = _inputs(program, inputs, tokens)
    traces = _traces(program, data.inputs, backends)
    if is_hybrid(program):
        from spikestack.runtime.hybrid.verify import first_divergence
    else:
        from spikestack.runtime.verify import first_divergence
    from spikestack.runtime.verify import compare_all

    problems = tuple(compare_all(program, traces, backends, first_divergence))
    first = traces[backends[0]]
    layers = len(first.layers())
    n = int(np.asarray(data.inputs).size) if is_hybrid(program) else int(first.tokens)
    result = VerifyResult(backends=backends, family=_family(program), tokens=n, layers=layers,
                          events=first.events(), problems=problems, traces=traces)
    if problems and raise_on_mismatch:
        raise VerificationError("; ".join(problems))
    return result


# --------------------------------------------------------------------------------------------------- simulate
def simulate(program, trace=None, profile=None, *, tokens: int = 1024, inputs=None) -> Report:
    """Counts, energy and latency under a hardware profile (name, .toml path or `Profile`; default: the
    target's). Without a trace, the reference executor runs `tokens` positions of the validation text first."""
    from spikestack.simulators.profiles import Profile, load_profile

    program = _as_program(program)
    if profile is None:
        profile = load_profile(_target_of(program).default_profile)
    elif not isinstance(profile, Profile):
        profile = load_profile(str(profile))
    if trace is None:
        trace = _traces(program, _inputs(program, inputs, tokens).inputs, ("reference",))["reference"]
    if is_hybrid(program):
        from spikestack.simulators.hybrid import simulate_hybrid

        return Report(simulate_hybrid(program, trace, profile))
    from spikestack.simulators.model import simulate as simulate_chain

    return Report(simulate_chain(program, trace, profile))


def _target_of(program):
    from spikestack.compiler.targets import target_of

    return target_of(program)  # the target embedded in the program: a custom .toml need not exist any more


def _vocab_size(program) -> int:
    return int(program.vocab_size) if is_hybrid(program) else int(program.host_input.table.shape[0])


# --------------------------------------------------------------------------------------------------- generate
def generate(program_or_checkpoint, prompt: str, tokens: int, backend: str = "reference") -> str:
    """Greedy text: from a float checkpoint (.pt) with its own model, or from a compiled program (or artifact
    directory) token by token on a backend. Returns the prompt followed by the continuation."""
    _check_backend(backend)
    source = program_or_checkpoint
    if isinstance(source, (str, Path)) and Path(source).suffix in CHECKPOINT_SUFFIXES:
        from spikestack.models.registry import family_function

        return family_function(Path(source), "generate")(Path(source), prompt, tokens)
    program = _as_program(source)
    from spikestack.models.data import load_corpus

    if not is_hybrid(program) and program.timing != "token":
        where = f"{source}: " if isinstance(source, (str, Path)) else ""
        raise SpikestackError(f"{where}a foreign LIF artifact reads input events, not text: it has no "
                              "vocabulary to generate from; use run or simulate")
    if is_hybrid(program) and program.family == "spikelm-enc":
        raise SpikestackError("generate: a SpikeLM encoder is bidirectional (masked-token model); generate from a "
                              "SpikeGPT, SpikeLLM or SpikeLM decoder artifact")
    vocab = load_corpus().vocab
    if _vocab_size(program) != len(vocab):  # one check for both kinds: the text they encode is the corpus's
        raise SpikestackError(f"artifact vocabulary has {_vocab_size(program)} ids, the shipped corpus {len(vocab)}")
    index = _check_prompt(prompt, vocab)
    if not is_hybrid(program):
        from spikestack.runtime.generate import generate as generate_chain
        from spikestack.runtime.verify import backend_runner

        text, _ = generate_chain(program, vocab, prompt, tokens, backend_runner(backend))
        return text
    from spikestack.runtime.hybrid.verify import chip_backend, generate_ids

    ids = generate_ids(program, [index[ch] for ch in prompt], tokens, lambda: chip_backend(backend))
    return "".join(vocab[i] for i in ids)


def _check_prompt(prompt: str, vocab: str) -> dict[str, int]:
    """Both program kinds refuse what they cannot encode, rather than silently replacing it."""
    index = {ch: i for i, ch in enumerate(vocab)}
    unknown = sorted({ch for ch in prompt if ch not in index})
    if unknown or not prompt:
        raise SpikestackError(f"prompt must be non-empty text of the corpus alphabet; unknown {unknown!r}")
    return index


# --------------------------------------------------------------------------------------------------- describe
def describe(program) -> dict:
    """The few numbers every command prints about a program, the same keys for both kinds."""
    program = _as_program(program)
    if is_hybrid(program):
        layers, stages = len(program.layers), len(program.stages)
    else:
        layers, stages = len(program.populations), len(program.host_programs)
    return {"kind": kind_of(program), "family": _family(program), "target": program.target,
            "cores": len(program.cores), "chips": len({c.chip for c in program.cores}), "layers": layers,
            "host_stages": stages}


def inspect(program) -> str:
    """The human table of `spikestack inspect`: cores, layers, encodings, host work, quantisation errors."""
    program = _as_program(program)
    if is_hybrid(program):
        from spikestack.compiler.inspect_hybrid import inspect_hybrid

        return inspect_hybrid(program)
    from spikestack.compiler.inspect import inspect_artifact

    return inspect_artifact(program)
