"""The artifact format: the one module that writes and reads compiled programs (both backends and the
simulator use `load` only).

Layout of an artifact directory (version 5):

    manifest.json        format, version, kind, target (the name) and target_spec (the whole target compiled for),
                         …, cores, report, and for every array and host file its path and sha256 (arrays also
                         dtype and shape); `content_sha256` hashes all of the above. A core that holds one input
                         chunk of a split fan-in has in_lo and in_hi (optional: absent means all inputs, so
                         artifacts without split cores are what they were and load unchanged; no version bump)
    arrays/<name>.npy    one array per file (np.save is deterministic; npz embeds timestamps)
    host/<name>.onnx     the host programs, run with onnxruntime

Two kinds (docs/artifact.md): ``chain`` (`compiler.ir.Program`: the spine and foreign LIF chains; populations,
projections, host/encode.onnx and host/decode.onnx) and ``hybrid`` (`compiler.hybrid.ir.HybridProgram`: the LM
families; chip layers with their projections, host/stageNNN.onnx per schedule stage, host states).

Same program → byte-identical directory (sorted JSON keys, no timestamps). `save` writes into a temporary sibling
directory and renames it into place, so a failure never leaves a half-written artifact, and replaces only a complete
earlier artifact (`artifact_output.py`: stale temporary folders, the lock, racing compiles). `load` treats the folder
as untrusted: confined, bounded file reads (`artifact_files.py`), the manifest's schema (`artifact_schema.py`),
relations between fields and the verifier (`artifact_check.py`); ArtifactError names the file and the field.
Arrays of 1 MiB or more come back memory-mapped read-only after their sha256 is streamed (`read_npy`), and the
checks scan them piece by piece, so loading a 7B artifact holds no weights in memory. The folder must not be
edited in place while its program lives; `save` over it is safe (it renames, and a mapped file outlives its name).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from spikestack.errors import ArtifactError

from .artifact_check import check_chain, check_hybrid, check_report, check_target, check_values, run_verifier
from .artifact_files import (
    MANIFEST_MAX_BYTES,
    ONNX_MAX_BYTES,
    ArtifactDir,
    check_onnx,
    parse_manifest,
    plain_relative,
    release_pages,
)
from .artifact_output import conflict, identity, swap_into_place
from .artifact_schema import Ctx, check_schema, embedded_target, show
from .artifact_tokenizer import check_entry, listed, read_tokenizer, split_tokenizer
from .artifact_writer import ArtifactWriter
from .hybrid.ir import HostStage, HybridProgram, QChipProjection, StateSpec
from .ir import (
    Core,
    HostProgram,
    Program,
    QHostInput,
    QLIFPop,
    QProjection,
    QReadoutPop,
    QSpikeInput,
    QSpikingPop,
)
from .kinds import KINDS as CHIP_KINDS

FORMAT = "spikestack-artifact"
VERSION = 5  # 2: host programs, LIF populations, spike inputs, timing; 3: "kind" chain | hybrid; 4: target_spec;
# 5: a chip layer carries only its kind's fields (compiler/kinds/: one layer class per neuron kind)
KINDS = ("chain", "hybrid")
_POP_TYPES = {"bispike": QSpikingPop, "readout": QReadoutPop, "lif": QLIFPop}
_POP_KINDS = {cls: kind for kind, cls in _POP_TYPES.items()}
_HOST_TYPES = {"embedding": QHostInput, "spikes": QSpikeInput}
_HOST_KINDS = {cls: kind for kind, cls in _HOST_TYPES.items()}


class _HashingWriter:
    """A write-only file that hashes what passes through it (np.save streams an array in 16 MB chunks)."""

    def __init__(self, f: Any) -> None:
        self.f, self.sha256 = f, hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        return self.f.write(data)


def _save_npy(a: np.ndarray, path: Path) -> str:
    """np.save(a) into `path`; returns the file's sha256. The bytes are those np.save writes into any file-like
    object, without holding a copy of the array (the 216M shape's chip weights are 0.8 GB)."""
    with open(path, "wb") as f:
        out = _HashingWriter(f)
        np.save(out, np.ascontiguousarray(a), allow_pickle=False)
    return out.sha256.hexdigest()


def _split(obj: Any, prefix: str, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """Dataclass → JSON dict, moving arrays into `arrays` under `prefix.field`."""
    out: dict[str, Any] = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, np.ndarray):
            key = f"{prefix}.{f.name}"
            arrays[key] = value
            out[f.name] = {"array": key}
        else:
            out[f.name] = value
    return out


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, indent=1, allow_nan=False).encode()


def core_entry(core: Core) -> dict[str, Any]:
    """A core as the manifest holds it: its input chunk only when split, so an unsplit core's entry (every
    artifact written before chunks existed) stays what it was."""
    entry = asdict(core)
    if not core.split:
        del entry["in_lo"], entry["in_hi"]
    return entry


def save(program: Program | HybridProgram, out_dir: str | Path, writer: ArtifactWriter | None = None) -> Path:
    """Write `program` as an artifact folder; `writer`: the ArtifactWriter for `out_dir` that already holds some
    of its arrays (a streaming compile)."""
    if isinstance(program, HybridProgram):
        return _save_hybrid(program, Path(out_dir), writer)
    out_dir = Path(out_dir)
    arrays: dict[str, np.ndarray] = {}
    manifest: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "kind": "chain", "target": program.target,
        "target_spec": program.target_spec.to_fields(), "steps": program.steps, "input_pop": program.input_pop,
        "timing": program.timing,
        "host_input": {"kind": _HOST_KINDS[type(program.host_input)],
                       **_split(program.host_input, "host_input", arrays)},
        "populations": [
            {"kind": _POP_KINDS[type(p)], **_split(p, f"pop.{p.name}", arrays)} for p in program.populations
        ],
        "projections": [_split(p, f"proj.{p.name}", arrays) for p in program.projections],
        "cores": [core_entry(c) for c in program.cores],
        "host_programs": [
            {"name": h.name, "file": f"host/{h.name}.onnx", "sha256": hashlib.sha256(h.onnx).hexdigest()}
            for h in program.host_programs
        ],
    }
    manifest["report"], files = split_tokenizer(program.report)
    files.update({f"host/{h.name}.onnx": h.onnx for h in program.host_programs})
    return _write(out_dir, manifest, arrays, files, writer)


def _save_hybrid(program: HybridProgram, out_dir: Path, writer: ArtifactWriter | None = None) -> Path:
    arrays: dict[str, np.ndarray] = {}
    layers = []
    for la in program.layers:
        entry = {"kind": la.kind, **_split(la, f"layer.{la.name}", arrays)}
        if la.projection is not None:
            entry["projection"] = _split(la.projection, f"proj.{la.projection.name}", arrays)
        layers.append(entry)
    files: dict[str, bytes] = {}

    def stage_entries(stages: tuple[HostStage, ...], prefix: str) -> list[dict[str, Any]]:
        entries = []
        for st in stages:
            path = f"host/{prefix}{st.index:03d}.onnx"
            files[path] = st.onnx
            entries.append({**{f.name: getattr(st, f.name) for f in fields(st) if f.name != "onnx"},
                            "file": path, "sha256": hashlib.sha256(st.onnx).hexdigest()})
        return entries

    manifest: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "kind": "hybrid",
        **{f.name: getattr(program, f.name) for f in fields(program)
           if f.name not in ("target_spec", "layers", "stages", "states", "cores", "report", "decode_stages",
                             "decode_states")},
        "target_spec": program.target_spec.to_fields(),
        "layers": layers, "stages": stage_entries(program.stages, "stage"),
        "states": [asdict(s) for s in program.states],
        "decode_stages": stage_entries(program.decode_stages, "decode"),
        "decode_states": [asdict(s) for s in program.decode_states],
        "cores": [core_entry(c) for c in program.cores],
    }
    manifest["report"], tokenizer_files = split_tokenizer(program.report)
    return _write(out_dir, manifest, arrays, {**files, **tokenizer_files}, writer)


def _listed_files(manifest: dict[str, Any]) -> dict[str, str]:
    """Every file a manifest names → its sha256 (arrays, chain host programs, hybrid stages)."""
    entries = list(manifest.get("arrays", {}).values())
    for key in ("host_programs", "stages", "decode_stages"):
        entries += manifest.get(key, [])
    return {**{e["file"]: e["sha256"] for e in entries}, **listed(manifest)}


def _incomplete(out_dir: Path) -> str | None:
    """Why `out_dir` is not a complete artifact (None: it is): its manifest and every file it names hash-check and
    it holds nothing else (a user's file inside would be deleted with it)."""
    try:
        with ArtifactDir(out_dir) as folder:
            manifest = _manifest_of(folder, version=False)
            try:
                files = _listed_files(manifest)
            except (AttributeError, KeyError, TypeError):
                return "its manifest lists no files"
            for rel, sha256 in files.items():
                if plain_relative(rel) is None or not isinstance(sha256, str):
                    return f"its manifest names the file {rel!r}"
                if folder.file_sha256(rel, "file") != sha256:
                    return f"{folder.path / rel}: sha256 mismatch"
    except ArtifactError as exc:
        return str(exc)
    expected = {"manifest.json", *files, *{rel.split("/")[0] for rel in files}}
    for root, dirs, names in os.walk(out_dir):
        for name in dirs + names:
            rel = Path(root, name).relative_to(out_dir).as_posix()
            if rel not in expected:
                return f"it holds {rel}, which is not part of the artifact"
    return None


def _check_replaceable(out_dir: Path) -> tuple[int, int] | None:
    """Only a missing path or a complete earlier artifact may be replaced: never a user's folder or file. Returns
    the identity of what is there (see `artifact_output.swap_into_place`)."""
    if not os.path.lexists(out_dir):
        return None
    if os.path.islink(out_dir):
        raise ArtifactError(f"{out_dir}: is a symbolic link; refusing to replace it")
    if not out_dir.is_dir():
        raise ArtifactError(f"{out_dir}: exists and is not a spikestack artifact; refusing to replace it")
    before = identity(out_dir)
    problem = _incomplete(out_dir)
    if identity(out_dir) != before:  # another compile swapped its artifact in while this one was being checked
        raise conflict(out_dir, "the output changed while it was being checked")
    if problem is not None:
        raise ArtifactError(f"{out_dir}: exists and is not a complete spikestack artifact; refusing to replace it "
                            f"({problem})")
    return before


def writer_for(out_dir: str | Path) -> ArtifactWriter:
    """An ArtifactWriter for `out_dir` (arrays written as they come, then `save(program, out_dir, writer)`), after
    the same check as `save`: only a missing path or a complete earlier artifact may be replaced."""
    out_dir = Path(os.path.abspath(out_dir))
    return ArtifactWriter(out_dir, _check_replaceable(out_dir), lambda a, path: _save_npy(a, path))


def _write(out_dir: Path, manifest: dict[str, Any], arrays: dict[str, np.ndarray], files: dict[str, bytes],
           writer: ArtifactWriter | None = None) -> Path:
    """Write arrays and files into a marked temporary sibling, hash them into the manifest, swap it into place."""
    writer = writer if writer is not None else writer_for(out_dir)
    tmp = writer.tmp
    try:
        manifest["arrays"] = {key: writer.entry(key, arrays[key]) for key in sorted(arrays)}
        manifest["content_sha256"] = hashlib.sha256(_canonical(manifest)).hexdigest()
        for rel, blob in files.items():
            (tmp / rel).parent.mkdir(exist_ok=True)
            (tmp / rel).write_bytes(blob)
        (tmp / "manifest.json").write_bytes(_canonical(manifest))
        os.chmod(tmp, 0o755)
        swap_into_place(tmp, writer.out_dir, writer.before)
    except BaseException:
        writer.abort()
        raise
    return writer.out_dir


# ----------------------------------------------------------------------------------------------------- load
def _manifest_of(folder: ArtifactDir, version: bool = True) -> dict[str, Any]:
    """manifest.json parsed and checked for format, version (unless replacing an older artifact) and content
    hash."""
    path = folder.path / "manifest.json"
    try:
        os.stat("manifest.json", dir_fd=folder.fd, follow_symlinks=False)
    except FileNotFoundError:
        raise ArtifactError(f"{path}: missing; {folder.path} is not a spikestack artifact") from None
    manifest = parse_manifest(folder.read("manifest.json", "manifest", MANIFEST_MAX_BYTES), path)
    if manifest.get("format") != FORMAT:
        raise ArtifactError(f"{path}: format {show(manifest.get('format'))} is not {FORMAT!r}")
    if version and manifest.get("version") != VERSION:
        raise ArtifactError(f"{path}: artifact version {show(manifest.get('version'))} but this spikestack reads "
                            f"{VERSION}")
    claimed = manifest.pop("content_sha256", None)
    if claimed != hashlib.sha256(_canonical(manifest)).hexdigest():
        raise ArtifactError(f"{path}: content hash mismatch (edited or corrupt manifest)")
    manifest["content_sha256"] = claimed
    return manifest


def _read_manifest(folder: ArtifactDir, ctx: Ctx) -> dict[str, Any]:
    """The manifest, checked field by field (compiler/artifact_schema.py, compiler/artifact_check.py)."""
    path = folder.path / "manifest.json"
    manifest = _manifest_of(folder)
    if manifest.get("kind") not in KINDS:
        raise ArtifactError(f"{path}: kind = {show(manifest.get('kind'))}; allowed: one of {', '.join(KINDS)}")
    check_schema(manifest, ctx)
    check_target(manifest, ctx)
    (check_hybrid if manifest["kind"] == "hybrid" else check_chain)(manifest, ctx)
    check_report(manifest, ctx)
    check_entry(manifest, ctx)
    return manifest


class _HostFiles:
    """Reads host programs: hash-checked, then ONNX-checked against the names the executors feed and fetch (once
    per distinct file content: stage000 and decode000 are often the same model, and share one copy in memory —
    a 7B shape's embedding stage is 0.5 GB)."""

    def __init__(self, folder: ArtifactDir) -> None:
        self.folder, self.checked, self.blobs = folder, set(), {}

    def read(self, entry: dict[str, Any], what: str, inputs: set[str], outputs: set[str], n_out: int | None) -> bytes:
        blob = self.blobs.get(entry["sha256"])
        if blob is None:
            blob = self.blobs[entry["sha256"]] = self.folder.read_hashed(entry["file"], entry["sha256"], what,
                                                                         ONNX_MAX_BYTES)
        elif self.folder.file_sha256(entry["file"], what, ONNX_MAX_BYTES) != entry["sha256"]:  # no second copy
            raise ArtifactError(f"{self.folder.path / entry['file']}: sha256 mismatch (corrupt or edited {what})")
        key = (entry["sha256"], frozenset(inputs), frozenset(outputs), n_out)
        if key not in self.checked:
            check_onnx(blob, self.folder.path / entry["file"], inputs, outputs, n_out)
            self.checked.add(key)
        return blob


_HOST_PROGRAM_INPUTS = {"encode": "ids", "decode": "acc"}  # runtime/host.py feeds these names, fetches one output


def _build(cls: type, data: dict[str, Any], arrays: dict[str, np.ndarray]) -> Any:
    kwargs = {k: arrays[v["array"]] if isinstance(v, dict) and "array" in v else v for k, v in data.items()}
    return cls(**kwargs)


def _build_chain(manifest: dict[str, Any], arrays: dict[str, np.ndarray], host: _HostFiles, ctx: Ctx) -> Program:
    pops = tuple(_build(_POP_TYPES[p.pop("kind")], p, arrays) for p in manifest["populations"])
    host_programs = tuple(
        HostProgram(name=e["name"], onnx=host.read(e, "host program", {_HOST_PROGRAM_INPUTS[e["name"]]}, set(), 1))
        for e in manifest.get("host_programs", []))
    return Program(
        target=manifest["target"], target_spec=embedded_target(manifest["target_spec"], "target_spec", ctx),
        steps=manifest["steps"],
        host_input=_build(_HOST_TYPES[manifest["host_input"].pop("kind")], manifest["host_input"], arrays),
        input_pop=manifest["input_pop"], timing=manifest.get("timing", "token"),
        populations=pops, projections=tuple(_build(QProjection, p, arrays) for p in manifest["projections"]),
        cores=tuple(Core(**c) for c in manifest["cores"]), report=manifest["report"], host_programs=host_programs)


def _build_hybrid(manifest: dict[str, Any], arrays: dict[str, np.ndarray], host: _HostFiles,
                  ctx: Ctx) -> HybridProgram:
    layers = []
    for entry in manifest["layers"]:
        proj = entry.pop("projection", None)
        layer = _build(CHIP_KINDS[entry.pop("kind")].layer_type, entry, arrays)  # the schema checked the kind
        if proj is not None:
            layer = replace(layer, projection=_build(QChipProjection, proj, arrays))
        layers.append(layer)

    def stages(entries: list[dict[str, Any]]) -> tuple[HostStage, ...]:
        return tuple(HostStage(index=e["index"], onnx=host.read(e, "host stage", set(e["inputs"]), set(e["outputs"]),
                                                                None),
                               inputs=tuple(e["inputs"]), outputs=tuple(e["outputs"]),
                               state_in=tuple(e["state_in"]), state_out=tuple(e["state_out"]),
                               ops=tuple(e["ops"]), macs_per_position=e["macs_per_position"]) for e in entries)

    def states(entries: list[dict[str, Any]]) -> tuple[StateSpec, ...]:
        return tuple(StateSpec(name=s["name"], shape=tuple(s["shape"]), init=s["init"]) for s in entries)

    scalars = {k: manifest[k] for k in ("family", "target", "time_axis", "steps_per_token", "vocab_size",
                                        "input_name", "output_name", "max_positions", "readout", "input_window")
               if k in manifest}  # the last two are optional (their defaults)
    return HybridProgram(**scalars, target_spec=embedded_target(manifest["target_spec"], "target_spec", ctx),
                         layers=tuple(layers), stages=stages(manifest["stages"]),
                         states=states(manifest["states"]), decode_stages=stages(manifest.get("decode_stages", [])),
                         decode_states=states(manifest.get("decode_states", [])),
                         cores=tuple(Core(**c) for c in manifest["cores"]), report=manifest["report"])


def load(art_dir: str | Path) -> Program | HybridProgram:
    """The program of an artifact folder, after checking everything runtime/ and simulators/ rely on
    (docs/artifact.md, "What `load` checks"); any problem is one ArtifactError naming the file and field."""
    art_dir = Path(art_dir)
    ctx = Ctx(where=str(art_dir / "manifest.json"))
    with ArtifactDir(art_dir) as folder:
        manifest = _read_manifest(folder, ctx)
        arrays = {key: folder.read_npy(meta["file"], meta["dtype"], tuple(meta["shape"]), meta["sha256"])
                  for key, meta in manifest["arrays"].items()}
        build = _build_hybrid if manifest["kind"] == "hybrid" else _build_chain
        try:
            program = build(manifest, arrays, _HostFiles(folder), ctx)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:  # the schema should make this unreachable
            raise ArtifactError(f"{ctx.where}: malformed entry ({type(exc).__name__}: {exc})") from None
        tokenizer = read_tokenizer(folder, manifest, ctx)
    if tokenizer is not None:
        program = replace(program, report=dict(program.report, tokenizer=tokenizer))
    check_values(program, ctx)
    run_verifier(program, ctx)
    for a in arrays.values():  # the chain verifier scans whole arrays; the runtime faults in what it uses
        release_pages(a)
    return program
