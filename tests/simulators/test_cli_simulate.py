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


def test_simulate_report_must_be_markdown(tmp_path, capsys):
    src = tmp_path / "tiny.nir"
    nir.write(str(src), make_nir_chain(vocab=95))
    main(["compile", str(src), "-o", str(tmp_path / "art")])
    capsys.readouterr()
    assert main(["simulate", str(tmp_path / "art"), "--tokens", "4", "--report", str(tmp_path / "r.html")]) == 2
    assert "writes Markdown only" in capsys.readouterr().err
