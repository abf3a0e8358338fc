"""Convolution, pooling and flatten (NIR `Conv1d`, `Conv2d`, `SumPool2d`, `AvgPool2d`, `Flatten`) as matrices over
the flattened neurons, for `from_nir`'s foreign (delayed-timing) graphs.

Why unrolled: a core projection is a weight matrix [n_dst, n_src] over neuron indices, and every backend
(reference executor, torch, Lava `Dense`) already runs such matrices bit-exactly. Expanding the shared kernel into
that matrix makes a convolution one more projection, with nothing new downstream; the matrix is sparse in
practice, and partitioning counts only its non-zero synapses (`compiler/passes/partition.py`), so the cores it
needs are what a conv layer stored synapse by synapse would need.

Neurons are flattened in C-order of NIR's (C, H, W) / (C, N) shapes, which is also torch's `flatten` order, so
`Flatten` is the identity on the neuron vector and only its shape changes. The arithmetic is torch's:
out[co, oy, ox] = bias[co] + Σ w[co, ci', ky, kx] · x[g·C_in/G + ci', oy·s_y − p_y + ky·d_y, ox·s_x − p_x + kx·d_x]
(zero outside the input), with 'same' padding split as torch does (the odd pixel on the high side).
Sum pooling is a grouped convolution with a kernel of ones, average pooling the same scaled by 1/(k_h·k_w)
(torch's default count_include_pad=True).
"""

from __future__ import annotations

import nir
import numpy as np

from spikestack.errors import NIRFormatError

__all__ = ["LINEAR_NODES", "compose", "conv_matrix", "flatten", "fold_columns", "lower_linear", "node_shape"]

LINEAR_NODES = (nir.Conv1d, nir.Conv2d, nir.SumPool2d, nir.AvgPool2d)  # Flatten only reshapes: `flatten`
Shape = tuple[int, ...]


def _pair(name: str, field_name: str, value: object) -> tuple[int, int]:
    a = np.asarray(value).reshape(-1)
    if a.size == 1:
        a = np.repeat(a, 2)
    if a.size != 2 or not np.all(np.isfinite(a.astype(np.float64))) or not np.all(a == np.round(a)):
        raise NIRFormatError(f"node {name!r}: field {field_name!r} must be one or two whole numbers, got "
                             f"{np.asarray(value).tolist()!r:.60}")
    return int(a[0]), int(a[1])


def _padding(name: str, padding: object, kernel: tuple[int, int], dilation: tuple[int, int]
             ) -> tuple[tuple[int, int], tuple[int, int]]:
    """(low, high) zero padding per spatial axis; 'same' as torch: total d·(k−1), the odd one on the high side."""
    if isinstance(padding, (str, bytes)):
        mode = padding.decode() if isinstance(padding, bytes) else padding
        if mode == "valid":
            return (0, 0), (0, 0)
        if mode == "same":
            totals = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
            return tuple((t // 2, t - t // 2) for t in totals)  # type: ignore[return-value]
        raise NIRFormatError(f"node {name!r}: padding must be 'same', 'valid' or numbers, got {mode!r:.30}")
    py, px = _pair(name, "padding", padding)
    return (py, py), (px, px)


def conv_matrix(weight: np.ndarray, in_shape: tuple[int, int, int], *, stride: tuple[int, int] = (1, 1),
                padding: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0)),
                dilation: tuple[int, int] = (1, 1), groups: int = 1, name: str = "conv"
                ) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The dense float64 matrix [C_out·H_o·W_o, C·H·W] of a 2-D convolution (weight [C_out, C/groups, k_h, k_w])
    and the output shape; entries outside the kernel's reach are 0."""
    c_in, h, w = in_shape
    c_out, c_per_group, kh, kw = weight.shape
    if groups < 1 or c_in % groups or c_out % groups or c_per_group * groups != c_in:
        raise NIRFormatError(f"node {name!r}: weight {list(weight.shape)} with groups={groups} needs "
                             f"{c_per_group * groups} input channels, its input has shape {list(in_shape)}")
    if min(stride) < 1 or min(dilation) < 1 or min(min(padding)) < 0:
        raise NIRFormatError(f"node {name!r}: stride {stride} and dilation {dilation} must be >= 1, padding "
                             f"{padding} >= 0")
    (pyl, pyh), (pxl, pxh) = padding
    ho = (h + pyl + pyh - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (w + pxl + pxh - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    if ho < 1 or wo < 1:
        raise NIRFormatError(f"node {name!r}: kernel {kh}x{kw} (dilation {dilation}, padding {padding}) does not "
                             f"fit its input of shape {list(in_shape)}")
    co, cil, ky, kx, oy, ox = np.meshgrid(np.arange(c_out), np.arange(c_per_group), np.arange(kh), np.arange(kw),
                                          np.arange(ho), np.arange(wo), indexing="ij")
    ci = (co // (c_out // groups)) * c_per_group + cil
    iy = oy * stride[0] - pyl + ky * dilation[0]
    ix = ox * stride[1] - pxl + kx * dilation[1]
    inside = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
    rows = ((co * ho + oy) * wo + ox)[inside]
    cols = ((ci * h + iy) * w + ix)[inside]
    out = np.zeros((c_out * ho * wo, c_in * h * w), np.float64)
    np.add.at(out, (rows, cols), np.asarray(weight, np.float64)[co, cil, ky, kx][inside])
    return out, (c_out, ho, wo)


def node_shape(node: nir.NIRNode, key: str) -> Shape | None:
    """A node's declared input or output shape (NIR's type inference fills them), or None."""
    types = node.input_type if key == "input" else node.output_type
    value = (types or {}).get(key)
    if value is None:
        return None
    return tuple(int(v) for v in np.asarray(value).reshape(-1))


def _spatial_input(name: str, node: nir.NIRNode, shape: Shape, channels: int | None, spatial_dims: int) -> Shape:
    """The (C, *spatial) input of a conv/pool node: the tracked shape, else the node's own declaration; shapes that
    disagree in size are refused by name."""
    size = int(np.prod(shape))
    # a conv's own input_type is not used: NIR 1.0.8 fills its channels with weight.shape[1], wrong when groups > 1
    candidates = [shape] if channels is not None else [shape, node_shape(node, "input")]
    if getattr(node, "input_shape", None) is not None and channels is not None:
        candidates.append((channels, *np.atleast_1d(np.asarray(node.input_shape)).astype(int).tolist()))
    fitting = [tuple(int(c) for c in cand) for cand in candidates if cand is not None and len(cand) == spatial_dims + 1]
    for cand in fitting:  # every declaration must agree with the source and with each other
        if int(np.prod(cand)) != size or cand != fitting[0]:
            raise NIRFormatError(f"node {name!r}: expects input of shape {list(cand)} ({int(np.prod(cand))} "
                                 f"values), its source has shape {list(fitting[0] if cand != fitting[0] else shape)} "
                                 f"({size} values)")
        if channels is not None and cand[0] != channels:
            raise NIRFormatError(f"node {name!r}: weight expects {channels} input channels, its input has shape "
                                 f"{list(cand)}")
    if fitting:
        return fitting[0]
    raise NIRFormatError(f"node {name!r}: cannot tell its {spatial_dims + 1}-D input shape from a source of shape "
                         f"{list(shape)}; give the node's input_shape or the Input node's full shape")


def flatten(name: str, node: nir.Flatten, shape: Shape) -> Shape:
    """NIR `Flatten`: the identity on the C-order neuron vector; only the tracked shape becomes 1-D."""
    size = int(np.prod(shape))
    declared = node_shape(node, "input")
    if declared is not None and int(np.prod(declared)) != size:
        raise NIRFormatError(f"node {name!r}: input_type {list(declared)} has {int(np.prod(declared))} values, "
                             f"its source {size}")
    return (size,)


def fold_columns(name: str, weight: np.ndarray, column_scale: np.ndarray | None) -> np.ndarray:
    """A NIR `Scale` between a spike source and this node: scales the matrix's columns (exact)."""
    if column_scale is None:
        return weight
    if column_scale.size not in (1, weight.shape[1]):
        raise NIRFormatError(f"node {name!r}: the Scale before it has {column_scale.size} values, its source "
                             f"{weight.shape[1]}")
    return weight * column_scale.reshape(1, -1)


def lower_linear(name: str, node: nir.NIRNode, shape: Shape) -> tuple[np.ndarray, np.ndarray, Shape]:
    """One of LINEAR_NODES over a source of `shape` → (weight [n_out, n_in], bias [n_out], output shape)."""
    if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
        in_shape = _spatial_input(name, node, shape, None, 2)
        kernel = _pair(name, "kernel_size", node.kernel_size)
        stride = _pair(name, "stride", node.stride)
        padding = _padding(name, node.padding, kernel, (1, 1))
        c = in_shape[0]
        ones = np.ones((c, 1, *kernel))
        if isinstance(node, nir.AvgPool2d):
            ones /= kernel[0] * kernel[1]
        weight, out = conv_matrix(ones, in_shape, stride=stride, padding=padding, groups=c, name=name)
        return weight, np.zeros(weight.shape[0]), out
    raw = np.asarray(node.weight, np.float64)
    if not np.all(np.isfinite(raw)):
        raise NIRFormatError(f"node {name!r}: field 'weight' holds NaN or inf")
    one_d = isinstance(node, nir.Conv1d)
    if raw.ndim != (3 if one_d else 4):
        raise NIRFormatError(f"node {name!r}: weight has shape {list(raw.shape)}, a {type(node).__name__} needs "
                             f"{3 if one_d else 4} dimensions")
    groups = int(node.groups)
    in_shape = _spatial_input(name, node, shape, raw.shape[1] * groups, 1 if one_d else 2)
    if one_d:  # a 2-D convolution over a height of 1
        raw, in_shape = raw[:, :, None, :], (in_shape[0], 1, in_shape[1])
        stride, dilation = (1, _pair(name, "stride", node.stride)[0]), (1, _pair(name, "dilation", node.dilation)[0])
        pad = node.padding if isinstance(node.padding, (str, bytes)) else (0, _pair(name, "padding", node.padding)[0])
    else:
        stride, dilation, pad = _pair(name, "stride", node.stride), _pair(name, "dilation", node.dilation), node.padding
    padding = _padding(name, pad, raw.shape[2:], dilation)
    weight, out = conv_matrix(raw, in_shape, stride=stride, padding=padding, dilation=dilation, groups=groups,
                              name=name)
    bias = np.zeros(raw.shape[0]) if node.bias is None else np.asarray(node.bias, np.float64).reshape(-1)
    if bias.size == 1:
        bias = np.repeat(bias, raw.shape[0])
    if bias.shape != (raw.shape[0],) or not np.all(np.isfinite(bias)):
        raise NIRFormatError(f"node {name!r}: bias must hold {raw.shape[0]} finite values (one per output channel), "
                             f"got shape {list(bias.shape)}")
    per_pixel = int(np.prod(out[1:]))
    return weight, np.repeat(bias, per_pixel), (out[0], out[2]) if one_d else out


def compose(first: tuple[str, np.ndarray, np.ndarray], name: str, weight: np.ndarray, bias: np.ndarray
            ) -> tuple[str, np.ndarray, np.ndarray]:
    """Two linear maps in a row (pool → conv, flatten → Affine) as one projection named after the first:
    W₂(W₁x + b₁) + b₂. Exact algebra; in float64 a pool of ones times a kernel sums a few products."""
    first_name, w1, b1 = first
    if weight.shape[1] != w1.shape[0]:
        raise NIRFormatError(f"node {name!r}: takes {weight.shape[1]} inputs, its source {first_name!r} gives "
                             f"{w1.shape[0]}")
    return first_name, weight @ w1, weight @ b1 + bias
