"""Case generators: (kind, seed) → a mutated input in its own scratch folder and the command that reads it.

Kinds: nir, artifact (artifact_cases.py), checkpoint (checkpoint_cases.py), target, profile, numbers. A generator
only builds files; `harness.run_case` runs and judges. `run_kind` runs many and cleans up the passing ones (a
hybrid artifact copy is 1 MB; thousands of them would fill the disk).
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

from .harness import Case, Result, run_case
from .mutators import mutate_nir, mutate_toml
from .seeds import Seeds


def case_dirs(root: Path, kind: str, seed: int) -> tuple[Path, Path]:
    """The case's scratch folder and, next to it, an `outside` folder with a victim file nothing may touch."""
    scratch, outside = root / f"{kind}-{seed}", root / f"{kind}-{seed}.outside"
    for path in (scratch, outside, scratch.with_name(scratch.name + ".tmp")):
        shutil.rmtree(path, ignore_errors=True)
    scratch.mkdir(parents=True)
    outside.mkdir()
    (outside / "victim.txt").write_text("must stay as it is\n")
    return scratch, outside


def copy_in(src: Path, scratch: Path, name: str | None = None) -> Path:
    dst = scratch / (name or src.name)
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        shutil.copy(src, dst)
    return dst


def nir_case(seed: int, seeds: Seeds, root: Path) -> Case:
    rng = random.Random(f"nir:{seed}")
    scratch, outside = case_dirs(root, "nir", seed)
    which = rng.choice(sorted(seeds.nir_files))
    src = copy_in(seeds.nir_files[which], scratch)
    note, must_fail = mutate_nir(rng, src)
    note = f"{which}.nir {note}"
    if rng.random() < 0.5:
        out = scratch / "out"
        return Case("nir", seed, ["compile", str(src), "-o", str(out), "--calibrate", "0"], scratch, outside,
                    output=out, note=note, expect_error=must_fail)
    return Case("nir", seed, ["inspect", str(src)], scratch, outside, note=note)  # may show what it cannot compile


def _escape_name(outside: Path, folder: Path, stock: Path) -> str:
    """A target/profile *name* that walks out of the stock folder to a valid copy in `outside`."""
    shutil.copy(stock, outside / "victim.toml")
    return os.path.relpath(outside / "victim", folder)


def target_case(seed: int, seeds: Seeds, root: Path) -> Case:
    from spikestack.compiler.targets import TARGET_DIR

    rng = random.Random(f"target:{seed}")
    scratch, outside = case_dirs(root, "target", seed)
    src = copy_in(seeds.nir_files[rng.choice(sorted(seeds.nir_files))], scratch)
    out = scratch / "out"
    if rng.random() < 0.1:
        name = _escape_name(outside, TARGET_DIR, seeds.target)
        return Case("target", seed, ["compile", str(src), "--target", name, "-o", str(out), "--calibrate", "0"],
                    scratch, outside, output=out, note=f"target name {name!r} outside the targets folder",
                    expect_error=True)
    target = copy_in(seeds.target, scratch, "target.toml")
    names = ["../../etc/passwd", "/etc/passwd", "", "loihi1", "a/b", "../" * 8 + "tmp", "x" * 300, "profile\x00"]
    note, must_fail = mutate_toml(rng, target, names)
    return Case("target", seed, ["compile", str(src), "--target", str(target), "-o", str(out), "--calibrate", "0"],
                scratch, outside, output=out, note=note, expect_error=must_fail)


def profile_case(seed: int, seeds: Seeds, root: Path) -> Case:
    from spikestack.simulators.profiles import PROFILE_DIR

    rng = random.Random(f"profile:{seed}")
    scratch, outside = case_dirs(root, "profile", seed)
    which = rng.choice(sorted(seeds.artifacts))
    art = copy_in(seeds.artifacts[which], scratch, "art")
    if rng.random() < 0.1:
        name = _escape_name(outside, PROFILE_DIR, seeds.profile)
        return Case("profile", seed, ["simulate", str(art), "--profile", name, "--tokens", "2", "--json"], scratch,
                    outside, note=f"{which}: profile name {name!r} outside the profiles folder", expect_error=True,
                    json_stdout=True)
    profile = copy_in(seeds.profile, scratch, "profile.toml")
    names = ["../../etc/passwd", "/etc/passwd", "", "loihi2", "a/b", "x" * 300]
    note, must_fail = mutate_toml(rng, profile, names)
    return Case("profile", seed, ["simulate", str(art), "--profile", str(profile), "--tokens", "2", "--json"],
                scratch, outside, note=f"{which}: {note}", json_stdout=True, expect_error=must_fail)


# ---- CLI numbers ------------------------------------------------------------------------------------------------
# (name, seed input, argv builder(input, output, value), output file name or None, prints JSON, CI selection)
# Work amounts (train --steps, generate --tokens, the demo) get no valid value above what a case can do in 20 s: a
# long job is a legitimate request there, not an input error. Every other number must be checked or bounded
# (--tokens of run/simulate/verify by the validation text).
NUMBERS_CI = ["0", "-1", "99999999999999999999", "1e300", "nan", "inf", "abc", ""]
NUMBERS_MORE = ["1e18", "0.5", "-0", " 7", "1_000", "+5", "0x10", "\u0663", "2147483648", "9" * 5000, "-inf", "1"]
NUMBER_COMMANDS: list[tuple[str, str | None, Callable[[str, str, str], list[str]], str | None, bool, bool]] = [
    ("compile --dt", "foreign_nir",
     lambda i, o, v: ["compile", i, "--dt", v, "-o", o, "--calibrate", "0", "--steps", "8"], "out", False, True),
    ("compile --steps", "foreign_nir", lambda i, o, v: ["compile", i, "--steps", v, "-o", o, "--calibrate", "0"],
     "out", False, True),
    ("compile --calibrate (nir)", "mlp_nir", lambda i, o, v: ["compile", i, "--calibrate", v, "-o", o], "out", False,
     True),
    ("compile --calibrate (pt)", "checkpoint", lambda i, o, v: ["compile", i, "--calibrate", v, "-o", o], "out",
     False, True),
    *[(f"run --tokens ({a})", f"{a}_art", lambda i, o, v: ["run", i, "--tokens", v], None, True, True)
      for a in ("chain", "foreign", "hybrid")],
    *[(f"simulate --tokens ({a})", f"{a}_art", lambda i, o, v: ["simulate", i, "--tokens", v, "--json"], None, True,
       True) for a in ("chain", "foreign", "hybrid")],
    ("verify --tokens", "chain_art", lambda i, o, v: ["verify", i, "--backends", "reference,torch", "--tokens", v],
     None, False, True),
    *[(f"generate --tokens ({a})", s, lambda i, o, v: ["generate", i, "--tokens", v], None, False, True)
      for a, s in (("pt", "checkpoint"), ("chain", "chain_art"), ("hybrid", "hybrid_art"))],
    ("sweep --tokens", "mlp_nir", lambda i, o, v: ["sweep", i, "--tokens", v, "--workers", "1"], None, False, True),
    ("sweep --workers", "mlp_nir", lambda i, o, v: ["sweep", i, "--workers", v, "--tokens", "2"], None, False, True),
    ("train --seed", None, lambda i, o, v: ["train", "bispike-mlp", "--steps", "0", "--seed", v, "-o", o],
     "out.pt", True, True),
    ("train --steps", None, lambda i, o, v: ["train", "bispike-mlp", "--steps", v, "-o", o], "out.pt", True, True),
    # the demo runs Lava: minutes per valid value, so only under the slow marker
    ("demo --tokens", None, lambda i, o, v: ["demo", "--tokens", v, "--verify-tokens", "2", "--out", o], "demo",
     False, False),
    ("demo --verify-tokens", None, lambda i, o, v: ["demo", "--tokens", "8", "--verify-tokens", v, "--out", o],
     "demo", False, False),
]
NUMBER_VALUES = NUMBERS_CI + NUMBERS_MORE
NOT_A_NUMBER = {"abc", "", "nan", "inf", "-inf", "0x10"}  # no option of any command may accept these
# name → (largest valid value a case can afford, whether a huge value is a legitimate long job there)
WORK_AMOUNTS = {"train --steps": (50, True), "generate --tokens (pt)": (50, True),
                "generate --tokens (chain)": (50, True), "generate --tokens (hybrid)": (50, True),
                "demo --tokens": (0, False), "demo --verify-tokens": (0, False)}
HUGE = {"99999999999999999999", "1e18", "2147483648", "9" * 5000}


def _as_int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _legit_long_job(name: str, value: str) -> bool:
    """A valid work amount above what a 20 s case can do (the demo runs Lava even for 1 token)."""
    if name not in WORK_AMOUNTS:
        return False
    affordable, huge_is_legit = WORK_AMOUNTS[name]
    if value in HUGE:
        return huge_is_legit
    n = _as_int(value)
    return n is not None and n > affordable


def number_seeds(ci: bool) -> list[int]:
    """Case seeds of the CLI-number grid: CI takes the CI commands x CI values, slow every pair."""
    out = []
    for c, (name, _, _, _, _, in_ci) in enumerate(NUMBER_COMMANDS):
        for v, value in enumerate(NUMBER_VALUES):
            if _legit_long_job(name, value):
                continue
            if not ci or (in_ci and value in NUMBERS_CI):
                out.append(c * len(NUMBER_VALUES) + v)
    return out


def number_case(seed: int, seeds: Seeds, root: Path) -> Case:
    name, source, argv, out_name, prints_json, _ = NUMBER_COMMANDS[seed // len(NUMBER_VALUES)]
    value = NUMBER_VALUES[seed % len(NUMBER_VALUES)]
    scratch, outside = case_dirs(root, "numbers", seed)
    src = copy_in(getattr(seeds, source), scratch) if source else scratch / "-"
    out = scratch / out_name if out_name else scratch / "-"
    return Case("numbers", seed, argv(str(src), str(out), value), scratch, outside,
                output=out if out_name else None, note=f"{name} = {value[:40]!r}", json_stdout=prints_json,
                expect_error=value in NOT_A_NUMBER)


def make_case(kind: str, seed: int, seeds: Seeds, root: Path) -> Case:
    from .artifact_cases import artifact_case
    from .checkpoint_cases import checkpoint_case

    makers = {"nir": nir_case, "artifact": artifact_case, "checkpoint": checkpoint_case, "target": target_case,
              "profile": profile_case, "numbers": number_case}
    return makers[kind](seed, seeds, root)


def cleanup(case: Case) -> None:
    for path in (case.scratch, case.outside, case.scratch.with_name(case.scratch.name + ".tmp")):
        shutil.rmtree(path, ignore_errors=True)


def run_kind(kind: str, case_seeds: Iterable[int], seeds: Seeds, root: Path) -> list[Result]:
    """Every case of `kind`; passing cases leave nothing behind, failing ones keep their folders for a look."""
    results = []
    for seed in case_seeds:
        case = make_case(kind, seed, seeds, root)
        result = run_case(case)
        if not result.problems:
            cleanup(case)
        results.append(result)
    return results
