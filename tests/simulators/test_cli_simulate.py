"""`spikestack simulate --plots --report` and `spikestack sweep` on the tiny conftest graph."""

import json

import nir

from spikestack.cli import main
from tests.conftest import make_nir_chain


def test_simulate_writes_plots_and_markdown(tmp_path, capsys):
    src = tmp_path / "tiny.nir"
    nir.write(str(src), make_nir_chain(vocab=95))  # the corpus has 95 characters
    art = tmp_path / "art"
    assert main(["compile", str(src), "-o", str(art)]) == 0
    capsys.readouterr()
    out = tmp_path / "out"
    assert main(["simulate", str(art), "--tokens", "16", "--json", "--plots", str(out / "plots"),
                 "--report", str(out / "report.md")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["tokens"] == 16
    assert sorted(p.name for p in (out / "plots").iterdir()) == [
        "core_load.png", "energy_breakdown.png", "energy_vs_ann.png", "firing_rate.png"]
    md = (out / "report.md").read_text()
    assert "loihi2_assumed" in md and "![energy_vs_ann](plots/energy_vs_ann.png)" in md


def test_simulate_report_markdown_or_html(tmp_path, capsys):
    src = tmp_path / "tiny.nir"
    nir.write(str(src), make_nir_chain(vocab=95))
    main(["compile", str(src), "-o", str(tmp_path / "art")])
    capsys.readouterr()
    assert main(["simulate", str(tmp_path / "art"), "--tokens", "4", "--plots", str(tmp_path / "p"),
                 "--report", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert page.startswith("<!doctype html>") and "<table>" in page and "<h2>Counting conventions side by side" in page
    assert '<img src="p/' in page  # plots referenced relative to the page
    assert main(["simulate", str(tmp_path / "art"), "--tokens", "4", "--report", str(tmp_path / "r.pdf")]) == 2
    assert "writes Markdown (*.md) or HTML (*.html)" in capsys.readouterr().err


def test_sweep_cross_product_with_a_target_that_does_not_fit(tmp_path, capsys):
    from spikestack.compiler.pipeline import compile_graph
    from spikestack.runtime.reference import run
    from spikestack.simulators.model import simulate
    from spikestack.simulators.profiles import load_profile

    src = tmp_path / "tiny.nir"
    nir.write(str(src), make_nir_chain(vocab=95))
    out = tmp_path / "sweep.json"
    assert main(["sweep", str(src), "--targets", "loihi2,loihi1", "--profiles",
                 "loihi1_sanafe_calibrated,horowitz45_int8", "--tokens", "8", "-o", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [(r["target"], r["profile"]) for r in rows] == [
        ("loihi2", "loihi1_sanafe_calibrated"), ("loihi2", "horowitz45_int8"),
        ("loihi1", "loihi1_sanafe_calibrated"), ("loihi1", "horowitz45_int8")]
    # loihi1 cannot take the bi-spike chain (fixed CUBA-LIF neurons, binary payloads): a TargetLimitError per row
    assert all("target loihi1" in r["error"] and r["energy_per_token_j"] is None for r in rows[2:])
    # a sweep row equals a direct simulation of the same program on the same tokens
    from spikestack.evaluation import eval_inputs

    program = compile_graph(src, "loihi2")
    direct = simulate(program, run(program, eval_inputs(program, 8).inputs), load_profile("loihi1_sanafe_calibrated"))
    assert rows[0]["energy_per_token_j"] == direct["energy_per_token_j"] and rows[0]["error"] == ""
    assert rows[1]["latency_s_per_step"] is None  # Horowitz has no timing
    assert "loihi1" in capsys.readouterr().out


def test_sweep_writes_csv_and_rejects_other_suffixes(tmp_path, capsys):
    src = tmp_path / "tiny.nir"
    nir.write(str(src), make_nir_chain(vocab=95))
    assert main(["sweep", str(src), "--profiles", "horowitz45_fp32", "--tokens", "4", "--workers", "1",
                 "-o", str(tmp_path / "t.csv")]) == 0
    lines = (tmp_path / "t.csv").read_text().splitlines()
    assert lines[0].startswith("target,encoding,profile,cores")
    assert lines[1].startswith("loihi2,auto:graded,horowitz45_fp32,3,")
    assert main(["sweep", str(src), "-o", str(tmp_path / "t.txt")]) == 2
    assert "must end in .csv or .json" in capsys.readouterr().err


def test_sweep_crosses_encodings(tmp_path):
    """targets × encodings × profiles: unary costs more SOPs than graded once spikes have two levels."""
    import json

    src = tmp_path / "tiny.nir"
    nir.write(str(src), make_nir_chain(vocab=95, levels=2))
    out = tmp_path / "t.json"
    assert main(["sweep", str(src), "--encodings", "graded,unary,bitserial", "--profiles", "loihi2_assumed",
                 "--tokens", "8", "--workers", "1", "-o", str(out)]) == 0
    rows = {r["encoding"]: r for r in json.loads(out.read_text())}
    assert set(rows) == {"graded", "unary", "bitserial"}
    # events per spike: graded 1, bit-serial popcount(|s|) (1 for |s| = 1, 2), unary |s|: with any |s| = 2
    # unary costs strictly more, and bit-serial equals graded for K = 2
    assert rows["unary"]["sops_per_token"] > rows["bitserial"]["sops_per_token"] == rows["graded"]["sops_per_token"]
    assert main(["sweep", str(src), "--encodings", "morse"]) == 2
