"""`sweep --text FILE` (issue #13): the user's text calibrates and drives every compiled point; a text that is not
UTF-8 is one line before any point compiles."""

from __future__ import annotations

import json
from pathlib import Path

from spikestack.cli import main

ROOT = Path(__file__).resolve().parents[1]
CKPT = ROOT / "models" / "checkpoints" / "spikellm-char-tiny.pt"


def _sweep(tmp_path: Path, capsys, *extra: str) -> list[dict]:
    out = tmp_path / f"table{len(list(tmp_path.glob('table*')))}.json"
    assert main(["sweep", str(CKPT), "--tokens", "16", "--workers", "1", "-o", str(out), *extra]) == 0
    capsys.readouterr()
    return json.loads(out.read_text())


def test_sweep_runs_on_the_users_text(tmp_path, capsys):
    text = tmp_path / "mine.txt"
    text.write_text("aaaa bbbb aaaa bbbb " * 40, encoding="utf-8")
    default, mine = _sweep(tmp_path, capsys), _sweep(tmp_path, capsys, "--text", str(text))
    assert len(default) == len(mine) == 1 and default[0]["error"] == mine[0]["error"] == ""
    assert default[0]["cores"] == mine[0]["cores"]  # same program shape …
    assert default[0]["sops_per_token"] != mine[0]["sops_per_token"]  # … driven by other characters


def test_sweep_refuses_a_latin1_text_in_one_line(tmp_path, capsys):
    text = tmp_path / "latin1.txt"
    text.write_bytes("caf\xe9 ".encode("latin-1") * 10)
    out = tmp_path / "table.json"
    assert main(["sweep", str(CKPT), "--tokens", "16", "--text", str(text), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "latin1.txt" in err[0] and not out.exists()
