"""Runs one fuzz case in-process through `spikestack.cli.main` and says everything that went wrong with it.

Why in-process: a fresh `spikestack` process costs ~2 s of torch import, a case ~0.1 s. The price is that the
harness must isolate what a process would: cwd, tempfile's folder, stdout/stderr (Python and file-descriptor
level), warnings, the address space (a huge allocation must end as MemoryError, not as the OOM killer) and time
(SIGALRM raises `CaseTimeout` in the main thread; a faulthandler watchdog kills the run if even that cannot fire).

The contract each case is held to (issue #11): exit 0, or exit 2 with exactly one stderr line starting
`spikestack: error: `; no traceback anywhere; no hang; nothing written on failure (the output path absent, the
scratch folder as before); nothing outside the scratch folder touched; marker files of malicious payloads never
created. Cases whose input is known-bad (a hash that cannot match, a file outside the artifact) must fail.
"""

from __future__ import annotations

import contextlib
import faulthandler
import io
import json
import os
import resource
import signal
import tempfile
import time
import traceback
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

CASE_TIMEOUT_S = 20.0
WATCHDOG_S = 90.0  # SIGALRM cannot interrupt a C loop that never returns; then the whole run dies loudly
ADDRESS_HEADROOM_BYTES = 4 << 30  # above the process's current size; a bigger allocation raises MemoryError
ERROR_PREFIX = "spikestack: error: "
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Case:
    """One mutated input and one command. `kind:seed` reproduces it (tests/fuzz/replay.py)."""

    kind: str
    seed: int
    argv: list[str]
    scratch: Path  # the case's own folder: inputs live here, outputs go here
    outside: Path  # a folder next to it, with victim/marker files nothing may touch
    output: Path | None = None  # what the command may create on success
    note: str = ""  # which mutation made the input
    expect_error: bool = False  # the input cannot be valid (broken hash, escape from the artifact): exit 2 only
    json_stdout: bool = False  # on success stdout must be strict JSON (no NaN/Infinity)
    forbidden: tuple[Path, ...] = ()  # marker paths a malicious payload would create

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.seed}"


@dataclass
class Result:
    case: Case
    rc: int | None
    stdout: str
    stderr: str
    wall_s: float
    problems: list[str] = field(default_factory=list)
    origin: str = ""  # file:line where an escaping exception or a hang was, innermost frame in the repo

    def summary(self) -> str:
        tail = [line for line in self.stderr.strip().splitlines() if line.strip()][-3:]
        return (f"[{self.case.id}] {'; '.join(self.problems)}\n  argv: {' '.join(self.case.argv)}\n"
                f"  mutation: {self.case.note}\n  exit: {self.rc}  origin: {self.origin or '-'}\n"
                + "".join(f"  stderr| {line[:300]}\n" for line in tail))


class CaseTimeout(BaseException):
    """A BaseException, so that product code's `except Exception` cannot swallow the timeout."""


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry under `folder` (symlinks not followed, FIFOs not opened) with what would show an edit."""
    out: dict[str, tuple] = {}
    if not folder.exists():
        return out
    for root, dirs, files in os.walk(folder, followlinks=False):
        for name in dirs + files:
            path = Path(root) / name
            st = path.lstat()
            target = os.readlink(path) if path.is_symlink() else ""
            out[str(path.relative_to(folder))] = (st.st_mode, st.st_size, st.st_mtime_ns, target)
    return out


def _diff(before: dict[str, tuple], after: dict[str, tuple], ignore: str | None) -> list[str]:
    def kept(rel: str) -> bool:
        return ignore is None or not (rel == ignore or rel.startswith(ignore + os.sep))

    changed = [k for k in sorted(set(before) | set(after)) if kept(k) and before.get(k) != after.get(k)]
    return [("+" if k not in before else "-" if k not in after else "~") + k for k in changed]


def _repo_frame(tb_frames: list[traceback.FrameSummary]) -> str:
    """The innermost frame in spikestack's own code (not tests, not site-packages), else the innermost frame."""
    mine = [f for f in tb_frames if f.filename.startswith(str(REPO)) and "/tests/" not in f.filename
            and "/.venv/" not in f.filename]
    frame = (mine or tb_frames or [None])[-1]
    if frame is None:
        return ""
    name = frame.filename[len(str(REPO)) + 1:] if frame.filename.startswith(str(REPO)) else frame.filename
    return f"{name}:{frame.lineno} ({frame.name})"


@contextlib.contextmanager
def _fd_capture(fd: int) -> Iterator[io.BytesIO]:
    """What C code (HDF5, onnxruntime, torch) writes straight to file descriptor `fd`."""
    sink = io.BytesIO()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), fd)
        try:
            yield sink
        finally:
            os.dup2(saved, fd)
            os.close(saved)
            tmp.seek(0)
            sink.write(tmp.read())


@contextlib.contextmanager
def _address_limit() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as f:
        size = int(f.read().split()[0]) * resource.getpagesize()
    limit = size + ADDRESS_HEADROOM_BYTES
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@contextlib.contextmanager
def _deadline(seconds: float, where: list[str], watchdog_log: Path) -> Iterator[None]:
    """SIGALRM after `seconds`; if the main thread is stuck in C code even so, the watchdog writes every thread's
    stack to `watchdog_log` (pytest's capture would lose it) and ends the process."""

    def on_alarm(signum: int, frame) -> None:
        where.append(_repo_frame(traceback.extract_stack(frame)))
        raise CaseTimeout(f"no result after {seconds:.0f} s")

    old_handler = signal.signal(signal.SIGALRM, on_alarm)
    old_timer = signal.setitimer(signal.ITIMER_REAL, seconds)
    log = open(watchdog_log, "a")  # noqa: SIM115 - open for exactly this block
    faulthandler.dump_traceback_later(WATCHDOG_S, exit=True, file=log)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        faulthandler.cancel_dump_traceback_later()
        log.close()
        signal.signal(signal.SIGALRM, old_handler)
        if old_timer[0] > 0:  # someone else's alarm (pytest-timeout): give it back what is left
            signal.setitimer(signal.ITIMER_REAL, max(old_timer[0] - seconds, 0.001), old_timer[1])


def _fresh_process_filters() -> None:
    """The warning filters of a plain `python` process (pytest shows DeprecationWarnings; a user never sees those
    raised inside libraries). Changing the filters also resets every module's once-per-location memory, so each
    case shows what a fresh process would, whatever ran before."""
    warnings.resetwarnings()
    warnings.simplefilter("default")
    for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
        warnings.filterwarnings("ignore", category=category)
    warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")


def _strict_json(text: str) -> str | None:
    def reject(name: str) -> None:
        raise ValueError(f"non-standard JSON constant {name}")

    try:
        json.loads(text, parse_constant=reject)
    except ValueError as exc:
        return str(exc)[:120]
    return None


def run_case(case: Case, timeout_s: float = CASE_TIMEOUT_S) -> Result:
    """Run `case` and return what happened, with every broken promise in `problems`."""
    from spikestack.cli import main

    case_tmp = case.scratch.with_name(case.scratch.name + ".tmp")
    case_tmp.mkdir()
    before, before_outside = snapshot(case.scratch), snapshot(case.outside)
    out, err, where, rc, escaped = io.StringIO(), io.StringIO(), [], None, None
    cwd, old_tempdir = os.getcwd(), tempfile.tempdir
    start = time.perf_counter()
    with _fd_capture(1) as fd_out, _fd_capture(2) as fd_err, warnings.catch_warnings(record=True) as caught:
        _fresh_process_filters()
        os.chdir(case.scratch)
        tempfile.tempdir = str(case_tmp)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), _address_limit(), \
                    _deadline(timeout_s, where, case.scratch.parent / "watchdog.txt"):
                try:
                    rc = main(list(case.argv))
                except SystemExit as exc:  # argparse
                    rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else exc.code)
        except CaseTimeout:
            escaped = "hang"
        except BaseException as exc:  # noqa: BLE001 - every escaping exception is a finding
            escaped = f"exception {type(exc).__name__}: {str(exc)[:200]}"
            where.append(_repo_frame(traceback.extract_tb(exc.__traceback__)))
            err.write(traceback.format_exc())
        finally:
            os.chdir(cwd)
            tempfile.tempdir = old_tempdir
    wall = time.perf_counter() - start
    stderr = err.getvalue() + "".join(warnings.formatwarning(w.message, w.category, w.filename, w.lineno)
                                      for w in caught)
    stderr += fd_err.getvalue().decode(errors="replace")
    stdout = out.getvalue() + fd_out.getvalue().decode(errors="replace")
    res = Result(case, rc, stdout, stderr, wall, origin=where[0] if where else "")
    res.problems = _judge(case, res, escaped, before, before_outside, case_tmp)
    return res


def _judge(case: Case, res: Result, escaped: str | None, before: dict, before_outside: dict,
           case_tmp: Path) -> list[str]:
    problems = [escaped] if escaped else []
    if not escaped and res.rc not in (0, 2):
        problems.append(f"exit code {res.rc!r}")
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    if res.rc == 2 and not escaped and (len(lines) != 1 or not lines[0].startswith(ERROR_PREFIX)):
        first = lines[0][:60] if lines else ""
        problems.append(f"stderr not one '{ERROR_PREFIX.strip()}' line ({len(lines)} lines, first {first!r})")
    if not escaped and "Traceback (most recent call last)" in res.stdout + res.stderr:
        problems.append("traceback printed")
    if case.expect_error and res.rc == 0 and not escaped:
        problems.append("accepted an input that must be rejected")
    if res.rc == 0 and case.json_stdout and not escaped and (why := _strict_json(res.stdout)):
        problems.append(f"stdout not strict JSON ({why})")
    failed = res.rc != 0 or escaped
    rel_out = None
    if case.output is not None:
        rel_out = str(case.output.relative_to(case.scratch))
        if failed and os.path.lexists(case.output):
            problems.append(f"output {rel_out} written on failure")
        if not failed and not os.path.lexists(case.output):
            problems.append(f"exit 0 without output {rel_out}")
    if changed := _diff(before, snapshot(case.scratch), rel_out):
        problems.append(f"scratch folder changed: {' '.join(changed[:4])}")
    if changed := _diff(before_outside, snapshot(case.outside), None):
        problems.append(f"file outside the scratch folder touched: {' '.join(changed[:4])}")
    # torch's per-user compile cache (torchinductor_<user>) appears in the first case of a process that exports
    # through torch; it is torch's, shared by design, and would make results depend on the order of cases
    if leftovers := sorted(p.name for p in case_tmp.iterdir() if not p.name.startswith("torchinductor_")):
        problems.append(f"temporary files left: {' '.join(leftovers[:4])}")
    problems += [f"malicious payload ran: {p.name} created" for p in case.forbidden if os.path.lexists(p)]
    return problems


def group_key(res: Result) -> str:
    """Failures of one cause share the kind of problem and the place in the code."""
    kinds = sorted({p.split(":")[0].split(" (")[0] for p in res.problems})
    return f"{' + '.join(kinds)} @ {res.origin or '-'}"


def report(kind: str, results: list[Result], out_file: Path | None = None) -> str:
    """A readable summary of the failures: groups by cause (count, up to 2 examples each)."""
    failures = [r for r in results if r.problems]
    groups: dict[str, list[Result]] = {}
    for r in failures:
        groups.setdefault(group_key(r), []).append(r)
    wall = sum(r.wall_s for r in results)
    lines = [f"{kind}: {len(failures)} of {len(results)} cases failed ({wall:.1f} s in cases); "
             f"{len(groups)} causes. Reproduce one: python -m tests.fuzz.replay KIND SEED"]
    for key, members in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        lines.append(f"\n== {len(members)} x {key}  (cases: {' '.join(m.case.id for m in members[:12])}"
                     f"{' …' if len(members) > 12 else ''})")
        lines += [m.summary() for m in members[:2]]
    if out_file is not None:
        lines.append(f"\nall failures as JSON: {out_file}")
    return "\n".join(lines)


def write_results(results: list[Result], out_file: Path) -> None:
    """Every case (id, argv, mutation, exit, problems, stderr tail, time): what a fuzz run covered, for a look."""
    out_file.write_text(json.dumps([{"id": r.case.id, "argv": r.case.argv, "note": r.case.note, "rc": r.rc,
                                     "problems": r.problems, "origin": r.origin, "stderr": r.stderr[-2000:],
                                     "wall_s": round(r.wall_s, 3)} for r in results], indent=1))
