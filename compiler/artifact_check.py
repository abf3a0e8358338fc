"""Relations between manifest fields, array values and the report: what `load` checks after the schema
(`compiler/artifact_schema.py`) and before handing a program to runtime/ and simulators/.

The schema says each field has the right type and range; this module says they fit together the way the executors
assume: array shapes follow steps, levels and sizes; projections join populations that exist, in the chain order
the reference executor walks; chained chip layers read a source in their own segment; cores name populations and
index 0..n-1 (the simulator indexes per-core arrays by them); the report's sections that `inspect` formats hold
numbers. After the arrays are read, `check_values` bounds what the verifiers do not (Lava's bias fields, delays,
accumulator groups) and `run_verifier` runs the compiler's own verifier on the built program. Every failure is
one ArtifactError naming manifest.json and the JSON path of the field.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from spikestack.errors import ArtifactError, CompileError

from .artifact_files import chunks, mapping_of
from .artifact_schema import VOCAB_MAX, Ctx, fail, join, show
from .hybrid.ir import HybridProgram
from .ir import Program, QLIFPop, QReadoutPop
from .kinds import KINDS, kind_of
from .passes.quantize_lif import BIAS_EXP_MAX, BIAS_MANT_MAX, MAX_DELAY_STEPS
from .targets import Target


def shape_of(ctx: Ctx, ref: dict[str, str] | None) -> tuple[int, ...] | None:
    return None if ref is None else tuple(ctx.arrays[ref["array"]]["shape"])


def expect_shape(ctx: Ctx, path: str, ref: dict[str, str] | None, want: tuple[int, ...], meaning: str) -> None:
    got = shape_of(ctx, ref)
    if got != want:
        fail(ctx, path, ref, f"an array of shape {list(want)} ({meaning}); the array table says "
                             f"{None if got is None else list(got)}")


def unique(ctx: Ctx, items: list[dict[str, Any]], path: str, key: str = "name") -> None:
    seen: set[Any] = set()
    for i, item in enumerate(items):
        if item[key] in seen:
            fail(ctx, join(join(path, i), key), item[key], f"a {key} not used by an earlier entry of {path}")
        seen.add(item[key])


def check_cores(ctx: Ctx, cores: list[dict[str, Any]], sizes: dict[str, int],
                inputs: dict[str, int] | None = None) -> None:
    """Core indices are 0..n-1 once each; each core holds a slice [lo, hi) of a population that exists and, if
    split, an input chunk [in_lo, in_hi) of a population whose fan-in may be split (`inputs`: its inputs; none in
    a chain program, whose accumulators all stay on the chip). How the chunks tile is the verifier's check."""
    unique(ctx, cores, "cores", "index")
    for i, core in enumerate(cores):
        path = join("cores", i)
        if core["index"] >= len(cores):
            fail(ctx, join(path, "index"), core["index"], f"a core index in 0..{len(cores) - 1}")
        if core["pop"] not in sizes:
            fail(ctx, join(path, "pop"), core["pop"], "the name of a population on the cores")
        size = sizes[core["pop"]]
        if not core["lo"] < core["hi"] <= size:
            fail(ctx, join(path, "hi"), core["hi"], f"lo ({core['lo']}) < hi <= {size}, the size of {core['pop']!r}")
        in_lo, in_hi = core.get("in_lo", 0), core.get("in_hi", -1)
        if in_hi == -1:
            if in_lo != 0:
                fail(ctx, join(path, "in_lo"), in_lo, "0 (in_hi = -1: the core holds every input)")
            continue
        n = (inputs or {}).get(core["pop"])
        if n is None:
            fail(ctx, join(path, "in_hi"), in_hi, f"-1: the accumulators of {core['pop']!r} stay on the chip, so "
                                                  "its fan-in is never split")
        if not in_lo < in_hi <= n:
            fail(ctx, join(path, "in_hi"), in_hi, f"in_lo ({in_lo}) < in_hi <= {n}, the inputs of {core['pop']!r}")


def check_target(m: dict[str, Any], ctx: Ctx) -> None:
    """`target` is the name of the embedded `target_spec` (reports print the one, executors read the other)."""
    if m["target"] != m["target_spec"]["name"]:
        fail(ctx, "target", m["target"], f"{show(m['target_spec']['name'])}, the name of target_spec")


# ----------------------------------------------------------------------------------------------------- chain
def _chain_populations(ctx: Ctx, m: dict[str, Any]) -> dict[str, int]:
    steps, sizes = m["steps"], {}
    unique(ctx, m["populations"], "populations")
    for i, pop in enumerate(m["populations"]):
        path, n = join("populations", i), pop["size"]
        sizes[pop["name"]] = n
        if pop["kind"] == "bispike":
            k = pop["levels"]
            expect_shape(ctx, join(path, "thresholds"), pop["thresholds"], (steps, k), "steps × levels")
            expect_shape(ctx, join(path, "carry"), pop["carry"], (steps, 2 * k + 1), "steps × (2·levels + 1)")
            expect_shape(ctx, join(path, "amplitude"), pop["amplitude"], (steps,), "steps")
            expect_shape(ctx, join(path, "bias"), pop["bias"], (n,), "size")
        elif pop["kind"] == "readout":
            expect_shape(ctx, join(path, "host_bias"), pop["host_bias"], (n,), "size")
        else:
            expect_shape(ctx, join(path, "bias_mant"), pop["bias_mant"], (n,), "size")
            expect_shape(ctx, join(path, "bias_exp"), pop["bias_exp"], (n,), "size")
    return sizes


def _host_size(ctx: Ctx, host: dict[str, Any]) -> int:
    if host["kind"] == "spikes":
        return host["size"]
    vocab, width = shape_of(ctx, host["table"])
    if not (1 <= vocab <= VOCAB_MAX and width >= 1):
        fail(ctx, "host_input.table", host["table"], f"an array of shape [vocabulary 1..{VOCAB_MAX}, width >= 1]; "
                                                     f"the array table says {[vocab, width]}")
    return host["context"] * width


def _chain_token(ctx: Ctx, m: dict[str, Any], host_size: int) -> None:
    """The reference executor's walk: host → pops[0] → projection → pops[1] → … → readout, one edge per layer."""
    pops, projs = m["populations"], m["projections"]
    if m["host_input"]["kind"] != "embedding":
        fail(ctx, "host_input.kind", "spikes", '"embedding" (token timing)')
    if m["input_pop"] != pops[0]["name"]:
        fail(ctx, "input_pop", m["input_pop"], f"the first population, {pops[0]['name']!r} (token timing)")
    if host_size != pops[0]["size"]:
        fail(ctx, "host_input.context", m["host_input"]["context"],
             f"context × table width = {pops[0]['size']}, the size of {pops[0]['name']!r}")
    for i, pop in enumerate(pops):
        want = "readout" if i == len(pops) - 1 else "bispike"
        if pop["kind"] != want:
            fail(ctx, join(join("populations", i), "kind"), pop["kind"], f'"{want}" (token timing: bi-spike layers, '
                                                                        "then one readout)")
    if len(projs) != len(pops) - 1:
        fail(ctx, "projections", f"{len(projs)} projections", f"{len(pops) - 1}, one between consecutive populations")
    for j, proj in enumerate(projs):
        path = join("projections", j)
        src = next((i for i, p in enumerate(pops[:-1]) if p["name"] == proj["src"]), None)
        if src is None or any(q["src"] == proj["src"] for q in projs[:j]):
            fail(ctx, join(path, "src"), proj["src"], "a bi-spike population with no other outgoing projection")
        if proj["dst"] != pops[src + 1]["name"]:
            fail(ctx, join(path, "dst"), proj["dst"], f"{pops[src + 1]['name']!r}, the population after the source")
        if proj.get("encoding", "graded") != "graded" and proj.get("gain") is None:
            fail(ctx, join(path, "gain"), None, f"an int array of shape [{m['steps']}] (binary encodings)")
    names = [h["name"] for h in m.get("host_programs", [])]
    if names and sorted(names) != ["decode", "encode"]:
        fail(ctx, "host_programs", names, '"encode" and "decode" once each, or none')


def _chain_delayed(ctx: Ctx, m: dict[str, Any]) -> None:
    if m["host_input"]["kind"] != "spikes" or m["input_pop"] is not None:
        fail(ctx, "host_input.kind", m["host_input"]["kind"], '"spikes" with input_pop null (delayed timing)')
    for i, pop in enumerate(m["populations"]):
        if pop["kind"] != "lif":
            fail(ctx, join(join("populations", i), "kind"), pop["kind"], '"lif" (delayed timing)')
        incoming = [p["name"] for p in m["projections"] if p["dst"] == pop["name"]]
        if not incoming:  # several: a recurrent population (its feedback projection adds to the feed-forward one)
            fail(ctx, join(join("populations", i), "name"), pop["name"],
                 "a population with at least one incoming projection (has 0)")


def check_chain(m: dict[str, Any], ctx: Ctx) -> None:
    sizes = _chain_populations(ctx, m)
    host, steps = m["host_input"], m["steps"]
    host_size = _host_size(ctx, host)
    sources = dict(sizes)
    if m["input_pop"] is None:
        if host["name"] in sizes:
            fail(ctx, "host_input.name", host["name"], "a name no population uses")
        sources[host["name"]] = host_size
    elif m["input_pop"] not in sizes:
        fail(ctx, "input_pop", m["input_pop"], "null or the name of a population")
    unique(ctx, m["projections"], "projections")
    for j, proj in enumerate(m["projections"]):
        path = join("projections", j)
        if proj["src"] not in sources:
            fail(ctx, join(path, "src"), proj["src"], "the name of a population (or of the host input)")
        if proj["dst"] not in sizes:
            fail(ctx, join(path, "dst"), proj["dst"], "the name of a population")
        want = (sizes[proj["dst"]], sources[proj["src"]])
        expect_shape(ctx, join(path, "weight"), proj["weight"], want, "dst size × src size")
        if proj.get("delay") is not None:
            expect_shape(ctx, join(path, "delay"), proj["delay"], want, "the weight's shape")
        if proj.get("gain") is not None:
            expect_shape(ctx, join(path, "gain"), proj["gain"], (steps,), "steps")
    if m.get("timing", "token") == "token":
        _chain_token(ctx, m, host_size)
    else:
        _chain_delayed(ctx, m)
    unique(ctx, m.get("host_programs", []), "host_programs")
    check_cores(ctx, m["cores"], sizes)


# ---------------------------------------------------------------------------------------------------- hybrid
def _chip_layer(ctx: Ctx, la: dict[str, Any], path: str, by_name: dict[str, dict[str, Any]], segments: int) -> None:
    width, kind = la["width"], la["kind"]
    if la["segment"] >= segments:
        fail(ctx, join(path, "segment"), la["segment"], f"a segment in 0..{segments - 1} (after a host stage "
                                                        "that has a successor)")
    KINDS[kind].check_manifest(ctx, la, path)  # the schema admits registered kinds only
    proj = la.get("projection")
    if proj is not None:
        ppath = join(path, "projection")
        out = shape_of(ctx, proj["weight"])[0]
        expect_shape(ctx, join(ppath, "weight"), proj["weight"], (max(out, 1), width), "outputs ≥ 1 × layer width")
        expect_shape(ctx, join(ppath, "groups"), proj["groups"], (width,), "layer width")
        if proj.get("bias") is not None:
            expect_shape(ctx, join(ppath, "bias"), proj["bias"], (out,), "outputs")
        if proj.get("encoding", "graded") != "graded" and not KINDS[kind].binary_encodings:
            binary = ", ".join(k.name for k in KINDS.values() if k.binary_encodings)
            fail(ctx, join(ppath, "encoding"), proj["encoding"], f'"graded" for a {kind} layer (binary encodings '
                                                                 f"carry unsigned payloads: {binary})")
    source = la.get("source")
    if source is None:
        if la.get("bias") is not None:
            fail(ctx, join(path, "bias"), la["bias"], "null (only chained layers, with a source, have a bias)")
        return
    src = by_name.get(source)
    if src is None or source == la["name"] or src["segment"] != la["segment"] or src.get("projection") is None:
        fail(ctx, join(path, "source"), source, "another chip layer of the same segment that has a projection")
    if shape_of(ctx, src["projection"]["weight"])[0] != width:
        fail(ctx, join(path, "source"), source, f"a layer whose projection has {width} outputs (this layer's width)")
    expect_shape(ctx, join(path, "bias"), la.get("bias"), (width,), "layer width (chained layers)")
    seen, cursor = {la["name"]}, src
    while cursor.get("source") is not None:  # a cycle would leave the executor with no layer to start from
        if cursor["name"] in seen or cursor["source"] not in by_name:
            fail(ctx, join(path, "source"), source, "a chain of sources that ends at a host-fed layer (no cycle)")
        seen.add(cursor["name"])
        cursor = by_name[cursor["source"]]


def _hybrid_populations(m: dict[str, Any], ctx: Ctx) -> dict[str, int]:
    """Population sizes as `HybridProgram.populations` derives them (what cores and placement refer to)."""
    chained = {la.get("source") for la in m["layers"]} - {None}
    sizes: dict[str, int] = {}
    for la in m["layers"]:
        if not KINDS[la["kind"]].host_injected:  # a relay's events come from the host: no neurons on a core
            sizes[la["name"]] = la["width"]
        if la.get("projection") is not None and la["name"] not in chained:
            sizes[la["projection"]["name"]] = shape_of(ctx, la["projection"]["weight"])[0]
    return sizes


def check_hybrid(m: dict[str, Any], ctx: Ctx) -> None:
    for key in ("stages", "decode_stages"):
        for i, stage in enumerate(m.get(key, [])):
            if stage["index"] != i:
                fail(ctx, join(join(key, i), "index"), stage["index"], f"{i}, the stage's position")
    for key in ("states", "decode_states"):
        unique(ctx, m.get(key, []), key)
    if m["time_axis"] != "steps" and m["steps_per_token"] != 1:
        fail(ctx, "steps_per_token", m["steps_per_token"], f"1 (time_axis {m['time_axis']!r})")
    unique(ctx, m["layers"], "layers")
    by_name = {la["name"]: la for la in m["layers"]}
    for i, la in enumerate(m["layers"]):
        _chip_layer(ctx, la, join("layers", i), by_name, len(m["stages"]) - 1)
    check_cores(ctx, m["cores"], _hybrid_populations(m, ctx), _host_read_inputs(m, ctx))


def _host_read_inputs(m: dict[str, Any], ctx: Ctx) -> dict[str, int]:
    """Inputs of every projection whose accumulators the host reads (no chained layer takes them): the
    populations whose fan-in may be split over cores, the host summing the chunks."""
    chained = {la.get("source") for la in m["layers"]} - {None}
    return {la["projection"]["name"]: shape_of(ctx, la["projection"]["weight"])[1] for la in m["layers"]
            if la.get("projection") is not None and la["name"] not in chained}


# ---------------------------------------------------------------------------------------------------- report
def _numbers(ctx: Ctx, entry: Any, path: str, keys: tuple[str, ...], required: bool) -> None:
    if not isinstance(entry, dict):
        fail(ctx, path, entry, "an object")
    for key in keys:
        if key not in entry:
            if required:
                raise ArtifactError(f"{ctx.where}: {join(path, key)} is missing; required: a number")
            continue
        value = entry[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail(ctx, join(path, key), value, "a number")


def _objects(ctx: Ctx, section: Any, path: str) -> dict[str, Any]:
    if not isinstance(section, dict) or not all(isinstance(v, dict) for v in section.values()):
        fail(ctx, path, section, "an object of objects")
    return section


def check_report(m: dict[str, Any], ctx: Ctx) -> None:
    """The report sections that `spikestack inspect` formats as numbers (its chain and hybrid tables)."""
    report = m["report"]
    if not isinstance(report, dict):
        fail(ctx, "report", report, "an object")
    for key in ("placement", "host", "host_traffic_values_per_position"):
        if key in report and not isinstance(report[key], dict):
            fail(ctx, join("report", key), report[key], "an object")
    calibration = report.get("calibration")
    hybrid = m["kind"] == "hybrid"
    if m["kind"] == "chain":
        for name, entry in _objects(ctx, report.get("layers", {}), "report.layers").items():
            _numbers(ctx, entry, join("report.layers", name), ("max_abs_weight_error",), required=False)
        _objects(ctx, report.get("encodings", {}), "report.encodings")
    if calibration:
        count = "positions" if hybrid else "tokens"
        if not isinstance(calibration, dict) or count not in calibration:
            fail(ctx, "report.calibration", calibration, f"an object with {count!r} and 'layers'")
        layers = _objects(ctx, calibration.get("layers"), "report.calibration.layers")
        keys = ("max_abs", "mean_abs", "rel_mean", "saturations") if hybrid else \
            ("spike_agreement", "mean_abs_error", "mean_rel_error")
        for name, entry in layers.items():
            _numbers(ctx, entry, join("report.calibration.layers", name), keys, required=hybrid)


# ------------------------------------------------------------------------------------- values and verifier
def _within(ctx: Ctx, path: str, a: np.ndarray, lo: float, hi: float, what: str) -> None:
    """Piece by piece (`chunks`): a mapped array is scanned with one piece resident; the first value out of
    range in C order is the one named, as in a scan of the whole array."""
    for piece in chunks(np.asarray(a)):
        if piece.min() < lo or piece.max() > hi:
            bad = piece[(piece < lo) | (piece > hi)].flat[0]
            fail(ctx, path, bad.item(), f"{what}: every value in {lo}..{hi}")


def _finite(ctx: Ctx, path: str, a: np.ndarray | None) -> None:
    for piece in chunks(np.asarray(a)) if a is not None else ():
        if not np.isfinite(piece).all():
            fail(ctx, path, str(piece[~np.isfinite(piece)].flat[0]), "finite values only")


def lif_widths(ctx: Ctx, path: str, du: int, dv: int, vth: int, target: Target) -> None:
    """A LIF's decays within the target's decay bits, its threshold mantissa within what its shift leaves."""
    for key, value in (("du", du), ("dv", dv)):
        if not 0 <= value < target.decay_unity:
            fail(ctx, join(path, key), value, f"an integer in 0..{target.decay_unity - 1} (decay_bits = "
                                              f"{target.decay_bits} of target {target.name})")
    if not 0 < vth <= target.activation_max:
        fail(ctx, join(path, "vth"), vth, f"an integer in 1..{target.activation_max} (vth << activation_shift "
                                          f"must fit the {target.state_bits}-bit state of target {target.name})")


def check_values(program: Program | HybridProgram, ctx: Ctx) -> None:
    """Array values the verifiers leave unchecked but the executors rely on, and the LIF fields against the
    embedded target (with their JSON paths; the verifier checks them again)."""
    target = program.target_spec
    if isinstance(program, HybridProgram):
        for i, la in enumerate(program.layers):
            kind_of(la).check_values(ctx, la, join("layers", i), target)
            p = la.projection
            if p is not None:
                path = join(join("layers", i), "projection")
                _within(ctx, join(path, "groups"), p.groups, 0, p.n_groups - 1, "accumulator group of every input")
                _finite(ctx, join(path, "bias"), p.bias)
        return
    for i, pop in enumerate(program.populations):
        path = join("populations", i)
        if isinstance(pop, QLIFPop):
            lif_widths(ctx, path, pop.du, pop.dv, pop.vth, target)
            _within(ctx, join(path, "bias_exp"), pop.bias_exp, 0, BIAS_EXP_MAX, "Lava's 3-bit bias exponent")
            _within(ctx, join(path, "bias_mant"), pop.bias_mant, -BIAS_MANT_MAX, BIAS_MANT_MAX,
                    "Lava's 13-bit bias mantissa")
        elif isinstance(pop, QReadoutPop):
            _finite(ctx, join(path, "host_bias"), pop.host_bias)
    for j, proj in enumerate(program.projections):
        if proj.delay is not None:
            _within(ctx, join(join("projections", j), "delay"), proj.delay, 0, MAX_DELAY_STEPS,
                    "Lava's 6-bit synaptic delay")


def run_verifier(program: Program | HybridProgram, ctx: Ctx) -> None:
    """The compiler's verifier of the program's stage: what every pass promised holds for the loaded program too."""
    try:
        if isinstance(program, HybridProgram):
            from .hybrid.compile import verify_hybrid  # imports torch: only for the programs that need it

            verify_hybrid(_with_checked_weights(program))
        else:
            from .verify import verify_program

            verify_program(program)
    except CompileError as exc:
        raise ArtifactError(f"{ctx.where}: the program fails the compiler's verifier: {exc}") from None


def _with_checked_weights(program: HybridProgram) -> HybridProgram:
    """Each mapped chip weight replaced by a zero-stride stand-in of its dtype and shape once the verifier's own
    mantissa check (`_even_mantissas`) passed on it piece by piece (one piece resident; the verifier's whole-array
    scan would fault a 7B artifact's weights in at once). Zeros are even mantissas and the rest of the verifier
    reads only shapes, so it decides as on the real weights; a failing weight reaches it as is (its message)."""
    from .hybrid.compile import _even_mantissas
    from .passes.mantissas import weight_mantissa_max

    m_max = 2 * weight_mantissa_max(program.target_spec)  # as verify_hybrid: 254 at 8-bit mantissas
    layers = []
    for la in program.layers:
        w = None if la.projection is None else la.projection.weight
        if w is None or mapping_of(w) is None or not all(_even_mantissas(p, m_max) for p in chunks(w)):
            layers.append(la)
            continue
        stand_in = np.broadcast_to(np.zeros((), w.dtype), w.shape)
        layers.append(replace(la, projection=replace(la.projection, weight=stand_in)))
    return replace(program, layers=tuple(layers))


__all__ = ["check_chain", "check_hybrid", "check_report", "check_target", "check_values", "run_verifier", "show"]
