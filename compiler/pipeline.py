"""The compiler's pass pipeline: NIR → float IR → integer program → mapped program.

A short explicit list of named passes, each with a one-line why, run by the shared pass manager
(`passes/manager.py`): the matching verifier runs after every pass and a failure names the passes run so far.
`dump_after` writes the IR after a named pass (`--dump-after PASS`), `on_pass` after every pass (`--dump-ir`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spikestack.errors import CompileError

from .encodings import ENCODINGS
from .from_nir import from_nir, read_nir
from .ir import FloatGraph, Program
from .passes.check_neurons import check_neurons
from .passes.cut_host import cut_host
from .passes.fold_amplitudes import fold_amplitudes
from .passes.lower_spikes import lower_spikes
from .passes.manager import Pass, run_passes
from .passes.partition import partition
from .passes.place import place
from .passes.quantize import quantize
from .targets import Target, load_target
from .verify import verify_float, verify_program


@dataclass(frozen=True, slots=True, kw_only=True)
class CompileOptions:
    """User choices that passes read (typed, never environment variables)."""

    encoding: str | None = None  # force one spike encoding on every bi-spike edge (None: the cost model picks)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainContext:
    """What every chain pass may read besides the IR: the target and the user's options."""

    target: Target
    options: CompileOptions


def _verify(ir: FloatGraph | Program) -> None:
    verify_float(ir) if isinstance(ir, FloatGraph) else verify_program(ir)


def _chain_pass(name: str, why: str, run: Callable[[Any, ChainContext], Any]) -> Pass[ChainContext]:
    return Pass(name, why, run, verify=_verify)


PIPELINE: tuple[Pass[ChainContext], ...] = (
    _chain_pass("check_neurons", "refuse neuron kinds the target cannot run, before any work",
                lambda g, c: check_neurons(g, c.target)),
    _chain_pass("fold_amplitudes", "α_ref into weights: synapses stay static, per-step α rides in the payload",
                lambda g, c: fold_amplitudes(g)),
    _chain_pass("quantize", "Lava fixed_pt integers; worst-case state bound chooses payload precision",
                lambda g, c: quantize(g, c.target)),
    _chain_pass("lower_spikes", "signed levels → graded, unary or bit-serial events, chosen per edge by a cost model",
                lambda p, c: lower_spikes(p, c.target, encoding=c.options.encoding)),
    _chain_pass("partition", "populations → cores under neuron, memory and axon limits",
                lambda p, c: partition(p, c.target)),
    _chain_pass("place", "cores → mesh tiles (min-cut or serpentine) minimising hop-weighted traffic",
                lambda p, c: place(p, c.target)),
    _chain_pass("cut_host", "embedding and readout scaling → ONNX host programs run by onnxruntime",
                lambda p, c: cut_host(p, c.target)),
)
PASS_NAMES = tuple(p.name for p in PIPELINE)


def to_jsonable(obj: Any) -> Any:
    """IR → JSON-able structure (arrays as lists) for dumps."""
    if is_dataclass(obj):
        return {"_type": type(obj).__name__, **{f.name: to_jsonable(getattr(obj, f.name)) for f in fields(obj)}}
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(x) for x in obj]
    if isinstance(obj, dict):
        return {k: to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, bytes):
        return {"bytes": len(obj)}
    return obj


def compile_graph(graph_or_path: Any, target: Target | str = "loihi2", *, dump_after: str | None = None,
                  dump_dir: Path | None = None, dt: float | None = None, steps: int | None = None,
                  encoding: str | None = None, on_pass: Callable[[str, Any], None] | None = None) -> Program:
    """NIR graph or file → mapped program. `dt` (s) and `steps` (per sample) apply to foreign LIF graphs.
    `on_pass(name, ir)` sees the IR after from_nir and after every pass (`compile --dump-ir`)."""
    seen = on_pass or (lambda _name, _ir: None)
    target = load_target(target) if isinstance(target, str) else target
    if dump_after is not None and dump_after not in PASS_NAMES:
        raise CompileError(f"--dump-after {dump_after!r}: no such pass; passes are {', '.join(PASS_NAMES)}")
    if encoding is not None and encoding not in ENCODINGS:
        raise CompileError(f"--encoding {encoding!r}: choose from {', '.join(ENCODINGS)}")
    options = CompileOptions(encoding=encoding)
    nir_graph = read_nir(graph_or_path) if isinstance(graph_or_path, (str, Path)) else graph_or_path
    ir: Any = from_nir(nir_graph, dt=dt, steps=steps)
    verify_float(ir)
    seen("from_nir", ir)

    def after(name: str, ir: Any) -> None:
        seen(name, ir)
        if dump_after == name:
            out = Path(dump_dir or ".") / f"{PASS_NAMES.index(name) + 1:03d}_{name}.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(to_jsonable(ir), indent=1, sort_keys=True))

    return run_passes(PIPELINE, ir, ChainContext(target=target, options=options), after, already_run=("from_nir",))
