"""The valid inputs every fuzz case starts from, built once: NIR files, artifacts, a checkpoint, a target and a
profile. Built through the CLI itself, so a seed is exactly what a user would have."""

from __future__ import annotations

import contextlib
import io
import shutil
from dataclasses import dataclass
from pathlib import Path

import nir
import numpy as np

from .harness import REPO

CHECKPOINTS = REPO / "models" / "checkpoints"


@dataclass(frozen=True)
class Seeds:
    folder: Path
    foreign_nir: Path  # Input → Affine → LIF → Affine → LIF → Output, written with stock nir
    mlp_nir: Path  # `spikestack export bispike-mlp.pt`
    chain_art: Path  # `compile mlp.nir --calibrate 0`
    foreign_art: Path  # `compile foreign.nir --steps 8 --calibrate 0`
    hybrid_art: Path  # `compile spikellm-char-tiny.pt --calibrate 0`
    checkpoint: Path  # models/checkpoints/bispike-mlp.pt (copied)
    target: Path  # compiler/targets/loihi2.toml (copied)
    profile: Path  # simulators/profiles/loihi2_assumed.toml (copied)

    @property
    def artifacts(self) -> dict[str, Path]:
        return {"chain": self.chain_art, "foreign": self.foreign_art, "hybrid": self.hybrid_art}

    @property
    def nir_files(self) -> dict[str, Path]:
        return {"foreign": self.foreign_nir, "mlp": self.mlp_nir}


def foreign_graph(seed: int = 0) -> nir.NIRGraph:
    rng = np.random.default_rng(seed)

    def lif(n: int) -> nir.LIF:
        return nir.LIF(tau=np.full(n, 2e-3), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.ones(n))

    return nir.NIRGraph(
        nodes={"input": nir.Input(input_type={"input": np.array([6])}),
               "fc1": nir.Affine(weight=rng.normal(size=(8, 6)).astype(np.float32), bias=np.zeros(8, np.float32)),
               "lif1": lif(8),
               "fc2": nir.Affine(weight=rng.normal(size=(4, 8)).astype(np.float32), bias=np.zeros(4, np.float32)),
               "lif2": lif(4),
               "output": nir.Output(output_type={"output": np.array([4])})},
        edges=[("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"), ("lif2", "output")])


def _cli(*argv: str) -> None:
    from spikestack.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    if rc != 0:
        raise RuntimeError(f"seed command {' '.join(argv)} failed ({rc}): {err.getvalue()}")


def seed_paths(folder: Path) -> Seeds:
    return Seeds(folder=folder, foreign_nir=folder / "foreign.nir", mlp_nir=folder / "mlp.nir",
                 chain_art=folder / "art-chain", foreign_art=folder / "art-foreign",
                 hybrid_art=folder / "art-hybrid", checkpoint=folder / "bispike-mlp.pt",
                 target=folder / "loihi2.toml", profile=folder / "loihi2_assumed.toml")


def build_seeds(folder: Path) -> Seeds:
    folder.mkdir(parents=True, exist_ok=True)
    s = seed_paths(folder)
    shutil.copy(CHECKPOINTS / "bispike-mlp.pt", s.checkpoint)
    shutil.copy(REPO / "compiler" / "targets" / "loihi2.toml", s.target)
    shutil.copy(REPO / "simulators" / "profiles" / "loihi2_assumed.toml", s.profile)
    nir.write(str(s.foreign_nir), foreign_graph())
    _cli("export", str(s.checkpoint), "-o", str(s.mlp_nir))
    _cli("compile", str(s.mlp_nir), "-o", str(s.chain_art), "--calibrate", "0")
    _cli("compile", str(s.foreign_nir), "-o", str(s.foreign_art), "--calibrate", "0", "--steps", "8")
    _cli("compile", str(CHECKPOINTS / "spikellm-char-tiny.pt"), "-o", str(s.hybrid_art), "--calibrate", "0")
    return s
