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

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from spikestack.errors import SpikestackError, VerificationError

from .evaluation import EvalInputs, bpc, eval_inputs, is_hybrid, vocab_size
from .importing import checkpoint_of as _checkpoint
from .importing import import_checkpoint, is_published
from .importing import is_checkpoint as _is_checkpoint
from .results import Report, RunResult, VerifyResult
from .text import text_metrics

__all__ = ["BACKENDS", "Report", "RunResult", "VerifyResult", "compile", "compile_stream", "describe", "evaluate",
           "export", "generate",
           "import_checkpoint", "inspect", "is_hybrid", "is_published", "kind_of", "load", "run", "save", "simulate",
           "verify"]

BACKENDS = ("reference", "torch", "lava")


# --------------------------------------------------------------------------------------------------- helpers
def kind_of(program) -> str:
    """"chain" (the bi-spike spine, foreign LIF chains) or "hybrid" (language models: chip layers + host stages)."""
    return "hybrid" if is_hybrid(program) else "chain"


def _family(program) -> str:
    return program.family


def _as_program(program_or_path):
    if isinstance(program_or_path, (str, Path)):
        return load(program_or_path)
    return program_or_path


def _inputs(program, inputs, tokens: int, text=None, streams: int = 1) -> EvalInputs:
    if inputs is None:
        return eval_inputs(program, tokens, text, streams)
    if text is not None:
        raise SpikestackError(f"text={str(text)!r} and inputs: give one of them")
    if isinstance(inputs, EvalInputs):
        return inputs
    from .input_files import check_input_array, read_input_file

    if isinstance(inputs, (str, Path)):  # a .npy/.npz file, read safely and checked against the program
        return EvalInputs(check_input_array(program, read_input_file(inputs), str(inputs)), None, f"file {inputs}")
    if not is_hybrid(program) and program.timing == "delayed":  # spike rasters: refuse analog values by name
        return EvalInputs(check_input_array(program, np.asarray(inputs)), None, "user")
    return EvalInputs(np.asarray(inputs), None, "user")


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise SpikestackError(f"backend {backend!r}: choose from {', '.join(BACKENDS)}")


# --------------------------------------------------------------------------------------------------- export
def export(model_or_checkpoint, path: str | Path, *, force: bool = False, family: str | None = None) -> Path:
    """A checkpoint (any shipped family, or a published one: SpikeGPT .pth, a Hugging Face LLaMA folder, …; `family`
    forces its layout) or a NIR graph → a NIR file written with stock `nir.write`, atomically.

    Refuses to replace an existing file unless `force`, and never replaces its own input."""
    import nir

    from spikestack.models.checkpoint import InMemoryCheckpoint
    from spikestack.models.nir.export import checkpoint_to_nir, export_any
    from spikestack.outputs import atomic_write, check_file_output

    inputs = [model_or_checkpoint] if isinstance(model_or_checkpoint, (str, Path)) else []
    path = check_file_output(path, "export output", inputs=inputs, force=force)
    if inputs:
        source = Path(model_or_checkpoint)
        checkpoint = _checkpoint(source, family) if _is_checkpoint(source) else source
        if isinstance(checkpoint, InMemoryCheckpoint):
            graph = checkpoint_to_nir(checkpoint)
            return atomic_write(path, lambda tmp: nir.write(str(tmp), graph))
        export_any(source, path)
        return path
    if not isinstance(model_or_checkpoint, nir.NIRGraph):
        raise SpikestackError(f"export takes a checkpoint path or a nir.NIRGraph, got {type(model_or_checkpoint)}")
    return atomic_write(path, lambda tmp: nir.write(str(tmp), model_or_checkpoint))


# --------------------------------------------------------------------------------------------------- compile
def compile(source, target="loihi2", *, encoding: str | None = None, dataflow: bool = False,
            dt: float | None = None, steps: int | None = None, calibrate: int = 0,
            dump_after: str | None = None, dump_dir: str | Path | None = None, dump_ir: str | Path | None = None,
            family: str | None = None, text: str | Path | None = None):
    """A checkpoint (.pt, or a published .pth/.bin/.safetensors/Hugging Face folder, `family` forcing its layout),
    a NIR file or a `nir.NIRGraph` → a mapped program for `target` (a name, a .toml path
    or a `Target`). Chain graphs give a chain `Program`, language models a `HybridProgram`; both save, load, run,
    verify and simulate through this module. `calibrate` > 0 attaches the per-layer quantisation error on up to
    that many validation positions to the program's report (fewer for big models, and the report says how many:
    compilation.py `layer_error_windows`). `dump_ir` writes the IR after every pass into that
    folder as `NNN_pass.json` (`dump_after` + `dump_dir`: after one pass only). `text` (a UTF-8 file) is what
    calibration reads, encoded by the graph's tokenizer, which the program carries on (artifact tokenizer.json)."""
    import nir

    from spikestack.compiler.from_nir import read_nir
    from spikestack.models.nir.export import checkpoint_to_nir

    if isinstance(source, nir.NIRGraph):
        graph = source
    else:
        source = Path(source)
        if not source.exists():
            raise SpikestackError(f"{source}: file not found")
        graph = checkpoint_to_nir(_checkpoint(source, family)) if _is_checkpoint(source) else read_nir(source)
    from .compilation import compile_hybrid_graph, ir_dumper, is_hybrid_graph
    from .evaluation import calibrate_chain, carry_tokenizer

    on_pass = ir_dumper(Path(dump_ir)) if dump_ir is not None else None
    if is_hybrid_graph(graph):
        return carry_tokenizer(compile_hybrid_graph(graph, target, encoding=encoding, dataflow=dataflow,
                                                    calibrate=calibrate, dump_after=dump_after, dump_dir=dump_dir,
                                                    on_pass=on_pass, text=text), graph)
    if dataflow:
        raise SpikestackError("--dataflow folds language-model graphs (SpikeGPT); this is a chain program")
    from spikestack.compiler.pipeline import compile_graph

    program = compile_graph(graph, target, dump_after=dump_after, dump_dir=Path(dump_dir) if dump_dir else None,
                            dt=dt, steps=steps, encoding=encoding, on_pass=on_pass)
    if program.timing != "token":
        if text is not None:
            raise SpikestackError(f"--text {text}: a foreign LIF program reads input events, not text")
        return program
    program = carry_tokenizer(program, graph)
    return calibrate_chain(graph, program, calibrate, text) if calibrate > 0 else program  # units from weights


def compile_stream(source: str | Path, out: str | Path, target="loihi2", *, encoding: str | None = None,
                   text: str | Path | None = None):
    """A Hugging Face LLaMA folder (config.json + model.safetensors or sharded safetensors with
    model.safetensors.index.json) → the artifact folder `out`, reading, calibrating, quantizing and writing one
    decoder block at a time, so memory holds one block and the embedding and head, not the model
    (compiler/hybrid/stream.py). The artifact is byte-identical to `save(compile(source, target), out)`'s. Returns
    the program, its chip arrays memory-mapped from `out`."""
    from .compilation import compile_stream as stream
    from .compilation import is_streamable

    source = Path(source)
    if not source.exists():
        raise SpikestackError(f"{source}: file not found")
    if not is_streamable(source):
        raise SpikestackError(f"{source}: not a Hugging Face LLaMA folder (config.json with model_type 'llama' and "
                              "model.safetensors or model.safetensors.index.json); the streaming compile reads only "
                              "those")
    return stream(source, Path(out), target, encoding=encoding, text=text)


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
def _traces(program, inputs: np.ndarray, backends: Sequence[str], scheduler=None, workers=None,
            keep_trace: bool = True) -> dict[str, Any]:
    """One trace per backend, on the same inputs (a bar per backend on a terminal: Lava takes seconds)."""
    if scheduler is not None or workers is not None:  # sharded on a Dask cluster, merged to the same trace
        from .distributed import sharded_traces
        return sharded_traces(program, inputs, backends, scheduler=scheduler, workers=workers,
                              keep_trace=keep_trace)
    from .progress import progress

    shown = progress(backends, "backends", total=len(backends)) if len(backends) > 1 else backends
    if is_hybrid(program):
        from spikestack.runtime.hybrid.executor import run as run_hybrid
        from spikestack.runtime.hybrid.verify import chip_backend

        return {b: run_hybrid(program, inputs, chip_backend(b)) for b in shown}
    from spikestack.runtime.verify import backend_runner

    return {b: backend_runner(b)(program, inputs) for b in shown}


def run(program, inputs=None, backend: str = "reference", *, tokens: int = 256, text=None,
        float_source=None, scheduler: str | None = None, workers: int | None = None, streams: int = 1,
        keep_trace: bool = True) -> RunResult:
    """Run a program (or an artifact path) on a backend. Without `inputs`, the first `tokens` positions of `text`
    (a UTF-8 file, encoded by the program's tokenizer) or of the default text (token programs), or seeded input
    events (foreign LIF programs); the result says which, with bits per byte and perplexity of the text.
    backend="float" runs the float reference of `float_source`, the NIR graph (or file) the program came from.
    `scheduler` (a Dask address) or `workers` (a local Dask cluster) shard it: the same result (distributed.py).
    `streams`: token-streaming programs (SpikeGPT) read the text as that many independent streams, batched
    (spikestack/evaluation.py `hybrid_inputs`). `keep_trace=False` with a cluster: a language model's shards send
    back logits and per-layer counts, not their payloads; `.trace` is then a `TraceSummary` and every figure of
    `.to_dict()` is the same."""
    if backend != "float":
        _check_backend(backend)
    program = _as_program(program)
    data = _inputs(program, inputs, tokens, text, streams)
    if backend == "float" and scheduler is None and workers is None:
        trace = _float_trace(program, float_source, data.inputs)
    else:
        trace = _traces(program, data.inputs, (backend,), scheduler, workers, keep_trace)[backend]
    hybrid = is_hybrid(program)
    n = int(np.asarray(data.inputs).size) if hybrid else int(trace.tokens)
    # bits per character only for a next-token model: one logit per vocabulary id (a chain readout of another
    # width, such as a small test graph fed from the corpus, predicts something else)
    next_token = data.targets is not None and trace.logits.shape[-1] == vocab_size(program)
    score = round(bpc(trace.logits, data.targets), 4) if next_token and data.per_char else None
    metrics = text_metrics(trace.logits, data.targets, data.scored_bytes) if next_token and data.scored_bytes else {}
    counts = layers = None
    if not hybrid and program.timing != "token":  # per layer: each neuron's spikes over all samples and steps
        counts = trace.readout.tolist()
        layers = {k: np.asarray(s, np.int64).sum((0, 1)).tolist() for k, s in trace.spikes.items()}
    return RunResult(backend=backend, kind=kind_of(program), family=_family(program), tokens=n, trace=trace,
                     source=data.source, firing_rate={k: round(v, 6) for k, v in trace.firing_rate().items()},
                     events=trace.events(), saturations=dict(trace.saturations), bpc=score,
                     output_spike_counts=counts, layer_spike_counts=layers, text=data.text, **metrics)


def verify(program, backends: Sequence[str] = ("torch", "reference", "lava"), *, inputs=None,
           tokens: int = 32, raise_on_mismatch: bool = False, text=None, float_source=None) -> VerifyResult:
    """Every backend on the same inputs, compared spike for spike at every layer, step, position and neuron;
    with `float_source` (the NIR graph or file compiled), also the agreement with its float equations."""
    backends = tuple(backends)
    for b in backends:
        _check_backend(b)
    if len(backends) < 2:
        raise SpikestackError(f"verify needs two or more backends of {', '.join(BACKENDS)}, got {backends}")
    program = _as_program(program)
    data = _inputs(program, inputs, tokens, text)
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
                          events=first.events(), problems=problems, traces=traces, text=data.text)
    if float_source is not None:
        from spikestack.runtime.float_reference import agreement

        result = replace(result, float_agreement=agreement(program, first, _float_trace(program, float_source,
                                                                                         data.inputs)))
    if problems and raise_on_mismatch:
        raise VerificationError("; ".join(problems))
    return result


def _float_trace(program, float_source, inputs: np.ndarray):
    from .float_source import float_trace

    return float_trace(program, float_source, inputs)


# --------------------------------------------------------------------------------------------------- simulate
def simulate(program, trace=None, profile=None, *, tokens: int = 1024, inputs=None, text=None,
             scheduler: str | None = None, workers: int | None = None, streams: int = 1) -> Report:
    """Counts, energy and latency under a hardware profile (name, .toml path or `Profile`; default: the
    target's). Without a trace, the reference executor runs `tokens` positions of the validation text first
    (`streams` as in `run`)."""
    from spikestack.simulators.profiles import Profile, load_profile

    program = _as_program(program)
    if profile is None:
        profile = load_profile(_target_of(program).default_profile)
    elif not isinstance(profile, Profile):
        profile = load_profile(str(profile))
    sharded = scheduler is not None or workers is not None
    if trace is None and sharded and is_hybrid(program):  # the workers count their shards; only counts travel
        from spikestack.simulators.hybrid import hybrid_report

        from .distributed import sharded_counts

        data = _inputs(program, inputs, tokens, text, streams).inputs
        return Report(hybrid_report(program, sharded_counts(program, data, scheduler=scheduler, workers=workers),
                                    profile))
    if trace is None:
        data = _inputs(program, inputs, tokens, text, streams).inputs  # `scheduler`/`workers`: sharded as in `run`
        trace = _traces(program, data, ("reference",), scheduler, workers)["reference"]
    if is_hybrid(program):
        from spikestack.simulators.hybrid import simulate_hybrid

        return Report(simulate_hybrid(program, trace, profile))
    from spikestack.simulators.model import simulate as simulate_chain

    return Report(simulate_chain(program, trace, profile))


def _target_of(program):
    from spikestack.compiler.targets import target_of

    return target_of(program)  # the target embedded in the program: a custom .toml need not exist any more


# --------------------------------------------------------------------------------------------------- generate
def generate(program_or_checkpoint, prompt: str, tokens: int, backend: str = "reference", *,
             family: str | None = None) -> str:
    """Greedy text: from a float checkpoint (.pt, or a published one; `family` forces its layout) with its own
    model, or from a compiled program (or artifact directory) token by token on a backend. Returns the prompt
    followed by the continuation."""
    _check_backend(backend)
    source = program_or_checkpoint
    if isinstance(source, (str, Path)) and _is_checkpoint(Path(source)):
        from spikestack.models.registry import family_function

        checkpoint = _checkpoint(Path(source), family)
        return family_function(checkpoint, "generate")(checkpoint, prompt, tokens)
    program = _as_program(source)
    if not is_hybrid(program) and program.timing != "token":
        where = f"{source}: " if isinstance(source, (str, Path)) else ""
        raise SpikestackError(f"{where}a foreign LIF artifact reads input events, not text: it has no "
                              "vocabulary to generate from; use run or simulate")
    if is_hybrid(program) and program.family == "spikelm-enc":
        raise SpikestackError("generate: a SpikeLM encoder is bidirectional (masked-token model); generate from a "
                              "SpikeGPT, SpikeLLM or SpikeLM decoder artifact")
    from .generation import generate_program

    return generate_program(program, prompt, tokens, backend)


# --------------------------------------------------------------------------------------------------- evaluate
def evaluate(checkpoint, labels: str | Path, *, compiled: bool = False, target="loihi2", encoding: str | None = None,
             family: str | None = None):
    """Sentence-classification accuracy of a SpikeLM encoder checkpoint (ours, or a published BERT layout) on a
    labelled file (one `LABEL<TAB>TEXT` per line: spikestack/labels.py); with `compiled`, also of its class head
    compiled for `target`, beside the float figure. Returns a `ClassificationResult` (`.to_dict()`)."""
    from .classification import evaluate_labels

    return evaluate_labels(checkpoint, labels, compiled=compiled, target=target, encoding=encoding, family=family)


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
