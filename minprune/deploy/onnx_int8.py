"""Int8 *weights* in an ONNX file, computed in float: the smallest file that runs at float speed.

Full int8 inference (`export.quantize_onnx`: QLinearConv, QGemm) only pays off where int8 kernels beat float
ones. Measured on a 2-core AMD EPYC with AVX2 but no VNNI (bench/deploy.py), ONNX Runtime's int8 convolution
of LeNet-5's 1-channel input took ~4x longer than the float one, and quantizing breaks the float graph's
fused NCHWc conv -> ReLU -> pool chain: the int8 LeNet-5 ran *slower* than the float one. Weight-only int8
keeps the 4x smaller file and the float speed: every Conv/Gemm/MatMul weight is stored as int8 with one
float32 scale per output channel (symmetric, zero point 0) and a DequantizeLinear node in front of it. ONNX
Runtime turns those constants back into float once, when the session is created (`export.session` sets
"session.disable_quant_qdq" so its constant folding does that), and then runs the same kernels as the
float model. The arithmetic is float; only the stored weights (and their memory traffic) are 8-bit.
See notebooks/11_deploy.ipynb.
"""

from __future__ import annotations

import copy

import numpy as np
import onnx
from onnx import helper, numpy_helper

OPS = ("Conv", "Gemm", "MatMul")


def _channel_axis(node: onnx.NodeProto, ndim: int) -> int:
    """Axis of the output channels of a weight: 0 for Conv (out, in, kh, kw) and Gemm with transB=1
    (out, in); 1 for MatMul and Gemm without transB (in, out)."""
    if node.op_type == "Conv":
        return 0
    trans_b = any(a.name == "transB" and a.i == 1 for a in node.attribute)
    return 0 if node.op_type == "Gemm" and trans_b else ndim - 1


def quantize_weight(W: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-channel int8: (q int8 in [-127, 127], scale float32 per channel on `axis`), W ~ q * scale.

    See notebooks/11_deploy.ipynb.
    """
    reduce = tuple(i for i in range(W.ndim) if i != axis)
    scale = (np.abs(W).max(axis=reduce) / 127.0).astype(np.float32)
    scale[scale == 0] = 1.0  # an all-zero channel (pruned) stays exactly zero
    shape = [1] * W.ndim
    shape[axis] = -1
    q = np.clip(np.rint(W / scale.reshape(shape)), -127, 127).astype(np.int8)
    return q, scale


def int8_weights_onnx(proto: onnx.ModelProto, *, op_types=OPS) -> onnx.ModelProto:
    """A copy of a float ONNX model whose `op_types` weights are stored int8 (DequantizeLinear in front).

    Biases, activations and the arithmetic stay float. See the module docstring and notebooks/11_deploy.ipynb.
    """
    unknown = set(op_types) - set(OPS)
    if unknown:
        raise ValueError(f"op_types may contain {', '.join(OPS)}; got {sorted(unknown)}")
    out = copy.deepcopy(proto)
    inits = {init.name: init for init in out.graph.initializer}
    dequantize = []
    for node in out.graph.node:
        name = node.input[1] if node.op_type in op_types and len(node.input) > 1 else None
        if name not in inits or inits[name].data_type != onnx.TensorProto.FLOAT:
            continue
        W = numpy_helper.to_array(inits.pop(name))
        axis = _channel_axis(node, W.ndim)
        q, scale = quantize_weight(W, axis)
        out.graph.initializer.remove(next(i for i in out.graph.initializer if i.name == name))
        out.graph.initializer.extend([numpy_helper.from_array(q, f"{name}_int8"),
                                      numpy_helper.from_array(scale, f"{name}_scale"),
                                      numpy_helper.from_array(np.zeros_like(scale, dtype=np.int8), f"{name}_zero")])
        dequantize.append(helper.make_node("DequantizeLinear", [f"{name}_int8", f"{name}_scale", f"{name}_zero"],
                                           [name], name=f"{name}_dequantize", axis=axis))
    if not dequantize:
        raise ValueError(f"the model has no float {'/'.join(op_types)} weights to store as int8")
    nodes = dequantize + list(out.graph.node)  # constants first: the graph stays topologically sorted
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out


def is_weight_only(proto: onnx.ModelProto) -> bool:
    """True for a graph that dequantizes constant weights and never quantizes activations (see above)."""
    ops = {node.op_type for node in proto.graph.node}
    return "DequantizeLinear" in ops and not ops & {"QuantizeLinear", "QLinearConv", "QGemm", "QLinearMatMul",
                                                     "DynamicQuantizeLinear", "MatMulInteger", "ConvInteger"}
