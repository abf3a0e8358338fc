"""Reading an artifact's files without trusting them (the border of `compiler/artifact.py`'s `load`).

An artifact folder may come from anywhere, so every file it names is read the same careful way: the name is a
plain relative path inside the folder, every component is opened relative to the folder with `O_NOFOLLOW` (no
symlink leads outside, not even through `arrays/`), the file is opened `O_NONBLOCK` (a FIFO cannot hang the
reader) and must be a regular file (not a FIFO, device or folder), and its size is capped before a byte is read
(a symlink to /dev/zero or a sparse 1 TB file would otherwise read until memory runs out). `.npy` headers are
parsed and compared with the manifest before the data is read; host programs must pass the ONNX checker. Every
failure is one `ArtifactError` naming the file.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import mmap
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from spikestack.errors import ArtifactError

MANIFEST_MAX_BYTES = 64 << 20  # the 216M shape's manifest is well under 1 MB; the report is the bulk
ONNX_MAX_BYTES = (2 << 30) - 1  # protobuf cannot parse a message of 2 GiB or more
NPY_HEADER_MAX_BYTES = 16 + 10_000  # magic, length field and numpy's own header limit (`max_header_size`)
MAP_MIN_BYTES = 1 << 20  # arrays this big are mapped, smaller ones read: one map (and descriptor) per big array
HASH_CHUNK_BYTES = 16 << 20  # the buffer that streams a mapped array's sha256; also the piece `chunks` scans
JSON_MAX_DEPTH = 64  # the manifest nests at most ~6 deep (report.encodings.<edge>.costs.<encoding>.<field>)
ARRAY_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32", "float64")
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)


def plain_relative(name: Any) -> tuple[str, ...] | None:
    """The components of a manifest file name if it is a plain relative path (no `..`, `.`, empty part, absolute
    path, backslash or control character), else None."""
    if not isinstance(name, str) or not name or name.startswith("/") or "\\" in name:
        return None
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        return None
    parts = tuple(name.split("/"))
    if any(p in ("", ".", "..") for p in parts):
        return None
    return parts


def _kind(mode: int) -> str:
    for test, word in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISLNK, "a symbolic link"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return word
    return "not a regular file"


class ArtifactDir:
    """An open artifact folder: files are opened relative to its descriptor, so renaming or symlinking the folder's
    path mid-load cannot redirect a read. Use as a context manager."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise ArtifactError(f"{path}: not an artifact directory (missing)") from None
        except NotADirectoryError:
            raise ArtifactError(f"{path}: not an artifact directory (a file)") from None
        except OSError as exc:
            raise ArtifactError(f"{path}: cannot open the artifact directory ({exc.strerror})") from None

    def __enter__(self) -> ArtifactDir:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)

    def open_file(self, rel: str, what: str) -> tuple[int, int]:
        """(descriptor, size) of the regular file `rel` inside the folder, or ArtifactError naming it."""
        parts = plain_relative(rel)
        if parts is None:
            raise ArtifactError(f"{self.path}: {what} file name {rel!r} is not a plain relative path inside the "
                                "artifact (no '..', no absolute path)")
        where = self.path / rel
        dir_fd, opened = self.fd, []
        try:
            for part in parts[:-1]:
                try:
                    dir_fd = os.open(part, _DIR_FLAGS, dir_fd=dir_fd)
                except NotADirectoryError:  # O_DIRECTORY answers a symlink with ENOTDIR before O_NOFOLLOW does
                    if stat.S_ISLNK(os.stat(part, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                        raise OSError(errno.ELOOP, "symbolic link") from None
                    raise
                opened.append(dir_fd)
            fd = os.open(parts[-1], _READ_FLAGS, dir_fd=dir_fd)
        except FileNotFoundError:
            raise ArtifactError(f"{where}: missing {what}") from None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EMLINK):  # O_NOFOLLOW met a symlink (EMLINK on FreeBSD)
                raise ArtifactError(f"{where}: {what} is or lies behind a symbolic link; artifacts hold only regular "
                                    "files") from None
            if exc.errno == errno.ENOTDIR:
                raise ArtifactError(f"{where}: a component of the path is not a folder") from None
            raise ArtifactError(f"{where}: cannot open {what} ({exc.strerror})") from None
        finally:
            for d in opened:
                os.close(d)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise ArtifactError(f"{where}: {what} is {_kind(st.st_mode)}, not a regular file")
        return fd, st.st_size

    def read(self, rel: str, what: str, max_bytes: int) -> bytes:
        """The bytes of a regular file of at most `max_bytes`."""
        fd, size = self.open_file(rel, what)
        with open(fd, "rb", closefd=True) as f:
            if size > max_bytes:
                raise ArtifactError(f"{self.path / rel}: {what} is {size} bytes, more than the limit of {max_bytes}")
            blob = f.read(size + 1)  # +1: a file that grew since fstat shows up as a size change
        if len(blob) != size:
            raise ArtifactError(f"{self.path / rel}: {what} changed size while being read ({size} → {len(blob)})")
        return blob

    def read_hashed(self, rel: str, sha256: str, what: str, max_bytes: int) -> bytes:
        blob = self.read(rel, what, max_bytes)
        if hashlib.sha256(blob).hexdigest() != sha256:
            raise ArtifactError(f"{self.path / rel}: sha256 mismatch (corrupt or edited {what})")
        return blob

    def file_sha256(self, rel: str, what: str, max_bytes: int | None = None) -> str:
        """sha256 of a regular file (of at most `max_bytes`, if given), streamed (checking a 0.8 GB array before
        replacing an artifact, a second copy of a host program)."""
        fd, size = self.open_file(rel, what)
        with open(fd, "rb", closefd=True) as f:
            if max_bytes is not None and size > max_bytes:
                raise ArtifactError(f"{self.path / rel}: {what} is {size} bytes, more than the limit of {max_bytes}")
            digest = _stream_sha256(f, size)
        if digest is None:
            raise ArtifactError(f"{self.path / rel}: changed size while being read")
        return digest

    def read_npy(self, rel: str, dtype: str, shape: tuple[int, ...], sha256: str) -> np.ndarray:
        """A read-only array whose .npy header says exactly the manifest's dtype, shape and C order, checked before
        the data is read; the file is exactly header + data and hashes to `sha256`. An array of at least
        `MAP_MIN_BYTES` is memory-mapped after its hash is streamed through a fixed buffer, so a load never holds
        a big array in memory: the runtime's reads fault in the pages it uses (the folder must stay unchanged
        while its program lives: docs/artifact.md, "Lazy loading")."""
        where = self.path / rel
        want = np.dtype(dtype)
        data_bytes = want.itemsize * math.prod(shape)
        fd, size = self.open_file(rel, "array")
        with open(fd, "rb", closefd=True) as f:
            header_len = _npy_header(f, where, want, shape, size, data_bytes)
            f.seek(0)
            if data_bytes >= max(MAP_MIN_BYTES, 1):  # an empty array has nothing to map
                got = _stream_sha256(f, size)
                if got is None:
                    raise ArtifactError(f"{where}: changed size while being read")
                if got != sha256:
                    raise ArtifactError(f"{where}: sha256 mismatch (corrupt or edited array)")
                return _map(f, where, want, shape, header_len, size)
            digest = hashlib.sha256(f.read(header_len))
            data = bytearray(data_bytes)
            view, filled = memoryview(data), 0
            while filled < data_bytes:
                n = f.readinto(view[filled:])
                if not n:
                    raise ArtifactError(f"{where}: changed size while being read")
                filled += n
            digest.update(data)
        if digest.hexdigest() != sha256:
            raise ArtifactError(f"{where}: sha256 mismatch (corrupt or edited array)")
        array = np.frombuffer(data, dtype=want).reshape(shape)
        array.setflags(write=False)
        return array


def _npy_header(f: Any, where: Path, want: np.dtype, shape: tuple[int, ...], size: int, data_bytes: int) -> int:
    """The length of a .npy file's header after checking it says exactly `want`, `shape`, C order and the file is
    exactly header + data (before a byte of data is read)."""
    if size > data_bytes + NPY_HEADER_MAX_BYTES:
        raise ArtifactError(f"{where}: {size} bytes, more than the {data_bytes} bytes of {want} "
                            f"{list(shape)} plus a .npy header")
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            got_shape, fortran, got = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            got_shape, fortran, got = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except Exception as exc:  # numpy's header parser (tokenize, literal_eval) raises many kinds on garbage
        raise ArtifactError(f"{where}: not a valid .npy file ({str(exc).splitlines()[0][:120]})") from None
    if got.hasobject or got != want or tuple(got_shape) != tuple(shape) or fortran:
        raise ArtifactError(f"{where}: .npy header says {got} {list(got_shape)}"
                            f"{' Fortran order' if fortran else ''}, the manifest {want} {list(shape)} "
                            "C order")
    header_len = f.tell()
    if size != header_len + data_bytes:
        raise ArtifactError(f"{where}: {size} bytes, expected {header_len} header + {data_bytes} data "
                            "bytes (truncated or padded)")
    return header_len


def _stream_sha256(f: Any, size: int) -> str | None:
    """sha256 of the first `size` bytes of `f` through one HASH_CHUNK_BYTES buffer (None: the file is shorter
    than `size` now, so it cannot match); read(), not the map, so hashing adds nothing to the resident set."""
    digest, buffer, left = hashlib.sha256(), bytearray(min(HASH_CHUNK_BYTES, size)), size
    view = memoryview(buffer)
    while left:
        n = f.readinto(view[:min(left, len(view))])
        if not n:
            return None
        digest.update(view[:n])
        left -= n
    return digest.hexdigest()


def _map(f: Any, where: Path, want: np.dtype, shape: tuple[int, ...], header_len: int, size: int) -> np.ndarray:
    """The data of a checked .npy file as a read-only array over a shared read-only map of the whole file (the
    map keeps its own duplicate of the descriptor, so closing `f` leaves it valid; renaming or deleting the file
    does too: the inode lives while mapped)."""
    try:
        mapping = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{where}: cannot map the array ({exc})") from None
    if len(mapping) != size:
        mapping.close()
        raise ArtifactError(f"{where}: changed size while being read")
    return np.frombuffer(mapping, want, math.prod(shape), header_len).reshape(shape)


def mapping_of(a: np.ndarray) -> tuple[mmap.mmap, int] | None:
    """(the map, its start address) under an array that views one (`read_npy`, `map_npy`), else None."""
    base: Any = a
    while isinstance(base, np.ndarray):
        base = base.base
    if isinstance(base, memoryview):
        base = base.obj
    if not isinstance(base, mmap.mmap) or base.closed:
        return None
    return base, np.frombuffer(base, np.uint8, 1).ctypes.data


def release_pages(a: np.ndarray) -> None:
    """Drop the pages under a mapped array (or a piece of one) from the resident set; nothing for a read array.
    The data stays in the page cache and faults back in on the next read, so this changes no value."""
    found = mapping_of(a)
    if found is None or a.size == 0:
        return
    mapping, start = found
    lo = a.ctypes.data - start
    hi = lo + a.size * a.itemsize  # a contiguous piece (`chunks`) or a whole array: its extent in the map
    lo -= lo % mmap.PAGESIZE  # madvise takes a page-aligned start; the page shared with a neighbour is refetched
    mapping.madvise(mmap.MADV_DONTNEED, lo, min(hi, len(mapping)) - lo)


def chunks(a: np.ndarray, chunk_bytes: int = HASH_CHUNK_BYTES) -> Iterator[np.ndarray]:
    """A C-contiguous array as flat pieces of about `chunk_bytes`, in order; the pages of a mapped array are
    released after each piece is used, so a scan of a mapped array of any size keeps one piece resident."""
    flat = a.reshape(-1)
    step = max(1, chunk_bytes // max(a.itemsize, 1))
    for lo in range(0, flat.size, step):
        piece = flat[lo:lo + step]
        yield piece
        release_pages(piece)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} overflows a double")
    return value


def _depth(obj: Any) -> int:
    """Nesting depth, iteratively (a recursive walk is what a deep manifest would break)."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        if d > JSON_MAX_DEPTH:
            return d
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack.extend((child, d + 1) for child in children)
    return deepest


def parse_manifest(blob: bytes, where: Path) -> dict[str, Any]:
    """manifest.json bytes → a JSON object without NaN/Infinity, overflowing numbers or absurd nesting."""
    try:
        manifest = json.loads(blob.decode("utf-8"), parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise ArtifactError(f"{where}: corrupt JSON (nested too deeply)") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise ArtifactError(f"{where}: corrupt JSON ({str(exc).splitlines()[0][:160]})") from None
    if not isinstance(manifest, dict):
        kind = {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(manifest), "number")
        raise ArtifactError(f"{where}: the top level is a JSON {kind}, not an object")
    if _depth(manifest) > JSON_MAX_DEPTH:
        raise ArtifactError(f"{where}: JSON nested deeper than {JSON_MAX_DEPTH} levels")
    return manifest


def check_onnx(blob: bytes, where: Path, inputs: set[str] | None, outputs: set[str], n_outputs: int | None) -> None:
    """A host program is a valid ONNX model whose graph takes exactly `inputs` (None: not checked) and produces at
    least `outputs` (exactly `n_outputs` of them when given): what `runtime/host.py` and the hybrid executor feed
    and fetch by name, so a wrong model fails here instead of inside onnxruntime."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load_from_string(blob)
        onnx.checker.check_model(blob)  # the bytes as read: no re-serialized copy of a 0.5 GB embedding stage
    except (DecodeError, onnx.checker.ValidationError, ValueError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise ArtifactError(f"{where}: not a valid ONNX model ({first})") from None
    initializers = {i.name for i in model.graph.initializer}
    got_in = {i.name for i in model.graph.input} - initializers
    got_out = [o.name for o in model.graph.output]
    if inputs is not None and got_in != inputs:
        raise ArtifactError(f"{where}: ONNX inputs {sorted(got_in)} differ from the manifest's {sorted(inputs)}")
    missing = sorted(outputs - set(got_out))
    if missing or (n_outputs is not None and len(got_out) != n_outputs):
        raise ArtifactError(f"{where}: ONNX outputs {got_out} lack {missing} or are not {n_outputs} in number"
                            if n_outputs is not None else f"{where}: ONNX outputs {got_out} lack {missing}")


__all__ = ["ARRAY_DTYPES", "ArtifactDir", "MANIFEST_MAX_BYTES", "ONNX_MAX_BYTES", "check_onnx", "chunks", "map_npy",
           "mapping_of", "parse_manifest", "plain_relative", "release_pages"]


def map_npy(path: Path, dtype: np.dtype, shape: tuple[int, ...]) -> tuple[np.ndarray, mmap.mmap | None]:
    """A .npy file this process has just written (np.save, format 1.0), mapped read-only, and its mapping (None for
    an empty array): the streaming compile's way to drop its own copy of an array it still reads."""
    if math.prod(shape) == 0:
        return np.zeros(shape, dtype), None
    with open(path, "rb") as f:
        np.lib.format.read_magic(f)
        np.lib.format.read_array_header_1_0(f)
        offset = f.tell()
        mapping = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    return np.frombuffer(mapping, dtype, math.prod(shape), offset).reshape(shape), mapping
