"""What `spikestack.compile` does for language models (hybrid programs) besides the compiler's own passes: the IR
dump hooks, the calibration text, and the optional per-layer quantisation error report.

Why a module of its own: the public API (`api.py`) stays a thin front door, and the report's position budget (a
216M model must not run its compiled program token by token for minutes by default) lives next to the code it
bounds.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from spikestack.errors import SpikestackError

from .evaluation import calibration_inputs

# The per-layer error report (`compile --calibrate N`, the CLI's default N = 256) runs the float64 model and the
# compiled program on N positions: its cost is about weights × positions (every weight read once per position;
# SpikeGPT calls token by token). Above this budget it takes fewer positions (never under LAYER_ERROR_MIN_POSITIONS)
# and says how many in the report's "positions": 10^9 keeps all 256 positions up to 3.9 M weights (every shipped
# checkpoint is far below) and gives the SpikeGPT-216M shape 4 (bench/compile_published.py: 390 s and 11.6 GB
# with all 256, measured before this budget).
LAYER_ERROR_WEIGHT_POSITIONS = 1_000_000_000
LAYER_ERROR_MIN_POSITIONS = 4


def is_hybrid_graph(graph) -> bool:
    """A language-model graph (compiled to a hybrid program), not a LIF chain."""
    from spikestack.compiler.nir_cycles import is_recurrent_chain
    from spikestack.compiler.program_kind import is_hybrid_graph as branching

    # a cycle (snnTorch RLeaky) has a node with two inputs, yet it is a LIF graph: the chain compiler takes it
    return branching(graph) and not is_recurrent_chain(graph)


def ir_dumper(folder: Path):
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


def graph_weights(graph) -> int:
    """Weights of the graph's nodes (every `weight` array: Linears, embeddings, norms)."""
    return sum(int(np.asarray(getattr(node, "weight", ())).size) for node in graph.nodes.values())


def layer_error_windows(windows: np.ndarray, weights: int, token_by_token: bool) -> np.ndarray:
    """`windows` [B, L] cut to LAYER_ERROR_WEIGHT_POSITIONS / `weights` positions (at least
    LAYER_ERROR_MIN_POSITIONS, at most all): the first calls of a token-by-token program, whole windows otherwise
    (at least one)."""
    allowed = max(LAYER_ERROR_MIN_POSITIONS, LAYER_ERROR_WEIGHT_POSITIONS // max(weights, 1))
    if windows.size <= allowed:
        return windows
    if token_by_token:
        return windows[..., : max(1, allowed // max(windows.shape[0], 1))]
    return windows[: max(1, allowed // max(windows.shape[-1], 1))]


def compile_hybrid_graph(graph, target, *, encoding, dataflow, calibrate, dump_after, dump_dir, on_pass=None,
                         text=None):
    """`spikestack.compile` for a language-model graph: the passes, the calibration text in the report, and with
    `calibrate` > 0 the per-layer error on that many positions (fewer for big models: `layer_error_windows`)."""
    from spikestack.compiler.hybrid.compile import HYBRID_PASSES, compile_hybrid
    from spikestack.compiler.kinds import kind_of as chip_kind
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

    calibration = calibration_inputs(graph, text=text)
    program = compile_hybrid(graph, target, calibration.inputs, dataflow=dataflow, on_pass=dump, encoding=encoding)
    program = replace(program, report=dict(program.report, calibration_text=calibration.text))
    if dataflow and not any(chip_kind(la).dataflow_fold for la in program.layers):
        raise SpikestackError("--dataflow: no Linear of this graph reads a normed integer residual stream (SpikeGPT "
                              "with a binary embedding); nothing to fold")
    if calibrate > 0:
        program = with_layer_errors(graph, program, calibrate, text)
    return program


def with_layer_errors(graph, program, calibrate: int, text=None):
    """The program with its report's "calibration": the per-layer error on up to `calibrate` positions of the
    text, and "positions", the count actually used (`layer_error_windows`)."""
    from spikestack.models.nir.export_tokenizer import graph_tokenizer
    from spikestack.runtime.hybrid.calibration import layer_errors

    from .evaluation import CALIBRATION_OFFSET, sample_ids

    context = program.max_positions if program.time_axis != "tokens" else 0
    windows = sample_ids(program.vocab_size, context, calibrate, offset=CALIBRATION_OFFSET,
                         tokenizer=graph_tokenizer(graph), text=text).inputs
    windows = layer_error_windows(windows, graph_weights(graph), program.time_axis == "tokens")
    report = {"positions": int(windows.size), "layers": layer_errors(graph, program, windows)}
    return replace(program, report=dict(program.report, calibration=report))


# Above this many bytes of weights a Hugging Face LLaMA folder compiles one decoder block at a time even when the
# per-layer error report is asked for (which needs the whole float model): the in-memory path holds 4–6× the fp16
# weights (float64 NIR copies, their calibration run, the mantissas), so 2 GB of weights is ~10 GB of memory.
STREAM_ABOVE_BYTES = 2_000_000_000


def is_streamable(source: Path) -> bool:
    """A Hugging Face LLaMA folder (config.json with model_type llama, safetensors weights): the streaming compile
    reads it block by block (compiler/hybrid/stream.py)."""
    from spikestack.models.published.reading import read_config

    if not source.is_dir() or not any((source / n).is_file() for n in ("model.safetensors",
                                                                       "model.safetensors.index.json")):
        return False
    try:
        config = read_config(source)
    except SpikestackError:
        return False  # the in-memory path reports what is wrong with it
    return isinstance(config, dict) and config.get("model_type", "llama") == "llama" and "hidden_size" in config


def weights_bytes(source: Path) -> int:
    return sum(p.stat().st_size for p in source.glob("*.safetensors"))


def streams(source: Path, *, dataflow: bool, family: str | None, calibrate: int, dumps: bool) -> bool:
    """Whether `compile` of `source` goes block by block (`compile_stream`): a Hugging Face LLaMA folder, when that
    gives the same artifact (no per-layer error report: calibrate 0, no IR dumps) or when the whole model would
    not fit (weights over STREAM_ABOVE_BYTES; then the error report, which needs the whole float model, is left
    out and the IR dumps are refused)."""
    if dataflow or family not in (None, "spikellm", "hf-llama") or not is_streamable(source):
        return False
    size = weights_bytes(source)
    if size > STREAM_ABOVE_BYTES and dumps:
        raise SpikestackError(f"{source}: {size:,} bytes of weights compile block by block, which has no "
                              "whole-graph IR to dump (--dump-ir, --dump-after)")
    return size > STREAM_ABOVE_BYTES or not (calibrate or dumps)


def compile_stream(source: Path, out: Path, target, *, encoding=None, text=None, timings=None):
    """A Hugging Face LLaMA folder → the artifact folder `out`, one decoder block in memory at a time; returns the
    program (its chip arrays memory-mapped from `out`). The artifact is `compile(source, calibrate=0)` then
    `save`'s, byte for byte (tests/compiler/test_stream.py)."""
    from spikestack.compiler.artifact import save, writer_for
    from spikestack.compiler.hybrid.stream import compile_stream as stream
    from spikestack.models.published.hf_llama import LlamaStream

    from .evaluation import calibration_inputs, carry_tokenizer

    model = LlamaStream(source)  # saliency on the shipped corpus, as `compile` converts it (api.py `_checkpoint`)
    calibration = calibration_inputs(model.skeleton, text=text)
    writer = writer_for(out)
    try:
        program = stream(model, target, calibration.inputs, writer, encoding=encoding, timings=timings)
        program = replace(program, report=dict(program.report, calibration_text=calibration.text))
        program = carry_tokenizer(program, model.skeleton)
    except BaseException:
        writer.abort()
        raise
    save(program, out, writer)
    return program
