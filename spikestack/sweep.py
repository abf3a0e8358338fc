"""`spikestack sweep`: one source network × targets × profiles → one table (issue 7).

Targets change the compiled program (partition, placement, payload widths), so each target is compiled from the
source (a NIR file or a checkpoint) through the public API (`spikestack.api.compile`, chain and language models
alike); the program runs once on the reference executor and every profile prices the same trace. A target the
network does not fit yields rows whose `error` holds the TargetLimitError message, so one bad target does not hide
the others.

Each target's work is a pure, picklable function of (nir path, target, encoding, profiles, tokens), run in a
`ProcessPoolExecutor` (`workers`), or one Dask task per point on a cluster (`scheduler`, spikestack/distributed.py):
there the NIR file travels as bytes and targets and profiles as loaded objects, so workers on other machines need
neither the file nor a .toml path. Rows come back in the order of the points either way, so the table is the
same. It lives beside the API, not in simulators/, because it compiles and runs programs: orchestration, not
simulation.
"""

from __future__ import annotations

import csv
import tempfile
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

from spikestack.errors import SpikestackError, TargetLimitError
from spikestack.outputs import atomic_write, strict_json, write_text
from spikestack.progress import progress

MAX_WORKERS = 2  # the shared machine has 2 CPU cores (brief); more workers only thrash
COLUMNS = ("target", "encoding", "profile", "cores", "tiles", "sops_per_token", "energy_per_token_j",
           "latency_s_per_step", "tokens_per_s", "neurobench_effective_acs_per_token", "paper_sops_per_token",
           "ann_energy_per_token_j_fp32", "error")


def _row(target: str, encoding: str, profile: str, r: dict | None, error: str = "") -> dict:
    if r is None:
        return {c: None for c in COLUMNS} | {"target": target, "encoding": encoding, "profile": profile,
                                             "error": error}
    conv = r["counting_conventions"]
    return {"target": target, "encoding": encoding, "profile": profile, "cores": r["cores"], "tiles": r["tiles"],
            "sops_per_token": r["sops_per_token"], "energy_per_token_j": r["energy_per_token_j"],
            "latency_s_per_step": r["latency_s_per_step"], "tokens_per_s": r["tokens_per_s"],
            "neurobench_effective_acs_per_token": conv["neurobench"]["effective_acs_per_token"],
            "paper_sops_per_token": conv["paper"]["sops_per_token"],
            "ann_energy_per_token_j_fp32": conv["ann_twin"]["energy_per_token_j"].get("horowitz45_fp32"),
            "error": ""}


def sweep_target(nir_path: str, target: str, encoding: str, profiles: tuple[str, ...], tokens: int, *,
                 target_spec=None, profile_specs: tuple | None = None, text: str | None = None) -> list[dict]:
    """Rows for one (target, encoding): compile, run once, price under every profile (or error rows if it does
    not fit). encoding "auto" lets the compiler's cost model choose per edge; the row names what it chose (a
    forced encoding applies to a language model's GIF and relay layers). `target_spec`/`profile_specs`: the
    loaded Target and Profiles to use instead of reading the names (a Dask worker elsewhere). `text`: the user's
    UTF-8 file that calibrates and drives the run (language models), as `compile --text` and `run --text` do."""
    from spikestack import api

    try:
        program = api.compile(nir_path, target_spec or target, encoding=None if encoding == "auto" else encoding,
                              text=text)
    except TargetLimitError as exc:
        return [_row(target, encoding, p, None, str(exc)) for p in profiles]
    if encoding == "auto":
        chosen = (program.report.get("encodings", {}).values() if api.is_hybrid(program)
                  else (p.encoding for p in program.projections))
        encoding = "auto:" + "+".join(sorted(set(chosen)))
    trace = api.run(program, tokens=tokens, text=text).trace
    specs = profile_specs or profiles
    return [_row(target, encoding, p, api.simulate(program, trace, spec).data)
            for p, spec in zip(profiles, specs, strict=True)]


def sweep_point(nir_bytes: bytes, suffix: str, target: str, encoding: str, profiles: tuple[str, ...], tokens: int,
                target_spec, profile_specs: tuple, text_bytes: bytes | None = None) -> list[dict]:
    """`sweep_target` on a Dask worker: the NIR file (and the user's text) written from their bytes into the
    worker's own temp folder, so a worker on another machine needs neither file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"source{suffix}"
        path.write_bytes(nir_bytes)
        text = None
        if text_bytes is not None:
            text = str(Path(tmp) / "text.txt")
            Path(text).write_bytes(text_bytes)
        return sweep_target(str(path), target, encoding, profiles, tokens, target_spec=target_spec,
                            profile_specs=profile_specs, text=text)


def nir_source(source: Path, tmp: Path) -> Path:
    """A NIR file for the source: itself, or the checkpoint exported once (not once per target)."""
    if not source.exists():
        raise SpikestackError(f"{source}: file not found")
    if source.suffix not in (".pt", ".pth"):
        return source
    from spikestack.models.nir.export import export_any

    out = tmp / f"{source.stem}.nir"
    export_any(source, out)
    return out


def sweep(source: Path, targets: list[str], profiles: list[str], tokens: int, workers: int = MAX_WORKERS,
          encodings: list[str] | None = None, scheduler: str | None = None, text: str | Path | None = None
          ) -> list[dict]:
    """The cross product targets × encodings × profiles as rows; each (target, encoding) compiles and runs once,
    in parallel processes (at most MAX_WORKERS), or as one task each on the Dask cluster at `scheduler`.
    Encodings: "auto" (cost model) or compiler/encodings.py names."""
    from spikestack.compiler.encodings import ENCODINGS
    from spikestack.compiler.targets import load_target
    from spikestack.simulators.profiles import load_profile

    encodings = encodings or ["auto"]
    for e in encodings:
        if e != "auto" and e not in ENCODINGS:
            raise SpikestackError(f"unknown encoding {e!r}; choose from auto, {', '.join(ENCODINGS)}")
    target_specs = {t: load_target(t) for t in targets}  # fail fast on a misspelt target or profile, before any
    profile_specs = tuple(load_profile(p) for p in profiles)  # worker starts
    if text is not None:
        from spikestack.text import read_text

        read_text(text)  # an empty, binary or non-UTF-8 file fails here, once, with one line
        text = str(text)
    with tempfile.TemporaryDirectory() as tmp:
        path = str(nir_source(Path(source), Path(tmp)))
        if scheduler is not None:
            from spikestack.distributed import map_ordered

            data, suffix = Path(path).read_bytes(), Path(path).suffix
            text_bytes = None if text is None else Path(text).read_bytes()
            points = [(data, suffix, t, e, tuple(profiles), tokens, target_specs[t], profile_specs, text_bytes)
                      for t in targets for e in encodings]
            results = map_ordered(sweep_point, points, scheduler=scheduler, what=f"sweep of {len(points)} points")
            return [row for rows in results for row in rows]
        args = [(path, t, e, tuple(profiles), tokens) for t in targets for e in encodings]
        run = partial(sweep_target, text=text)
        n = max(1, min(workers, MAX_WORKERS, len(args)))
        if n == 1:
            results = [run(*a) for a in progress(args, "sweep", total=len(args))]
        else:
            with ProcessPoolExecutor(max_workers=n) as pool:
                results = list(progress(pool.map(run, *zip(*args, strict=True)), "sweep", total=len(args)))
    return [row for rows in results for row in rows]


def write_table(rows: list[dict], out: Path) -> Path:
    """CSV or JSON by the file's suffix, written atomically; JSON is strict (a NaN is refused by key)."""
    out = Path(out)
    if out.suffix not in (".json", ".csv"):
        raise SpikestackError(f"{out}: sweep output must end in .csv or .json")
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".json":
        return write_text(out, strict_json(rows, f"{out}"))

    def write_csv(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=COLUMNS)
            w.writeheader()
            w.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)

    return atomic_write(out, write_csv)


def format_table(rows: list[dict]) -> str:
    """A fixed-width text table for the terminal: every swept dimension (target, encoding, profile) and the whole
    error message (a cut message hides the limit and the value that broke it), on the row's last column."""
    shown = ("target", "encoding", "profile", "cores", "tiles", "sops_per_token", "energy_per_token_j",
             "tokens_per_s", "error")

    def cell(v: object) -> str:
        if v is None:
            return "-"
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    table = [list(shown)] + [[cell(r[c]) for c in shown] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(shown) - 1)] + [0]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table)
