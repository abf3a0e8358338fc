"""The artifact format: the one module that writes and reads compiled programs (both backends and the
simulator use `load` only).

Layout of an artifact directory (version 3):

    manifest.json        format, version, kind, target, …, cores, report, and for every array and host file its
                         path and sha256 (arrays also dtype and shape); `content_sha256` hashes all of the above
    arrays/<name>.npy    one array per file (np.save is deterministic; npz embeds timestamps)
    host/<name>.onnx     the host programs, run with onnxruntime

Two kinds (docs/artifact.md): ``chain`` (`compiler.ir.Program`: the spine and foreign LIF chains; populations,
projections, host/encode.onnx and host/decode.onnx) and ``hybrid`` (`compiler.hybrid.ir.HybridProgram`: the LM
families; chip layers with their projections, host/stageNNN.onnx per schedule stage, host states).

Same program → byte-identical directory (sorted JSON keys, no timestamps). `save` writes into a temporary sibling
directory and renames it into place, so a failure never leaves a half-written artifact. `load` checks the format,
the version and every hash, and raises ArtifactError naming the file.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from spikestack.errors import ArtifactError

from .hybrid.ir import HostStage, HybridProgram, QChipLayer, QChipProjection, StateSpec
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
    frozen_array,
)

FORMAT = "spikestack-artifact"
VERSION = 3  # 2: host programs, LIF populations, spike inputs, timing; 3: "kind" chain | hybrid
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


def save(program: Program | HybridProgram, out_dir: str | Path) -> Path:
    if isinstance(program, HybridProgram):
        return _save_hybrid(program, Path(out_dir))
    out_dir = Path(out_dir)
    arrays: dict[str, np.ndarray] = {}
    manifest: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "kind": "chain", "target": program.target, "steps": program.steps,
        "state_bits": program.state_bits, "input_pop": program.input_pop, "timing": program.timing,
        "host_input": {"kind": _HOST_KINDS[type(program.host_input)],
                       **_split(program.host_input, "host_input", arrays)},
        "populations": [
            {"kind": _POP_KINDS[type(p)], **_split(p, f"pop.{p.name}", arrays)} for p in program.populations
        ],
        "projections": [_split(p, f"proj.{p.name}", arrays) for p in program.projections],
        "cores": [asdict(c) for c in program.cores],
        "host_programs": [
            {"name": h.name, "file": f"host/{h.name}.onnx", "sha256": hashlib.sha256(h.onnx).hexdigest()}
            for h in program.host_programs
        ],
        "report": program.report,
    }
    return _write(out_dir, manifest, arrays, {f"host/{h.name}.onnx": h.onnx for h in program.host_programs})


def _save_hybrid(program: HybridProgram, out_dir: Path) -> Path:
    arrays: dict[str, np.ndarray] = {}
    layers = []
    for la in program.layers:
        entry = _split(la, f"layer.{la.name}", arrays)
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
           if f.name not in ("layers", "stages", "states", "cores", "report", "decode_stages", "decode_states")},
        "layers": layers, "stages": stage_entries(program.stages, "stage"),
        "states": [asdict(s) for s in program.states],
        "decode_stages": stage_entries(program.decode_stages, "decode"),
        "decode_states": [asdict(s) for s in program.decode_states],
        "cores": [asdict(c) for c in program.cores], "report": program.report,
    }
    return _write(out_dir, manifest, arrays, files)


def _check_replaceable(out_dir: Path) -> None:
    """Only a missing path or an earlier artifact may be replaced: never a user's directory or file."""
    if not out_dir.exists():
        return
    manifest = out_dir / "manifest.json"
    try:
        ours = out_dir.is_dir() and json.loads(manifest.read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours:
        raise ArtifactError(f"{out_dir}: exists and is not a spikestack artifact; refusing to replace it")


def _write(out_dir: Path, manifest: dict[str, Any], arrays: dict[str, np.ndarray], files: dict[str, bytes]) -> Path:
    """Write arrays and files into a temporary sibling, hash them into the manifest, rename into place."""
    _check_replaceable(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        (tmp / "arrays").mkdir()
        manifest["arrays"] = {
            key: {"file": f"arrays/{key}.npy", "dtype": str(arrays[key].dtype), "shape": list(arrays[key].shape),
                  "sha256": _save_npy(arrays[key], tmp / "arrays" / f"{key}.npy")}
            for key in sorted(arrays)
        }
        manifest["content_sha256"] = hashlib.sha256(_canonical(manifest)).hexdigest()
        for rel, blob in files.items():
            (tmp / rel).parent.mkdir(exist_ok=True)
            (tmp / rel).write_bytes(blob)
        (tmp / "manifest.json").write_bytes(_canonical(manifest))
        os.chmod(tmp, 0o755)
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            out_dir.rename(old)
            tmp.rename(out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _read_manifest(art_dir: Path) -> dict[str, Any]:
    path = art_dir / "manifest.json"
    if not art_dir.is_dir():
        raise ArtifactError(f"{art_dir}: not an artifact directory (missing)")
    if not path.exists():
        raise ArtifactError(f"{path}: missing; {art_dir} is not a spikestack artifact")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path}: corrupt JSON ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise ArtifactError(f"{path}: format {manifest.get('format')!r} is not {FORMAT!r}")
    if manifest.get("version") != VERSION:
        raise ArtifactError(f"{path}: artifact version {manifest.get('version')} but this spikestack reads {VERSION}")
    claimed = manifest.pop("content_sha256", None)
    if claimed != hashlib.sha256(_canonical(manifest)).hexdigest():
        raise ArtifactError(f"{path}: content hash mismatch (edited or corrupt manifest)")
    return manifest


def _read_checked(art_dir: Path, entry: dict[str, Any], what: str) -> bytes:
    """The bytes of a file the manifest lists, after checking they still hash to what the manifest says."""
    path = art_dir / entry["file"]
    if not path.exists():
        raise ArtifactError(f"{path}: missing {what}")
    blob = path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != entry["sha256"]:
        raise ArtifactError(f"{path}: sha256 mismatch (corrupt or edited {what})")
    return blob


def _load_arrays(art_dir: Path, manifest: dict[str, Any]) -> dict[str, np.ndarray]:
    return {key: frozen_array(np.load(io.BytesIO(_read_checked(art_dir, meta, "array")), allow_pickle=False))
            for key, meta in manifest["arrays"].items()}


def _load_host_programs(art_dir: Path, manifest: dict[str, Any]) -> tuple[HostProgram, ...]:
    return tuple(HostProgram(name=e["name"], onnx=_read_checked(art_dir, e, "host program"))
                 for e in manifest.get("host_programs", []))


def _build(cls: type, data: dict[str, Any], arrays: dict[str, np.ndarray]) -> Any:
    kwargs = {k: arrays[v["array"]] if isinstance(v, dict) and "array" in v else v for k, v in data.items()}
    return cls(**kwargs)


def load(art_dir: str | Path) -> Program | HybridProgram:
    art_dir = Path(art_dir)
    manifest = _read_manifest(art_dir)
    try:
        arrays = _load_arrays(art_dir, manifest)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ArtifactError(f"{art_dir / 'manifest.json'}: malformed array table "
                            f"({type(exc).__name__}: {exc})") from None
    if manifest.get("kind") == "hybrid":
        return _load_hybrid(art_dir, manifest, arrays)
    try:
        pops = tuple(_build(_POP_TYPES[p.pop("kind")], p, arrays) for p in manifest["populations"])
        return Program(
            target=manifest["target"], steps=manifest["steps"], state_bits=manifest["state_bits"],
            host_input=_build(_HOST_TYPES[manifest["host_input"].pop("kind")], manifest["host_input"], arrays),
            input_pop=manifest["input_pop"], timing=manifest["timing"],
            populations=pops, projections=tuple(_build(QProjection, p, arrays) for p in manifest["projections"]),
            cores=tuple(Core(**c) for c in manifest["cores"]), report=manifest["report"],
            host_programs=_load_host_programs(art_dir, manifest),
        )
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ArtifactError(f"{art_dir / 'manifest.json'}: malformed entry ({type(exc).__name__}: {exc})") from None


def _load_hybrid(art_dir: Path, manifest: dict[str, Any], arrays: dict[str, np.ndarray]) -> HybridProgram:
    try:
        layers = []
        for entry in manifest["layers"]:
            proj = entry.pop("projection", None)
            layer = _build(QChipLayer, entry, arrays)
            if proj is not None:
                layer = replace(layer, projection=_build(QChipProjection, proj, arrays))
            layers.append(layer)
        def stages(entries: list[dict[str, Any]]) -> tuple[HostStage, ...]:
            return tuple(HostStage(index=e["index"], onnx=_read_checked(art_dir, e, "host stage"),
                                   inputs=tuple(e["inputs"]), outputs=tuple(e["outputs"]),
                                   state_in=tuple(e["state_in"]), state_out=tuple(e["state_out"]),
                                   ops=tuple(e["ops"]), macs_per_position=e["macs_per_position"]) for e in entries)

        def states(entries: list[dict[str, Any]]) -> tuple[StateSpec, ...]:
            return tuple(StateSpec(name=s["name"], shape=tuple(s["shape"]), init=s["init"]) for s in entries)

        scalars = {k: manifest[k] for k in ("family", "target", "time_axis", "steps_per_token", "vocab_size",
                                            "input_name", "output_name", "max_positions")}
        return HybridProgram(**scalars, layers=tuple(layers), stages=stages(manifest["stages"]),
                             states=states(manifest["states"]), decode_stages=stages(manifest.get("decode_stages", [])),
                             decode_states=states(manifest.get("decode_states", [])),
                             cores=tuple(Core(**c) for c in manifest["cores"]), report=manifest["report"])
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ArtifactError(f"{art_dir / 'manifest.json'}: malformed entry ({type(exc).__name__}: {exc})") from None
