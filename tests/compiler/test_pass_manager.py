"""compiler/passes/manager.py: the pass manager both compilers share, on toy IRs (the contract) and on the two real
pipelines (their names, their whys, the order `on_pass` sees, the hybrid stages and timings)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from spikestack.compiler import pass_names
from spikestack.compiler.hybrid.compile import (
    HYBRID_PIPELINE,
    CalibratedStage,
    CutStage,
    QuantizedStage,
    compile_hybrid,
)
from spikestack.compiler.hybrid.ir import HostStage, HybridProgram, QChipLayer
from spikestack.compiler.passes.manager import Pass, run_passes
from spikestack.compiler.pipeline import PIPELINE
from spikestack.models.data import load_corpus
from spikestack.models.nir.export import model_to_nir

from spikestack.errors import CompileError, TargetLimitError

CKPT = Path(__file__).resolve().parents[2] / "models" / "checkpoints"


def _at_most(limit: int):
    def verify(ir: tuple[int, ...]) -> None:
        if sum(ir) > limit:
            raise CompileError(f"sum {sum(ir)} > {limit}")
    return verify


APPEND = Pass("append", "adds the context's number", lambda ir, n: (*ir, n), verify=_at_most(10))
DOUBLE = Pass("double", "doubles every entry", lambda ir, n: tuple(2 * x for x in ir), verify=_at_most(10))
KEEP = Pass("keep", "nothing to do here", lambda ir, n: ir, verify=_at_most(10), view=len)


def test_passes_run_in_order_and_on_pass_sees_each_view():
    seen: list[tuple[str, object]] = []
    out = run_passes((APPEND, DOUBLE, KEEP), (1,), 3, lambda name, ir: seen.append((name, ir)))
    assert out == (2, 6)
    assert seen == [("append", (1, 3)), ("double", (2, 6)), ("keep", 2)]  # `keep` shows its view: len


def test_a_pass_that_returns_its_input_unchanged_is_fine():
    ir = (4, 5)
    assert run_passes((KEEP, KEEP), ir, 0) is ir


def test_a_failing_verifier_names_the_pass_and_the_passes_run():
    seen: list[str] = []
    with pytest.raises(CompileError) as err:  # (1, 4) passes append; doubled to (2, 8) = 10 passes; append 4 fails
        run_passes((APPEND, DOUBLE, APPEND, KEEP), (1,), 4, lambda name, _ir: seen.append(name),
                   already_run=("from_nir",))
    assert str(err.value) == "sum 14 > 10 (passes run: from_nir, append, double, append)"
    assert seen == ["append", "double"]  # on_pass never sees an IR that failed its verifier


def test_a_failing_pass_is_named_too_and_subclasses_pass_through():
    def refuse(_ir, _ctx):
        raise TargetLimitError("core 'x': 9 neurons > 8")

    def broken(_ir, _ctx):
        raise CompileError("node 'y': no weight")

    with pytest.raises(CompileError, match=r"^node 'y': no weight \(passes run: append, broken\)$"):
        run_passes((APPEND, Pass("broken", "fails", broken)), (1,), 2)
    with pytest.raises(TargetLimitError, match=r"^core 'x': 9 neurons > 8$"):
        run_passes((APPEND, Pass("refuse", "fails", refuse)), (1,), 2)


def test_pass_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        APPEND.name = "other"  # type: ignore[misc]


def test_pipelines_match_the_light_pass_names_and_have_one_line_whys():
    assert tuple(p.name for p in PIPELINE) == pass_names.CHAIN_PASSES
    assert tuple(p.name for p in HYBRID_PIPELINE) == pass_names.HYBRID_PASSES
    for p in (*PIPELINE, *HYBRID_PIPELINE):
        assert p.why and "\n" not in p.why and len(p.why) < 120, p.name


def test_hybrid_on_pass_sees_every_pass_in_order_with_todays_payloads():
    graph = model_to_nir("spikegpt", CKPT / "spikegpt-char-2x64.pt")
    ids = load_corpus().val_ids[:48].reshape(3, 16)
    seen: list[tuple[str, object]] = []
    timings: dict[str, float] = {}
    program = compile_hybrid(graph, "loihi2", ids, timings, on_pass=lambda name, ir: seen.append((name, ir)))
    assert [name for name, _ in seen] == list(pass_names.HYBRID_PASSES)
    payload = dict(seen)
    assert [la["name"] for la in payload["cut"]["layers"]] == [la.name for la in program.layers]
    assert set(payload["calibrate"]) == {la.name for la in program.layers}
    assert all(isinstance(la, QChipLayer) for la in payload["quantize"])
    assert payload["quantize"] == list(program.layers)
    assert payload["host"] == program.stages and all(isinstance(s, HostStage) for s in program.stages)
    assert [(c.pop, c.lo, c.hi) for c in payload["partition"]] == [(c.pop, c.lo, c.hi) for c in program.cores]
    assert {c.chip for c in payload["partition"]} == {-1} and {c.chip for c in program.cores} == {0}  # place placed
    assert payload["place"] is program
    assert set(timings) == {"cut", "calibrate", "quantize", "host_build", "onnx_export", "partition_place"}
    assert all(t > 0 for t in timings.values())


def test_hybrid_stages_are_typed_and_frozen():
    assert [_stage_type(p) for p in HYBRID_PIPELINE] == [CutStage, CalibratedStage, QuantizedStage, HybridProgram,
                                                         HybridProgram, HybridProgram]
    stage = CutStage(graph=None, plan=None)  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        stage.plan = None  # type: ignore[misc]


def _stage_type(p: Pass) -> type:
    """The stage class a pass returns, from its annotation (the module uses postponed annotations)."""
    import spikestack.compiler.hybrid.compile as hybrid_compile

    return getattr(hybrid_compile, p.run.__annotations__["return"])


def test_hybrid_graph_without_spiking_neurons_stops_after_the_cut():
    graph = model_to_nir("spikegpt", CKPT / "spikegpt-char-2x64-ann.pt")
    seen: list[str] = []
    with pytest.raises(CompileError, match=r"no spiking neuron node .*nothing to put on the chip "
                                           r"\(passes run: cut\)$"):
        compile_hybrid(graph, "loihi2", np.zeros((1, 4), dtype=np.int64), on_pass=lambda name, _ir: seen.append(name))
    assert seen == []


def test_architecture_doc_tables_are_the_pass_whys():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "architecture.md").read_text()
    chain, hybrid = doc.split("### Language models")
    for section, passes in ((chain, PIPELINE), (hybrid, HYBRID_PIPELINE)):
        rows = [line.split(" | ")[:2] for line in section.splitlines() if line.startswith("| `")]
        assert rows == [[f"| `{p.name}`", p.why] for p in passes]
