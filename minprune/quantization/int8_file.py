"""A compact, safe file for int8 models: int8 weights, their scales and zero points, and how to rebuild the model.

`torch.save(int8_model.state_dict())` works but wastes bytes: each quantized tensor stores its per-channel
scales as float64 and zero points as int64, packed Linear weights are pickled as opaque objects, and every
tensor becomes its own record in the zip file. Here every tensor of the state_dict is split into plain parts
(integer values, scales, zero points, biases), the parts are concatenated into one flat tensor per dtype, and a
small plain-Python `layout` says where each part lives:

    {"format", "recipe": {description, method, engine, per_channel}, "layout": [...], "blobs": {dtype: 1-D tensor},
     "sha256"}

Loading uses `torch.load(weights_only=True)` (no code runs), rebuilds the float model from its description,
re-creates the same int8 graph (a throw-away calibration on zeros), then loads the stored values strictly:
the loaded model gives exactly the outputs of the saved one. A file made with an engine this PyTorch lacks (an
'onednn' file from an x86 PC on an ARM Mac) is re-packed, with a warning, for the engine `engine='auto'` picks
here: the same int8 values and scales on other kernels, so outputs close to the saving machine's, not identical.
Per-channel scales are kept as float32 when that is exact (they are computed in float32) and as float64
otherwise. See notebooks/08_quantization.ipynb.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict

import torch

from minprune.files import (
    CheckpointError,
    atomic_write,
    check_model_size,
    count_elements,
    path_arg,
    read_torch_file,
    refusing,
    seal,
)
from minprune.models import from_description
from minprune.quantization import engines
from minprune.quantization.engines import using_engine
from minprune.quantization.int8 import dynamic_int8, static_int8
from minprune.quantization.int8_modules import Int8Model

FORMAT = "minprune-int8/2"
_DTYPES = {str(d).removeprefix("torch."): d for d in (torch.int8, torch.uint8, torch.int32, torch.int64,
                                                      torch.float32, torch.float64)}
_QDTYPES = {torch.qint8: torch.int8, torch.quint8: torch.uint8, torch.qint32: torch.int32}


class _Packer:
    """Collects 1-D parts per dtype and returns (dtype name, offset, shape) references to them."""

    def __init__(self):
        self.parts: dict[str, list[torch.Tensor]] = {}
        self.sizes: dict[str, int] = {}

    def add(self, t: torch.Tensor) -> list:
        name = str(t.dtype).removeprefix("torch.")
        if name not in _DTYPES:
            raise ValueError(f"cannot store a {t.dtype} tensor in an int8 file")
        offset = self.sizes.get(name, 0)
        self.parts.setdefault(name, []).append(t.detach().cpu().reshape(-1))
        self.sizes[name] = offset + t.numel()
        return [name, offset, list(t.shape)]

    def blobs(self) -> dict[str, torch.Tensor]:
        return {name: torch.cat(parts) for name, parts in self.parts.items()}


def _scales(s: torch.Tensor) -> torch.Tensor:
    """float32 if that holds the float64 scales exactly (they are computed in float32), else float64."""
    return s.float() if torch.equal(s.float().double(), s) else s


def _pack_quantized(q: torch.Tensor, packer: _Packer) -> dict:
    values = q.int_repr()
    entry = {"kind": "qtensor", "qdtype": str(q.dtype).removeprefix("torch."), "values": packer.add(values)}
    if q.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        zero_points = q.q_per_channel_zero_points().to(values.dtype)  # zero points lie in the values' range
        entry.update(axis=q.q_per_channel_axis(), scales=packer.add(_scales(q.q_per_channel_scales())),
                     zero_points=packer.add(zero_points))
    else:
        entry.update(scale=q.q_scale(), zero_point=q.q_zero_point())
    return entry


def _pack(value, packer: _Packer) -> dict:
    if isinstance(value, torch.dtype):  # e.g. '_packed_params.dtype' of a quantized Linear
        return {"kind": "dtype", "name": str(value).removeprefix("torch.")}
    if isinstance(value, tuple):  # packed Linear params: (int8 weight, float bias or None)
        return {"kind": "tuple", "items": [None if v is None else _pack(v, packer) for v in value]}
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"cannot store a {type(value).__name__} in an int8 file")
    if value.is_quantized:
        return _pack_quantized(value, packer)
    return {"kind": "tensor", "ref": packer.add(value)}


def _take(blobs: dict, ref) -> torch.Tensor:
    """The part `ref` = [dtype name, offset, shape] of the blobs; a reference outside them is refused."""
    if not (isinstance(ref, list) and len(ref) == 3 and ref[0] in blobs and isinstance(ref[1], int)
            and not isinstance(ref[1], bool) and ref[1] >= 0):
        raise CheckpointError(f"a bad reference into the stored values: {ref!r:.80}")
    name, offset, shape = ref
    n = count_elements(shape, "a layout entry")
    if offset + n > blobs[name].numel():
        raise CheckpointError(f"a layout entry reads {name} values {offset}..{offset + n}, past the "
                              f"{blobs[name].numel()} stored")
    return blobs[name][offset:offset + n].reshape(shape)


def _unpack(entry: dict | None, blobs: dict):
    if entry is None:
        return None
    kind = entry["kind"]
    if kind == "dtype":
        return getattr(torch, entry["name"])
    if kind == "tuple":
        return tuple(_unpack(item, blobs) for item in entry["items"])
    if kind == "tensor":
        return _take(blobs, entry["ref"]).clone()
    values = _take(blobs, entry["values"]).clone()  # int8 -> qint8, uint8 -> quint8, int32 -> qint32
    if _QDTYPES[getattr(torch, entry["qdtype"])] != values.dtype:
        raise CheckpointError(f"stored values of dtype {values.dtype} do not fit a {entry['qdtype']} tensor")
    if "axis" in entry:
        scales, zero_points = _take(blobs, entry["scales"]).double(), _take(blobs, entry["zero_points"]).long()
        return torch._make_per_channel_quantized_tensor(values, scales, zero_points, entry["axis"])
    return torch._make_per_tensor_quantized_tensor(values, entry["scale"], entry["zero_point"])


def save_int8(path, model: Int8Model) -> dict:
    """Write an int8 model (from dynamic_int8 / static_int8 / convert_qat_int8) compactly and safely.

    Returns {"path", "bytes"}: bytes is the size of the file written. See notebooks/08_quantization.ipynb.
    """
    path = path_arg(path)
    if not isinstance(model, Int8Model):
        raise TypeError(f"save_int8 expects a model from dynamic_int8, static_int8 or convert_qat_int8, "
                        f"got {type(model).__name__}")
    if model.recipe is None:
        raise ValueError("this int8 model was made from a model minprune cannot describe (not built with "
                         "mp.build); save its state_dict with torch.save instead")
    packer = _Packer()
    layout = [[key, _pack(value, packer)] for key, value in model.quantized.state_dict().items()]
    blobs = packer.blobs()
    # the hash covers the recipe and the layout (scales, zero points) too
    payload = seal({"format": FORMAT, "recipe": model.recipe, "layout": layout, "blobs": blobs})
    path = atomic_write(path, lambda f: torch.save(payload, f))
    return {"path": path, "bytes": path.stat().st_size}


def _load_engine(recipe: dict, float_model: torch.nn.Module) -> str:
    """The engine to pack the file's weights for: the one it was made with, else the one 'auto' picks here."""
    saved, available = recipe["engine"], engines.supported_engines()
    if saved in available:
        return saved
    try:
        engine = engines.pick_engine(float_model, "auto")
    except RuntimeError:
        raise RuntimeError(f"this int8 file was made with the {saved!r} quantized engine, which this PyTorch "
                           f"build lacks, and it has no other int8 engine (available: {available})") from None
    warnings.warn(f"this int8 file was made with the {saved!r} quantized engine, which this PyTorch build lacks "
                  f"(available: {available}); its int8 weights are re-packed for {engine!r}: outputs are close "
                  f"to the saving machine's, not identical", UserWarning, stacklevel=4)
    return engine


def _skeleton(recipe: dict, engine: str) -> Int8Model:
    """The same int8 graph as the saved model, with placeholder values (calibrated on one zero input)."""
    float_model = from_description(recipe["description"]).eval()
    if recipe["method"] == "dynamic":
        return dynamic_int8(float_model, engine=engine)
    zeros = torch.zeros(1, *float_model.input_shape)
    return static_int8(float_model, zeros, per_channel=recipe["per_channel"], engine=engine,
                       linear_weights_only=recipe.get("linear_weights_only", False))


def _shapes(value):
    """The shapes in a state_dict entry (tensors, packed tuples, dtypes), to compare a file with its skeleton."""
    if isinstance(value, torch.Tensor):
        return ("tensor", str(value.dtype), tuple(value.shape))
    if isinstance(value, tuple):
        return tuple(_shapes(v) for v in value)
    return value if value is None else repr(value)


def _check_fits(skeleton: dict, state: dict) -> None:
    """Refuse stored values whose keys, dtypes or shapes differ from those of the graph the recipe builds."""
    if list(skeleton) != list(state):
        raise CheckpointError(f"its layout names {sorted(set(state) ^ set(skeleton))[:5]} that the described "
                              f"int8 model does not have, or lacks them")
    for key, value in state.items():
        if _shapes(value) != _shapes(skeleton[key]):
            raise CheckpointError(f"{key!r} is stored as {_shapes(value)}, the described model holds "
                                  f"{_shapes(skeleton[key])}")


def _checked_parts(payload: dict) -> tuple[dict, list, dict]:
    recipe, layout, blobs = payload["recipe"], payload["layout"], payload["blobs"]
    if not (isinstance(blobs, dict) and all(k in _DTYPES and isinstance(b, torch.Tensor) and b.dim() == 1
                                            and b.dtype == _DTYPES[k] for k, b in blobs.items())):
        raise CheckpointError("its stored values are not 1-D tensors of the dtypes they are filed under")
    if not (isinstance(recipe, dict) and isinstance(recipe.get("engine"), str) and isinstance(layout, list)
            and recipe.get("method") in ("dynamic", "static", "qat")):
        raise CheckpointError("its recipe or layout is not what save_int8 writes")
    return recipe, layout, blobs


def load_int8(path) -> Int8Model:
    """Read a file written by `save_int8` (weights_only=True, hash checked) and rebuild the int8 model.

    Its engine is the file's, or, where this PyTorch lacks that one, the one 'auto' picks (with a warning).
    Before anything is built, the described model is sized on the meta device (at most twice the numbers the
    file stores); every stored value must have the key, dtype and shape of the graph the recipe rebuilds.
    See notebooks/08_quantization.ipynb.
    """
    payload = read_torch_file(path, FORMAT, kind="int8 model")
    with refusing(path, "its contents do not form an int8 model"):
        recipe, layout, blobs = _checked_parts(payload)
        described = check_model_size(path, recipe["description"], sum(b.numel() for b in blobs.values()))
    engine = _load_engine(recipe, described)  # a machine without int8 kernels: a RuntimeError, not a bad file
    with refusing(path, "its contents do not form an int8 model"):
        model = _skeleton(recipe, engine)
        state = OrderedDict((key, _unpack(entry, blobs)) for key, entry in layout)
        _check_fits(model.quantized.state_dict(), state)
        state._metadata = model.quantized.state_dict()._metadata  # per-module format versions, as load expects
        with using_engine(model.engine):  # packs the weights for the engine the model runs under
            model.quantized.load_state_dict(state, strict=True)
        model.method, model.recipe = recipe["method"], recipe
    return model
