"""Take a model out of PyTorch: export to ONNX, run it in ONNX Runtime, check it, quantize it to int8.

`torch.onnx.export(..., dynamo=True)` traces the model with torch.export and writes an ONNX graph with a
dynamic batch dimension. What is exported is the model you would ship: a masked model is exported from a
copy whose masks are made permanent, and fake-quantized layers are stripped (the weights keep their grid).
ONNX Runtime then runs the file on the CPU with a fixed number of threads, and its outputs are compared with
PyTorch's (float paths must agree within FLOAT_ATOL). `quantize_onnx` turns a float ONNX model into int8:
dynamic quantization (weights int8, activations quantized on the fly) for MLPs, static quantization with a
calibration set (activation ranges measured once) for CNNs. Export works on a CPU copy, so a model that sits on a
GPU exports as it is (the notes say it was copied to the CPU). See notebooks/11_deploy.ipynb.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import onnx
import onnxruntime as ort
import torch
from torch import nn

from minprune.checkpoint import atomic_write
from minprune.deploy.deployable import check_deployable, deployable_copy
from minprune.deploy.onnx_int8 import is_weight_only
from minprune.devices import model_device
from minprune.files import path_arg
from minprune.validate import check_flag, finite_number, model_arg, positive_int

FORMATS = ("onnx",)
FLOAT_ATOL = 1e-4  # max |ONNX - PyTorch| on logits for a float export
INPUT_NAME, OUTPUT_NAME = "input", "logits"


class ExportError(RuntimeError):
    """The exported model does not reproduce the PyTorch model. See notebooks/11_deploy.ipynb."""


@dataclass
class Exported:
    """An ONNX model plus what was done to get it (`notes`) and how far its outputs are from PyTorch's.

    See notebooks/11_deploy.ipynb.
    """

    proto: onnx.ModelProto
    notes: list[str] = field(default_factory=list)
    max_abs_diff: float | None = None
    path: Path | None = None

    @property
    def bytes(self) -> int:
        return self.proto.ByteSize()


def check_format(format: str) -> str:
    """Return `format` if minprune can export to it, else raise ValueError naming the choices.

    See notebooks/11_deploy.ipynb.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    return format


def _check_example_type(example) -> None:
    """TypeError/ValueError unless `example` is None or a floating-point tensor holding a batch (dim 0 >= 1)."""
    if example is None:
        return
    if not isinstance(example, torch.Tensor):
        raise TypeError(f"example must be a tensor, a batch of inputs such as torch.randn(2, *model.input_shape), "
                        f"got {type(example).__name__} {example!r:.60}")
    if example.dim() == 0 or len(example) == 0:
        raise ValueError(f"example must be a batch of inputs (batch, ...) with at least one example, got shape "
                         f"{tuple(example.shape)}")


@torch.no_grad()
def _check_example_runs(model: nn.Module, x: torch.Tensor) -> None:
    """ValueError naming `example` unless `model` (in eval mode, its flag put back) runs on the batch `x`: a wrong
    shape or dtype is refused here, not as a TorchExportError from deep inside the exporter."""
    was_training = model.training
    model.eval()
    try:
        model(x)
    except Exception as exc:  # noqa: BLE001 - whatever the model raises on this input, the input is the cause
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise ValueError(f"example of shape {tuple(x.shape)} ({x.dtype}) does not run through the model: {first}; "
                         f"pass a batch shaped (batch, *model.input_shape) in the model's dtype") from exc
    finally:
        model.train(was_training)


def _check_float32(model: nn.Module) -> None:
    """ValueError unless `model`'s floating tensors are all float32: ONNX Runtime runs the exported file (and the
    check) on float32 inputs, so a float16, bfloat16 or float64 graph would fail inside it. (Not `float_model`:
    its 'float32 or float64' would be wrong here.)"""
    for key, t in [*model.named_parameters(), *model.named_buffers()]:
        if t.is_floating_point() and t.dtype != torch.float32:
            raise ValueError(f"export_onnx exports float32 models (ONNX Runtime runs the file on float32 inputs); "
                             f"model has a {t.dtype} tensor ({key!r}): call model.float() first, or export a "
                             f"float32 copy: copy.deepcopy(model).float()")


def _example(model: nn.Module, example, batch: int = 2) -> torch.Tensor:
    if example is not None:
        return example.detach().cpu()
    shape = getattr(model, "input_shape", None)
    if shape is None:
        raise ValueError("pass example=<input tensor>; the model does not record an input_shape")
    return torch.randn(batch, *shape)  # batch 2: a batch of 1 would be specialised instead of kept dynamic


def _strip_debug_info(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Drop the exporter's per-node debug metadata (stack traces with local file paths): a third of the bytes."""
    for node in proto.graph.node:
        del node.metadata_props[:]
    for info in list(proto.graph.value_info) + list(proto.graph.input) + list(proto.graph.output):
        del info.metadata_props[:]
    for init in proto.graph.initializer:
        del init.metadata_props[:]
    del proto.graph.value_info[:]  # intermediate shape annotations: runtimes infer them again
    return proto


def to_onnx(model: nn.Module, *, example: torch.Tensor | None = None) -> onnx.ModelProto:
    """The ONNX graph of a plain float model, with a dynamic batch dimension (input 'input', output 'logits').

    Uses torch.onnx.export(dynamo=True); takes several seconds. `example` (default: 2 random inputs of
    `model.input_shape`) is run through the model first, so a batch of the wrong shape or dtype is refused with a
    ValueError naming it. See notebooks/11_deploy.ipynb.
    """
    model_arg(model)
    _check_example_type(example)
    x = _example(model, example)
    _check_example_runs(model, x)
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    program = torch.onnx.export(model, (x,), dynamo=True, dynamic_shapes=({0: batch},),
                                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], verbose=False,
                                optimize=True)
    return _strip_debug_info(program.model_proto)


def write_onnx(proto: onnx.ModelProto, path) -> Path:
    """Write an ONNX model atomically (temp file + rename); returns the path. See notebooks/11_deploy.ipynb."""
    data = proto.SerializeToString()
    return atomic_write(path, lambda f: f.write(data))


def export_onnx(model: nn.Module, path=None, *, example: torch.Tensor | None = None, check: bool = True,
                atol: float = FLOAT_ATOL, threads: int = 1) -> Exported:
    """Export a dense, masked, compacted or fake-quantized model to ONNX, check it in ONNX Runtime, write it.

    check=True runs both models on `example` (default: 8 random inputs) and raises ExportError when the
    logits differ by more than `atol`. `path` (optional) is written atomically. The model must be float32 (ONNX
    Runtime runs float32; a float16, bfloat16 or float64 model is refused: export `copy.deepcopy(model).float()`).
    Every argument is checked before the model is copied, and the example is run through the copy before export.
    See notebooks/11_deploy.ipynb.
    """
    check_deployable(model)
    _check_float32(model)
    path = None if path is None else path_arg(path)
    _check_example_type(example)
    check_flag(check, "check")
    finite_number(atol, "atol", low=0)
    positive_int(threads, "threads")
    plain, notes = deployable_copy(model)
    proto = to_onnx(plain, example=example)
    result = Exported(proto, notes)
    if check:
        x = example if example is not None else _example(plain, None, batch=8)
        result.max_abs_diff = max_abs_diff(plain, session(proto, threads=threads), x)
        if result.max_abs_diff > atol:
            raise ExportError(f"ONNX Runtime and PyTorch disagree: max |difference| {result.max_abs_diff:.2e} "
                              f"> tolerance {atol:.0e}")
    if path is not None:
        result.path = write_onnx(proto, path)
    return result


def session(model, *, threads: int = 1) -> ort.InferenceSession:
    """An ONNX Runtime CPU session for an ONNX model (ModelProto, bytes or path) with `threads` intra-op threads.

    A model with int8 weights only (`onnx_int8.int8_weights_onnx`) gets its weights dequantized once, here.
    See notebooks/11_deploy.ipynb.
    """
    positive_int(threads, "threads")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    if isinstance(model, (str, Path)):
        model = onnx.load(str(model))
    elif isinstance(model, bytes):
        model = onnx.load_from_string(model)
    if is_weight_only(model):  # lets constant folding turn the int8 weights into float ones at load time
        options.add_session_config_entry("session.disable_quant_qdq", "1")
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def run_session(sess: ort.InferenceSession, x: torch.Tensor) -> torch.Tensor:
    """Run an ONNX Runtime session on a batch and return its first output as a tensor. See notebooks/11_deploy.ipynb."""
    name = sess.get_inputs()[0].name
    return torch.from_numpy(sess.run(None, {name: x.detach().cpu().float().numpy()})[0])


@torch.no_grad()
def max_abs_diff(model: nn.Module, sess: ort.InferenceSession, x: torch.Tensor) -> float:
    """max |ONNX Runtime output - PyTorch output| on the batch `x` (model evaluated in eval mode).

    See notebooks/11_deploy.ipynb.
    """
    was_training = model.training
    model.eval()
    expected = model(x.to(model_device(model))).cpu()  # ONNX Runtime's output is on the CPU
    model.train(was_training)
    return float((run_session(sess, x) - expected).abs().max())


def _has_conv(proto: onnx.ModelProto) -> bool:
    return any(node.op_type == "Conv" for node in proto.graph.node)


class _Calibration:
    """The CalibrationDataReader of onnxruntime.quantization: batches of calibration inputs, then None."""

    def __init__(self, name: str, x: torch.Tensor, batch_size: int = 32):
        self.batches = iter([{name: x[i:i + batch_size].float().numpy()} for i in range(0, len(x), batch_size)])

    def get_next(self):
        return next(self.batches, None)


def quantize_onnx(proto: onnx.ModelProto, calibration: torch.Tensor | None = None, *, method: str = "auto",
                  op_types: list[str] | None = None, path=None) -> onnx.ModelProto:
    """An int8 copy of a float ONNX model made with onnxruntime.quantization (weights int8, per channel).

    method: 'dynamic' (activations quantized at run time; for MLPs), 'static' (activation ranges from the
    `calibration` inputs, a float tensor of examples; for CNNs), or 'auto' (static if the graph has a Conv).
    op_types: which ONNX ops to quantize (default: all that ORT can). See notebooks/11_deploy.ipynb.
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    if method not in ("auto", "dynamic", "static"):
        raise ValueError(f"method must be 'auto', 'dynamic' or 'static', got {method!r}")
    if method == "auto":
        method = "static" if _has_conv(proto) else "dynamic"
    if method == "static" and (not isinstance(calibration, torch.Tensor) or len(calibration) == 0):
        raise ValueError("static int8 quantization needs calibration data: pass calibration=<a float tensor of "
                         "example inputs, e.g. splits.sample(256, 'train')[0]> (or use method='dynamic')")
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))  # ORT's pre-processing hints
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        onnx.save(proto, src)
        if method == "dynamic":
            quantize_dynamic(src, dst, weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=op_types)
        else:
            reader = _Calibration(proto.graph.input[0].name, calibration)
            # QOperator format (QLinearConv, QGemm) is a smaller file than QDQ pairs and runs the same kernels.
            # On an AVX2 CPU without VNNI, QDQ vs QOperator, u8u8 vs u8s8 and per-tensor vs per-channel all ran
            # LeNet-5 within noise of each other (1.1-1.4x dense PyTorch): the int8 convolution of the 1-channel
            # input dominates. For int8 files at float speed see onnx_int8.int8_weights_onnx.
            quantize_static(src, dst, reader, quant_format=QuantFormat.QOperator, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=op_types)
        quantized = _strip_debug_info(onnx.load(dst))
    if path is not None:
        write_onnx(quantized, path)
    return quantized


def onnx_accuracy(sess: ort.InferenceSession, loader) -> float:
    """Top-1 accuracy (%) of an ONNX Runtime session over a loader of (x, y) batches. See notebooks/11_deploy.ipynb."""
    correct = total = 0
    for x, y in loader:
        correct += int((run_session(sess, x).argmax(1) == y).sum())
        total += len(y)
    return 100.0 * correct / total
