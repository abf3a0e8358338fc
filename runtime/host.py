"""The host side of a compiled program: runs its ONNX host programs with onnxruntime.

`encode` turns token contexts into the input population's currents; `decode` turns readout accumulators into
logits. Programs compiled without host programs (hand-built ones in tests) fall back to the same arithmetic in
numpy, which `tests/runtime/test_host.py` proves identical.
"""

from __future__ import annotations

import functools

import numpy as np
from spikestack.compiler.ir import Program, QReadoutPop


def _check_ids(program: Program, ids: np.ndarray) -> np.ndarray:
    ids = np.asarray(ids, dtype=np.int64)
    vocab = program.host_input.table.shape[0]
    if ids.ndim != 2 or ids.shape[1] != program.host_input.context:
        raise ValueError(f"inputs must be [tokens, {program.host_input.context}] ids, got shape {ids.shape}")
    if ids.min(initial=0) < 0 or ids.max(initial=0) >= vocab:
        raise ValueError(f"token ids must be in [0, {vocab})")
    return ids


@functools.lru_cache(maxsize=64)
def _session(onnx_bytes: bytes):
    """One onnxruntime session per distinct ONNX model, kept across runs.

    Why 64: a hybrid program has one host stage per segment plus one (up to 11 for the shipped LM families), and an
    LRU smaller than a program's stage count evicts every stage on every run (cyclic access). With 8 slots, each
    `executor.run` of spikelm-dec-tiny (11 stages) or spikellm-char-tiny (9) rebuilt all of its sessions: 35-80 ms
    per run on 2 CPU cores (bench/runtime_speed.py), more than the run itself. A session of these models is well
    under 1 MB.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # small host ops; threads only add contention
    opts.log_severity_level = 3
    return ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])


def encode(program: Program, ids: np.ndarray) -> np.ndarray:
    """Token contexts [tokens, context] → input currents int64 [tokens, n_in] in state units."""
    ids = _check_ids(program, ids)
    if not program.host_programs:
        return np.asarray(program.host_input.table, np.int64)[ids].reshape(len(ids), -1)
    (currents,) = _session(program.host_program("encode")).run(None, {"ids": ids})
    return currents.astype(np.int64)


def decode(program: Program, acc: np.ndarray) -> np.ndarray:
    """Readout accumulators int64 [tokens, n_out] → logits float64."""
    out = program.populations[-1]
    assert isinstance(out, QReadoutPop)
    acc = np.asarray(acc, np.int64)
    if not program.host_programs:
        return acc * out.state_unit / program.steps + np.asarray(out.host_bias)
    (logits,) = _session(program.host_program("decode")).run(None, {"acc": acc})
    return logits
