"""Foreign graphs: NIR files written with plain `nir` primitives run through `nir_to_module`, hand-checked."""

from __future__ import annotations

import subprocess
import sys

import nir
import nirtorch
import numpy as np
import pytest
import torch
from spikestack.models.nir.to_torch import nir_to_module, run_steps
from spikestack.models.nir.torch_modules import NODE_MAP

from spikestack.errors import NIRFormatError

WRITE_FOREIGN_LIF = """
import sys, nir, numpy as np
one = np.ones(2)
graph = nir.NIRGraph.from_list(
    nir.Linear(weight=np.diag([2.0, 0.5])),
    nir.LIF(tau=2 * one, r=one, v_leak=0 * one, v_threshold=one, v_reset=0 * one),
)
nir.write(sys.argv[1], graph)
assert not [m for m in sys.modules if m.split('.')[0] == 'spikestack']
"""


def _steps(module: torch.nn.Module, xs: list[list[float]]) -> np.ndarray:
    inputs = [torch.tensor([x], dtype=torch.float64) for x in xs]
    with torch.no_grad():
        return run_steps(module, inputs)[:, 0].numpy()


def test_foreign_lif_file_runs_with_hand_checked_spikes(tmp_path):
    path = tmp_path / "foreign.nir"
    subprocess.run([sys.executable, "-c", WRITE_FOREIGN_LIF, str(path)], check=True)
    module = nir_to_module(path, dtype=torch.float64)
    # Euler dt = 1, v ← v + (0 - v + x)/2. Channel 0 (x = 2): v = 1 (not > 1), 1.5 spike → 0, 1, 1.5 spike.
    # Channel 1 (x = 0.5): v = 0.25, 0.375, 0.4375, 0.46875, never spikes.
    np.testing.assert_array_equal(_steps(module, [[1.0, 1.0]] * 4), [[0, 0], [1, 0], [0, 0], [1, 0]])


def test_nirtorch_runs_the_same_graph_with_our_node_map(tmp_path):
    path = tmp_path / "foreign.nir"
    subprocess.run([sys.executable, "-c", WRITE_FOREIGN_LIF, str(path)], check=True)
    ours = nir_to_module(path, dtype=torch.float64)
    theirs = nirtorch.nir_to_torch(nir.read(str(path)), NODE_MAP, dtype=torch.float64)
    x = torch.tensor([[1.0, 3.0]], dtype=torch.float64)
    np.testing.assert_array_equal(run_steps(theirs, [x] * 5).numpy(), run_steps(ours, [x] * 5).numpy())


def test_threshold_test_metadata_switches_to_greater_equal():
    one = np.ones(1)
    lif = nir.LIF(tau=2 * one, r=one, v_leak=0 * one, v_threshold=one, v_reset=0 * one,
                  metadata={"spikestack.threshold_test": ">="})
    module = nir_to_module(nir.NIRGraph.from_list(lif), dtype=torch.float64)
    # x = 2: v = 1 ≥ 1 spikes at once and resets, every step (NIR's > would give 0, 1, 0, 1)
    np.testing.assert_array_equal(_steps(module, [[2.0]] * 4), [[1], [1], [1], [1]])


def test_if_li_cubalif_threshold_affine_by_hand():
    one = np.ones(1)
    if_graph = nir.NIRGraph.from_list(nir.IF(r=one, v_threshold=one, v_reset=0 * one))
    np.testing.assert_array_equal(_steps(nir_to_module(if_graph, dtype=torch.float64), [[0.6]] * 4),
                                  [[0], [1], [0], [1]])  # v = 0.6, 1.2 spike → 0, 0.6, 1.2
    li_graph = nir.NIRGraph.from_list(nir.LI(tau=2 * one, r=one, v_leak=0 * one))
    np.testing.assert_array_equal(_steps(nir_to_module(li_graph, dtype=torch.float64), [[1.0]] * 3),
                                  [[0.5], [0.75], [0.875]])
    cuba = nir.CubaLIF(tau_syn=2 * one, tau_mem=2 * one, r=one, v_leak=0 * one, v_threshold=one, v_reset=0 * one,
                       w_in=one)
    # i = 1, 1.5, 1.75; v = 0.5, 1.0 (not > 1), 1.375 spike
    np.testing.assert_array_equal(_steps(nir_to_module(nir.NIRGraph.from_list(cuba), dtype=torch.float64),
                                         [[2.0]] * 3), [[0], [0], [1]])
    chain = nir.NIRGraph.from_list(nir.Affine(weight=np.array([[1.0, -1.0]]), bias=np.array([0.5])),
                                   nir.Scale(scale=np.array([2.0])), nir.Threshold(threshold=np.array([1.0])))
    # 2·(x0 - x1 + 0.5): 2.0 > 1 → 1; 1.0 is not > 1 → 0. The bias is used (nirtorch 2.6's default drops it).
    np.testing.assert_array_equal(_steps(nir_to_module(chain, dtype=torch.float64), [[1.0, 0.5], [0.5, 0.5]]),
                                  [[1], [0]])


def test_delay_loop_accumulates():
    one = np.ones(1)
    graph = nir.NIRGraph(
        nodes={"in": nir.Input(input_type={"input": np.array([1])}), "acc": nir.Scale(scale=one),
               "d": nir.Delay(delay=one), "out": nir.Output(output_type={"output": np.array([1])})},
        edges=[("in", "acc"), ("acc", "d"), ("d", "acc"), ("acc", "out")])
    np.testing.assert_array_equal(_steps(nir_to_module(graph, dtype=torch.float64), [[1.0], [2.0], [3.0]]),
                                  [[1.0], [3.0], [6.0]])  # y_t = x_t + y_{t-1}


def test_cycle_without_delay_is_a_format_error():
    one = np.ones(1)
    graph = nir.NIRGraph(
        nodes={"in": nir.Input(input_type={"input": np.array([1])}), "a": nir.Scale(scale=one),
               "b": nir.Scale(scale=one), "out": nir.Output(output_type={"output": np.array([1])})},
        edges=[("in", "a"), ("a", "b"), ("b", "a"), ("b", "out")])
    with pytest.raises(NIRFormatError, match="node 'a': cycle without state"):
        nir_to_module(graph)


def test_unmapped_type_names_the_node():
    pool = nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([1, 1]), padding=np.array([0, 0]))
    graph = nir.NIRGraph(nodes={"in": nir.Input(input_type={"input": np.array([1, 2, 2])}), "sumpool2d": pool,
                                "out": nir.Output(output_type={"output": np.array([1, 1, 1])})},
                         edges=[("in", "sumpool2d"), ("sumpool2d", "out")], type_check=False)
    with pytest.raises(NIRFormatError, match="node 'sumpool2d': type SumPool2d has no torch mapping"):
        nir_to_module(graph)


def test_nested_graph_node_runs_with_its_own_state(tmp_path):
    one = np.ones(1)
    inner = nir.NIRGraph.from_list(nir.Scale(scale=2 * one), nir.IF(r=one, v_threshold=one, v_reset=0 * one))
    outer = nir.NIRGraph(nodes={"in": nir.Input(input_type={"input": np.array([1])}), "block": inner,
                                "out": nir.Output(output_type={"output": np.array([1])})},
                         edges=[("in", "block"), ("block", "out")])
    nir.write(str(tmp_path / "nested.nir"), outer)
    module = nir_to_module(tmp_path / "nested.nir", dtype=torch.float64)
    # IF sees 2x = 0.8 per step: v = 0.8, 1.6 spike → 0, 0.8, 1.6 spike
    np.testing.assert_array_equal(_steps(module, [[0.4]] * 4), [[0], [1], [0], [1]])
