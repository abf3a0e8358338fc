"""The CLI's commands for hybrid artifacts (the LM families: compiler/hybrid/ir.py), called by `cli.py` when a
source is a branching graph or an artifact is of kind ``hybrid``.

Sample data: the validation split of the shipped corpus (pydoc_data.topics), cut into windows of the model's
context; a graph whose vocabulary is not the corpus's gets seeded random ids instead (no targets, no bpc).
"""

from __future__ import annotations

from pathlib import Path

import nir
import numpy as np

from spikestack.errors import SpikestackError, VerificationError
from spikestack.outputs import atomic_write, strict_json, write_text

LM_FAMILIES = ("spikegpt", "spikellm", "spikelm-enc", "spikelm-dec")
CALIBRATION_SEQUENCES = 4
CALIBRATION_POSITIONS = 32
RANDOM_IDS_SEED = 0
CALIBRATION_OFFSET = 20_000  # validation characters skipped before the report's windows (disjoint from `run`'s)


def is_hybrid_graph(graph: nir.NIRGraph) -> bool:
    """LM-family metadata, or any node with two inputs or two consumers: the chain compiler cannot take it."""
    family = (graph.metadata or {}).get("spikestack.family", "")
    family = family.decode() if isinstance(family, bytes) else str(family)
    if family in LM_FAMILIES:
        return True
    fan_in: dict[str, int] = {}
    fan_out: dict[str, int] = {}
    for src, dst in graph.edges:
        fan_out[src] = fan_out.get(src, 0) + 1
        fan_in[dst] = fan_in.get(dst, 0) + 1
    return max([*fan_in.values(), *fan_out.values(), 0]) > 1


def sample_ids(vocab_size: int, context: int, n_tokens: int, offset: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
    """(ids [B, L], targets [B, L] or None): n_tokens next-token predictions (rounded up to whole windows of at
    most `context` positions) from the validation split, starting `offset` characters in. The text bounds the
    positions of random ids too, so that no --tokens value runs unbounded."""
    from spikestack.models.data import load_corpus

    if n_tokens < 1:
        raise SpikestackError(f"--tokens must be at least 1, got {n_tokens}")
    corpus = load_corpus()
    length = max(1, min(context or n_tokens, n_tokens))
    rows = -(-n_tokens // length)
    available = len(corpus.val_ids) - offset - 1
    if rows * length > available:
        raise SpikestackError(f"{rows * length} positions asked of the validation text, which has {available} "
                              f"after offset {offset}; use fewer --tokens")
    if vocab_size != corpus.vocab_size:
        rng = np.random.default_rng(RANDOM_IDS_SEED)
        return rng.integers(0, max(vocab_size, 1), (rows, length)), None
    stream = corpus.val_ids[offset: offset + rows * length + 1]
    ids = np.stack([stream[r * length: (r + 1) * length] for r in range(rows)])
    targets = np.stack([stream[r * length + 1: (r + 1) * length + 1] for r in range(rows)])
    return ids, targets


def compile_graph(graph: nir.NIRGraph, target: str, out: Path, *, encoding: str | None, dump_after: str | None,
                  calibrate: int = 0, dataflow: bool = False):
    """Compile, attach the per-layer quantization report on `calibrate` validation positions, save."""
    from spikestack.compiler import artifact
    from spikestack.compiler.hybrid.compile import HYBRID_PASSES, compile_hybrid, graph_context

    if dump_after is not None and dump_after not in HYBRID_PASSES:
        raise SpikestackError(f"--dump-after {dump_after}: not a pass of hybrid (language-model) programs; their "
                              f"passes are {', '.join(HYBRID_PASSES)}")
    vocab = int((graph.metadata or {}).get("spikestack.vocab_size", 0))
    context = (int((graph.metadata or {}).get("spikestack.max_seq_len", 0)) or graph_context(graph)
               or CALIBRATION_POSITIONS)
    ids, _ = sample_ids(vocab, min(context, CALIBRATION_POSITIONS),
                        CALIBRATION_SEQUENCES * (min(context, CALIBRATION_POSITIONS) - 1))
    def dump(name: str, ir) -> None:
        if name == dump_after:
            from spikestack.compiler.pipeline import to_jsonable

            folder = out.parent / f"{out.name}.dump"
            folder.mkdir(parents=True, exist_ok=True)
            index = HYBRID_PASSES.index(name)
            text = strict_json(to_jsonable(ir), f"--dump-after {name}", sort_keys=True, nonfinite="string")
            write_text(folder / f"{index:03d}_{name}.json", text)

    program = compile_hybrid(graph, target, ids, dataflow=dataflow, on_pass=dump, encoding=encoding)
    if dataflow and not any(la.kind == "relay" for la in program.layers):
        raise SpikestackError("--dataflow: no Linear of this graph reads a normed integer residual stream (SpikeGPT "
                              "with a binary embedding); nothing to fold")
    if calibrate > 0:
        from dataclasses import replace

        from spikestack.runtime.hybrid.calibration import layer_errors

        windows, _ = sample_ids(vocab, program.max_positions if program.time_axis != "tokens" else 0, calibrate,
                                offset=CALIBRATION_OFFSET)
        report = {"positions": int(windows.size), "layers": layer_errors(graph, program, windows)}
        program = replace(program, report=dict(program.report, calibration=report))
    artifact.save(program, out)
    return program


def _windows(program, tokens: int):
    context = program.max_positions if program.time_axis != "tokens" else 0
    return sample_ids(program.vocab_size, context, tokens, offset=0)


def bpc(logits: np.ndarray, targets: np.ndarray) -> float:
    """Bits per character of next-token `logits` [..., vocab] against `targets` [...] (every CLI report's)."""
    z = logits - logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return float(-np.take_along_axis(logp, targets[..., None], -1).mean() / np.log(2))


def cmd_run(program, backend: str, tokens: int, trace_path: str | Path | None) -> int:
    """`trace_path` was checked by the CLI (folder exists, not an input, .npz or .nir); written atomically."""
    from spikestack.runtime.hybrid.executor import run
    from spikestack.runtime.hybrid.verify import chip_backend

    trace_path = Path(trace_path) if trace_path else None
    if trace_path is not None and trace_path.suffix.lower() not in (".npz", ".nir"):
        raise SpikestackError(f"{trace_path}: traces are written as .npz or .nir (NIR ValuedEventData)")
    if trace_path is not None and not trace_path.parent.is_dir():
        raise SpikestackError(f"{trace_path}: its folder does not exist ({trace_path.parent})")
    ids, targets = _windows(program, tokens)
    trace = run(program, ids, chip_backend(backend))
    result = {"backend": backend, "family": program.family, "positions": int(ids.size), "calls": trace.calls,
              "events": trace.events(), "saturations": trace.saturations}
    if targets is not None:
        result["bpc"] = round(bpc(trace.logits, targets), 4)
    text = strict_json(result, "run result")
    if trace_path is not None and trace_path.suffix.lower() == ".nir":
        from spikestack.runtime.nir_data import hybrid_nir_data, write_graph_data

        write_graph_data(hybrid_nir_data(trace.payloads), trace_path)
    elif trace_path is not None:
        payloads = {f"payload:{k}": v for k, v in trace.payloads.items()}

        def write(tmp: Path) -> None:
            with tmp.open("wb") as f:
                np.savez_compressed(f, logits=trace.logits, **payloads)

        atomic_write(trace_path, write)
    print(text)
    return 0


def cmd_verify(program, backends: tuple[str, ...], tokens: int) -> int:
    from spikestack.runtime.hybrid.verify import verify

    ids, _ = _windows(program, tokens)
    traces, problems = verify(program, ids, backends)
    if problems:
        raise VerificationError("; ".join(problems))
    t = traces[backends[0]]
    print(f"bit-exact: yes ({', '.join(backends)}; {program.family}, {ids.size} positions, {t.calls} calls, "
          f"{len(t.payloads)} chip layers, {t.events()} events, logits equal)")
    return 0


def cmd_generate(program, prompt: str, tokens: int, backend: str) -> int:
    from spikestack.models.data import load_corpus
    from spikestack.runtime.hybrid.verify import chip_backend, generate_ids

    if program.family == "spikelm-enc":
        raise SpikestackError("generate: a SpikeLM encoder is bidirectional (masked-token model); generate from a "
                              "SpikeGPT, SpikeLLM or SpikeLM decoder artifact")
    if tokens < 0:
        raise SpikestackError(f"--tokens must be at least 0, got {tokens}")
    vocab = load_corpus().vocab
    if program.vocab_size != len(vocab):
        raise SpikestackError(f"artifact vocabulary has {program.vocab_size} ids, the shipped corpus {len(vocab)}")
    index = {ch: i for i, ch in enumerate(vocab)}
    unknown = sorted({ch for ch in prompt if ch not in index})
    if unknown or not prompt:
        raise SpikestackError(f"prompt must be non-empty text of the corpus alphabet; unknown {unknown!r}")
    ids = generate_ids(program, [index[ch] for ch in prompt], tokens, lambda: chip_backend(backend))
    print("".join(vocab[i] for i in ids))
    return 0


def simulate(program, profile, tokens: int) -> dict:
    """Counts, energy and latency (simulators/hybrid.py) on `tokens` validation positions run on the reference."""
    from spikestack.runtime.hybrid.executor import run
    from spikestack.simulators.hybrid import simulate_hybrid

    ids, _ = _windows(program, tokens)
    return simulate_hybrid(program, run(program, ids), profile)


def inspect(program) -> str:
    lines = [f"hybrid artifact: family {program.family}, target {program.target}, time axis {program.time_axis}"
             f" ({program.steps_per_token} call(s) per token), {len(program.layers)} chip layers, "
             f"{len(program.stages)} host stages, {len(program.cores)} cores"]
    cores: dict[str, int] = {}
    for c in program.cores:
        cores[c.pop] = cores.get(c.pop, 0) + 1
    lines.append(f"{'chip layer':44s} {'kind':8s} {'width':>5s} {'steps':>5s} {'payload':>7s} {'synapses':>9s} "
                 f"{'cores':>5s} seg")
    for la in program.layers:
        syn = 0 if la.projection is None else int(np.count_nonzero(la.projection.weight))
        n_cores = cores.get(la.name, 0) + (cores.get(la.projection.name, 0) if la.projection else 0)
        lines.append(f"{la.name:44s} {la.kind:8s} {la.width:5d} {la.steps:5d} {la.payload_bits:5d} b "
                     f"{syn:9d} {n_cores:5d} {la.segment:3d}")
    if program.cores:
        from spikestack.compiler.targets import load_target

        target = load_target(program.target)
        neurons = np.array([c.hi - c.lo for c in program.cores])
        memory = np.array([c.synaptic_memory_bits for c in program.cores]) / target.synaptic_memory_bits
        chips = len({c.chip for c in program.cores})
        lines.append(f"per-core load: neurons max {neurons.max()} / mean {neurons.mean():.0f} of "
                     f"{target.max_neurons}; synaptic memory max {memory.max():.1%} / mean {memory.mean():.1%}; "
                     f"{chips} chip(s)")
    lines.append("host stages (ONNX):")
    for st in program.stages:
        ops = ", ".join(st.ops[:4]) + (f", … (+{len(st.ops) - 4})" if len(st.ops) > 4 else "")
        lines.append(f"  stage {st.index}: {len(st.ops)} ops, {st.macs_per_position} MACs/position, "
                     f"{len(st.state_in)} states; {ops}")
    if program.decode_stages:
        per_step = f", one set per spiking step (x{program.steps_per_token})" if program.time_axis == "steps" else ""
        lines.append(f"KV-cache decode program: {len(program.decode_stages)} stages, {len(program.decode_states)} "
                     f"caches{per_step}, up to {program.max_positions} positions")
    chained = [la for la in program.layers if la.source is not None]
    if chained:
        lines.append("chained on the chip: " + ", ".join(f"{la.source} → {la.name}" for la in chained))
    traffic = program.report.get("host_traffic_values_per_position", {})
    lines.append(f"host↔chip traffic per position and call: {traffic.get('host_to_chip', 0)} values to the chip, "
                 f"{traffic.get('chip_to_host', 0)} back")
    calibration = program.report.get("calibration")
    if calibration:
        lines.append(f"quantization error vs the float model ({calibration['positions']} positions; compounding):")
        for name, e in ((la.name, calibration["layers"][la.name]) for la in program.layers
                        if la.name in calibration["layers"]):
            lines.append(f"  {name:44s} max {e['max_abs']:.4g}  mean {e['mean_abs']:.4g}  "
                         f"rel {100 * e['rel_mean']:.2f} %  saturations {e['saturations']}")
    placement = program.report.get("placement", {})
    if placement:
        lines.append(f"placement: {placement.get('chosen_per_chip')} hop-weighted routes "
                     f"{placement.get('hop_weighted_routes')}")
    return "\n".join(lines)
