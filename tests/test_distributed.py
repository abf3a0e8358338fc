"""Evaluation and sweeps on Dask (spikestack/distributed.py): the same results with and without a cluster.

One LocalCluster of 2 worker processes serves the whole module (starting one takes seconds on 2 shared cores).
Every comparison is exact: the CLI's JSON text, the report dict and the sweep rows must be equal, floats included.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import spikestack
from spikestack import distributed as sdist
from spikestack.cli import main
from spikestack.errors import SpikestackError

from .conftest import make_lif_graph

CKPT = Path(__file__).resolve().parent.parent / "models" / "checkpoints"
WORKERS = 2


@pytest.fixture(scope="module")
def cluster():
    import dask
    from distributed import LocalCluster

    # no rescheduling after a worker dies: the lost-worker test fails at once instead of killing 4 workers
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        yield c.scheduler_address


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    root = tmp_path_factory.mktemp("dask")
    mlp = spikestack.save(spikestack.compile(CKPT / "bispike-mlp.pt", target="loihi2"), root / "mlp")
    llm = spikestack.save(spikestack.compile(CKPT / "spikellm-char-tiny.pt", target="loihi2"), root / "llm")
    lif = spikestack.save(spikestack.compile(make_lif_graph(steps=12), target="loihi2"), root / "lif")
    return {"mlp": mlp, "llm": llm, "lif": lif}


# tokens chosen so that every input splits into 2 shards: 300 windows, 5 sequences of 64 (SpikeLLM), 9 samples
TOKENS = {"mlp": 300, "llm": 320, "lif": 9}


def _stdout(capsys, argv: list[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 0
    return capsys.readouterr().out


def test_shard_bounds_are_contiguous_and_cover():
    assert sdist.shard_bounds(5, 2) == [(0, 2), (2, 5)]
    assert sdist.shard_bounds(1, 4) == [(0, 1)]
    assert sdist.shard_bounds(300, 2) == [(0, 150), (150, 300)]


@pytest.mark.parametrize("name", ["mlp", "llm", "lif"])
def test_run_json_is_identical_with_dask(cluster, artifacts, name, capsys):
    argv = ["run", str(artifacts[name]), "--tokens", str(TOKENS[name])]
    alone = _stdout(capsys, argv)
    sharded = _stdout(capsys, [*argv, "--scheduler", cluster])
    assert sharded == alone  # every byte: bpc, bits per byte, perplexity, counts, firing rates
    result = json.loads(alone)
    assert result["events"] > 0
    if name == "lif":
        assert len(result["output_spike_counts"]) == TOKENS["lif"]
    else:
        assert 1.0 < result["bpc"] < 4.0 and result["bits_per_byte"] == result["bpc"]  # one byte per character


@pytest.mark.parametrize("name", ["mlp", "llm"])
def test_trace_and_report_are_identical_with_dask(cluster, artifacts, name):
    program = spikestack.load(artifacts[name])
    tokens = TOKENS[name]
    alone = spikestack.run(program, tokens=tokens)
    sharded = spikestack.run(program, tokens=tokens, scheduler=cluster)
    for key, layer in alone.trace.layers().items():  # the merged trace is the one-process trace, array by array
        assert np.array_equal(sharded.trace.layers()[key], layer), key
    assert np.array_equal(sharded.logits, alone.logits)
    assert sharded.trace.saturations == alone.trace.saturations
    report = spikestack.simulate(program, tokens=tokens).to_dict()
    assert spikestack.simulate(program, tokens=tokens, scheduler=cluster).to_dict() == report
    assert report["tokens"] == tokens and report["sops"] > 0


def test_run_without_the_trace_sends_back_only_counts(cluster, artifacts):
    """keep_trace=False (the CLI without --trace): a language model's shards return logits and per-layer counts;
    every figure is the one-process figure, and the summary's counts are the full trace's."""
    from spikestack.runtime.trace import TraceSummary

    program = spikestack.load(artifacts["llm"])
    alone = spikestack.run(program, tokens=TOKENS["llm"])
    lean = spikestack.run(program, tokens=TOKENS["llm"], scheduler=cluster, keep_trace=False)
    assert isinstance(lean.trace, TraceSummary) and lean.trace.layers() == {}
    assert lean.to_dict() == alone.to_dict() and np.array_equal(lean.logits, alone.logits)
    full = alone.trace.layers()
    assert lean.trace.nonzero == {k: int((v != 0).sum()) for k, v in full.items()}
    assert lean.trace.slots == {k: int(v.size) for k, v in full.items()} and lean.events == alone.events > 0


def test_shard_counts_merge_to_the_whole_counts(artifacts):
    """What `simulate` ships back from the workers: each shard's counts, merged, equal the counts of the whole run
    array by array (no cluster needed: the merge is the client's part)."""
    from spikestack.runtime.hybrid.executor import run as run_hybrid
    from spikestack.simulators.hybrid_counts import count_hybrid, merge_counts

    program = spikestack.load(artifacts["llm"])
    ids = np.random.default_rng(1).integers(0, program.vocab_size, size=(5, 16))
    whole = count_hybrid(program, run_hybrid(program, ids).payloads)
    parts = [count_hybrid(program, run_hybrid(program, ids[lo:hi]).payloads) for lo, hi in ((0, 2), (2, 5))]
    merged = merge_counts(parts)
    for field in ("calls", "positions", "tokens", "links", "host_values_in", "host_values_out", "host_linear_macs",
                  "host_matmul_macs", "host_macs_by_stage"):
        assert getattr(merged, field) == getattr(whole, field), field
    assert merged.positions == 5 * 16 and parts[0].positions == 2 * 16
    for got, want in zip(merged.layers, whole.layers, strict=True):
        for f in dataclasses.fields(want):
            a, b = getattr(got, f.name), getattr(want, f.name)
            assert np.array_equal(a, b) and np.asarray(a).dtype == np.asarray(b).dtype, (want.name, f.name)
    other = count_hybrid(program, run_hybrid(program, ids[:, :8]).payloads)  # same calls; fine to merge
    assert merge_counts([other]).positions == 5 * 8
    with pytest.raises(ValueError, match="disagree on calls, links or layers"):
        merge_counts([whole, dataclasses.replace(whole, calls=whole.calls + 1)])


def test_sweep_table_is_identical_with_dask(cluster, tmp_path):
    from spikestack.sweep import sweep

    source = spikestack.export(CKPT / "bispike-mlp.pt", tmp_path / "mlp.nir")  # once, not once per sweep
    targets, profiles = ["loihi2", "generic"], ["loihi2_assumed", "loihi1_sanafe_calibrated"]
    alone = sweep(source, targets, profiles, tokens=32, workers=1)
    sharded = sweep(source, targets, profiles, tokens=32, scheduler=cluster)
    assert [(r["target"], r["profile"]) for r in alone] == [(t, p) for t in targets for p in profiles]
    assert all(r["error"] == "" and r["energy_per_token_j"] > 0 for r in alone)
    assert sharded == alone  # one task per target, rows in the order of the points


def test_unreachable_scheduler_is_one_line_and_writes_nothing(artifacts, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sdist, "CONNECT_TIMEOUT_S", 2.0)
    out = tmp_path / "trace.npz"
    capsys.readouterr()
    address = "tcp://127.0.0.1:9"  # the discard port: nothing listens there
    assert main(["run", str(artifacts["mlp"]), "--tokens", "8", "--trace", str(out), "--scheduler", address]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"spikestack: error: cannot reach Dask scheduler at {address}: ")
    assert err.count("\n") == 1
    table = tmp_path / "sweep.json"
    assert main(["sweep", str(CKPT / "bispike-mlp.pt"), "--tokens", "8", "-o", str(table),
                 "--scheduler", address]) == 2
    assert capsys.readouterr().err.startswith("spikestack: error: cannot reach Dask scheduler")
    assert not out.exists() and not table.exists() and list(tmp_path.iterdir()) == []


def test_scheduler_and_workers_together_are_refused(artifacts, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", str(artifacts["mlp"]), "--workers", "2", "--scheduler", "tcp://127.0.0.1:9"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err == "spikestack: error: argument --scheduler: not allowed with argument --workers\n"
    with pytest.raises(SpikestackError, match="give one of them"):
        spikestack.run(artifacts["mlp"], tokens=8, scheduler="tcp://127.0.0.1:9", workers=2)


def test_only_the_reference_backend_is_sharded(cluster, artifacts):
    with pytest.raises(SpikestackError, match="backend 'lava' with a Dask cluster"):
        spikestack.run(artifacts["mlp"], backend="lava", tokens=8, scheduler=cluster)


def test_help_does_not_import_dask():
    code = ("import sys, contextlib, io\nfrom spikestack.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
            "    main(['run', '--help'])\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_worker_that_dies_fails_the_run_in_one_error(cluster):
    # last in the module: it kills a worker (allowed-failures = 0 in the fixture, so no rescheduling)
    with pytest.raises(sdist.ClusterError, match="a Dask worker died running it"):
        sdist.map_ordered(os._exit, [(3,)], scheduler=cluster, what="suicide")
