"""NIR Conv1d, Conv2d, SumPool2d, AvgPool2d, Flatten unrolled into projections (compiler/conv.py): equal to torch's
convolution exactly, counted by non-zero synapses in partitioning, and the NIR paper's CNN and recurrent network
through compile → reference → float reference (torch on the CNN: slow)."""

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from spikestack.compiler.conv import lower_linear
from spikestack.compiler.from_nir import from_nir
from spikestack.compiler.pipeline import compile_graph
from spikestack.runtime import reference, torch_fakequant
from spikestack.runtime.float_reference import agreement, run_float

from spikestack.errors import NIRFormatError
from tests.fixtures.producers.paper_nets import cnn, event_frames, recurrent

RNG = np.random.default_rng(0)


def _dyadic(shape):  # multiples of 1/16: sums of binary inputs are exact in float64, in any order
    return np.round(RNG.normal(size=shape) * 16) / 16


@pytest.mark.parametrize("c_in,c_out,h,w,k,stride,padding,dilation,groups", [
    (2, 4, 9, 7, (3, 3), 1, 1, 1, 1), (4, 6, 10, 11, (3, 3), 2, (1, 2), (2, 1), 2),
    (3, 3, 8, 8, (2, 2), 1, "same", 1, 3), (2, 4, 6, 6, (2, 3), (1, 2), "valid", 1, 1)])
def test_conv2d_matrix_equals_torch_conv2d_exactly(c_in, c_out, h, w, k, stride, padding, dilation, groups):
    weight, bias = _dyadic((c_out, c_in // groups, *k)), _dyadic(c_out)
    node = nir.Conv2d(input_shape=(h, w), weight=weight, stride=stride, padding=padding, dilation=dilation,
                      groups=groups, bias=bias)
    matrix, offset, out_shape = lower_linear("conv", node, (c_in, h, w))
    x = (RNG.random((c_in, h, w)) < 0.5).astype(np.float64)
    want = F.conv2d(torch.tensor(x)[None], torch.tensor(weight), torch.tensor(bias), stride=stride,
                    padding=padding, dilation=dilation, groups=groups)[0].numpy()
    assert out_shape == want.shape
    np.testing.assert_array_equal(matrix @ x.reshape(-1) + offset, want.reshape(-1))
    assert int((matrix != 0).sum(1).max()) <= (c_in // groups) * k[0] * k[1]  # a kernel's taps per neuron


def test_conv1d_and_pooling_equal_torch_exactly():
    weight = _dyadic((3, 2, 3))
    node = nir.Conv1d(input_shape=10, weight=weight, stride=2, padding=1, dilation=1, groups=1, bias=np.zeros(3))
    m, b, shape = lower_linear("c1", node, (2, 10))
    x = (RNG.random((2, 10)) < 0.5).astype(np.float64)
    want = F.conv1d(torch.tensor(x)[None], torch.tensor(weight), stride=2, padding=1)[0].numpy()
    assert shape == want.shape == (3, 5)
    np.testing.assert_array_equal(m @ x.reshape(-1) + b, want.reshape(-1))
    x = (RNG.random((3, 6, 6)) < 0.5).astype(np.float64)
    pool = dict(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([1, 1]))
    m, _, shape = lower_linear("sum", nir.SumPool2d(**pool), (3, 6, 6))
    want = F.avg_pool2d(torch.tensor(x)[None], 2, 2, 1, divisor_override=1)[0].numpy()
    assert shape == want.shape == (3, 4, 4)
    np.testing.assert_array_equal(m @ x.reshape(-1), want.reshape(-1))
    m, _, _ = lower_linear("avg", nir.AvgPool2d(**pool), (3, 6, 6))  # 1/k² = 1/4: exact
    np.testing.assert_array_equal(m @ x.reshape(-1), F.avg_pool2d(torch.tensor(x)[None], 2, 2, 1)[0].numpy().ravel())


def _one_conv_graph(weight, input_shape=(1, 4, 4), conv_input=(4, 4)):
    out = (weight.shape[0], 2, 2)
    return nir.NIRGraph.from_list(
        nir.Input(input_type={"input": np.array(input_shape)}),
        nir.Conv2d(input_shape=conv_input, weight=weight, stride=1, padding=0, dilation=1, groups=1,
                   bias=np.zeros(weight.shape[0])),
        nir.LIF(tau=np.full(out, 4e-4), r=np.ones(out), v_leak=np.zeros(out), v_threshold=np.ones(out),
                v_reset=np.zeros(out)),
        nir.Output(output_type={"output": np.array(out)}), type_check=False)


def test_partition_counts_only_non_zero_synapses():
    # 1×4×4 → 3×3 kernel, no padding → 1×2×2 neurons, each with 9 synapses (8 bits): 4·9·8 = 288 bits, and the
    # 16 input pixels as axons; dense rows would have been 4·16·8 = 512 bits
    program = compile_graph(_one_conv_graph(np.ones((1, 1, 3, 3))), "generic")
    (core,) = program.cores
    assert (core.pop, core.lo, core.hi, core.synaptic_memory_bits, core.axons_in) == ("lif", 0, 4, 288, 16)


def test_bad_conv_inputs_name_the_node():
    with pytest.raises(NIRFormatError, match=r"node 'conv2d': expects input of shape \[1, 5, 5\] \(25 values\), "
                                             r"its source has shape .* \(16 values\)"):
        from_nir(_one_conv_graph(np.ones((1, 1, 3, 3)), conv_input=(5, 5)))
    with pytest.raises(NIRFormatError, match=r"node 'conv2d': weight expects 2 input channels"):
        from_nir(_one_conv_graph(np.ones((1, 2, 3, 3)), input_shape=(1, 4, 4)))
    graph = _one_conv_graph(np.ones((1, 1, 3, 3)))
    graph.nodes["conv2d"] = nir.I(r=np.ones(4))
    with pytest.raises(NIRFormatError, match=r"node 'conv2d': type I is not supported .*Conv2d, SumPool2d"):
        from_nir(graph)


def test_paper_cnn_compiles_small_and_matches_the_float_reference():
    program = compile_graph(cnn(), "loihi1")
    # conv1 = 18 taps × 8 bits per neuron → 1024-neuron cap; 4,624 neurons → 5 balanced cores of 924-925
    assert [c.hi - c.lo for c in program.cores if c.pop == "lif1"] == [925, 925, 924, 925, 925]
    assert max(c.axons_in for c in program.cores) <= 4096
    x = event_frames(2, 20, (2, 34, 34), 0.1)
    ref = reference.run(program, x)
    assert int(ref.spikes["lif1"].sum()) > 1000 and int(ref.spikes["lif3"].sum()) > 5  # real activity
    agree = agreement(program, ref, run_float(from_nir(cnn()), x))
    assert agree["raster_agreement"] >= 0.99


@pytest.mark.slow
def test_paper_cnn_torch_equals_reference():  # ~40 s: torch runs the 4,624 × 2,312 unrolled matrix densely
    program = compile_graph(cnn(), "loihi1")
    x = event_frames(2, 20, (2, 34, 34), 0.1)
    ref, tor = reference.run(program, x), torch_fakequant.run(program, x)
    for name, spikes in ref.spikes.items():
        np.testing.assert_array_equal(spikes, tor.spikes[name])


def test_paper_recurrent_network_12_in_7_out():
    program = compile_graph(recurrent(), "loihi1")
    assert program.host_input.size == 12 and program.populations[-1].size == 7
    x = event_frames(3, 30, (12,), 0.3)
    ref, tor = reference.run(program, x), torch_fakequant.run(program, x)
    for name, spikes in ref.spikes.items():
        np.testing.assert_array_equal(spikes, tor.spikes[name])
    assert int(ref.spikes["lif_out"].sum()) > 10
    assert agreement(program, ref, run_float(from_nir(recurrent()), x))["raster_agreement"] >= 0.99
