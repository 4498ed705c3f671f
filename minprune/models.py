"""The networks every notebook uses, sized to train in seconds on 2 CPU cores.

- LeNet-300-100 (LeCun et al. 1998): an MLP, 266,610 parameters.
- LeNet-5: two convolutions and three Linear layers, 61,706 parameters.
- SmallVGG: conv-BN-ReLU stages, the classic filter-pruning target.
- SmallResNet: basic residual blocks (He et al. 2016), where channels are tied across additions.
- TinyViT (tinyvit.py): a Vision Transformer on 7x7 patches, about 139k parameters.
- CharGPT (chargpt.py): a character-level GPT, (batch, t) token ids -> (batch, t, vocab) logits.

Every model is built from a plain description `{"arch": name, **kwargs}` (see `describe`/`build`),
so checkpoints store a state_dict plus that description and never a pickled module.
See notebooks/01_train_baseline.ipynb.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from minprune.chargpt import CharGPT, check_gpt_sizes
from minprune.classifier import Classifier, check_input_shape
from minprune.layers import SPEC_TYPES, module_from_spec, module_spec, set_module
from minprune.tinyvit import TinyViT, check_vit_sizes
from minprune.validate import positive_int

__all__ = ["ARCHS", "CharGPT", "Classifier", "TinyViT", "build", "check_input_shape", "describe",
           "from_description"]


class LeNet300100(Classifier):
    """784-300-100-10 multilayer perceptron with ReLU."""

    def __init__(self, input_shape=(1, 28, 28), num_classes=10, hidden=(300, 100)):
        super().__init__(input_shape, num_classes=num_classes, hidden=list(hidden))
        n_in = input_shape[0] * input_shape[1] * input_shape[2]
        layers = [nn.Flatten()]
        for width in hidden:
            layers += [nn.Linear(n_in, width), nn.ReLU()]
            n_in = width
        layers.append(nn.Linear(n_in, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(x)


class LeNet5(Classifier):
    """LeNet-5 with ReLU and max pooling: conv(6) - pool - conv(16) - pool - 120 - 84 - classes."""

    def __init__(self, input_shape=(1, 28, 28), num_classes=10, channels=(6, 16), hidden=(120, 84)):
        super().__init__(input_shape, num_classes=num_classes, channels=list(channels), hidden=list(hidden))
        c_in, h, w = input_shape
        pad = 2 if h == 28 else 0  # 28x28 MNIST is padded to the original 32x32 geometry
        self.features = nn.Sequential(
            nn.Conv2d(c_in, channels[0], 5, padding=pad), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(channels[0], channels[1], 5), nn.ReLU(), nn.MaxPool2d(2),
        )
        side = ((h + 2 * pad - 4) // 2 - 4) // 2  # spatial size after the two conv+pool stages
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels[1] * side * side, hidden[0]), nn.ReLU(),
            nn.Linear(hidden[0], hidden[1]), nn.ReLU(),
            nn.Linear(hidden[1], num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


def conv_bn_relu(c_in, c_out, stride=1):
    """3x3 convolution without bias, BatchNorm, ReLU: the unit that filter pruning removes."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class SmallVGG(Classifier):
    """VGG-style CNN: for each width a conv-BN-ReLU pair then max pooling; global pooling; Linear."""

    def __init__(self, input_shape=(1, 28, 28), num_classes=10, widths=(16, 32, 64)):
        super().__init__(input_shape, num_classes=num_classes, widths=list(widths))
        layers, c_in = [], input_shape[0]
        for width in widths:
            layers += [conv_bn_relu(c_in, width), conv_bn_relu(width, width), nn.MaxPool2d(2)]
            c_in = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_in, num_classes)

    def forward(self, x):
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus a shortcut (1x1 conv-BN when the shape changes); ReLU after the add."""

    def __init__(self, c_in, c_out, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class SmallResNet(Classifier):
    """ResNet with a conv stem and one stage of basic blocks per width (stride 2 between stages)."""

    def __init__(self, input_shape=(1, 28, 28), num_classes=10, widths=(16, 32, 64), blocks=(1, 1, 1)):
        super().__init__(input_shape, num_classes=num_classes, widths=list(widths), blocks=list(blocks))
        self.stem = conv_bn_relu(input_shape[0], widths[0])
        stages, c_in = [], widths[0]
        for i, (width, n) in enumerate(zip(widths, blocks, strict=True)):
            for j in range(n):
                stages.append(BasicBlock(c_in, width, stride=2 if (i > 0 and j == 0) else 1))
                c_in = width
        self.layers = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


ARCHS = {"lenet300": LeNet300100, "lenet5": LeNet5, "vgg": SmallVGG, "resnet": SmallResNet, "tinyvit": TinyViT,
         "chargpt": CharGPT}


def build(arch: str, **kwargs) -> nn.Module:
    """Build a model by name ('lenet300', 'lenet5', 'vgg', 'resnet', 'tinyvit', 'chargpt') with its keyword
    arguments."""
    if arch not in ARCHS:
        raise ValueError(f"unknown model {arch!r}; choose one of {', '.join(ARCHS)}")
    allowed = [p for p in inspect.signature(ARCHS[arch]).parameters if p != "self"]
    unknown = [k for k in kwargs if k not in allowed]
    if unknown:
        raise TypeError(f"unknown argument(s) {unknown} for {arch!r}; allowed: {', '.join(allowed)}")
    _check_sizes(arch, kwargs)
    return ARCHS[arch](**kwargs)


_LENGTHS = {("lenet5", "channels"): 2, ("lenet5", "hidden"): 2}


def _sizes(value, name: str) -> list:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ValueError(f"{name} must be a list of positive ints, got {value!r:.60}")
    return [positive_int(v, f"{name}[{i}]") for i, v in enumerate(_plain(value))]


def _check_sizes(arch: str, kwargs: dict) -> None:
    """Refuse sizes that no model of `arch` can have (a list of the wrong length, 0 or -1 channels, a bool)."""
    if arch == "chargpt":
        return check_gpt_sizes(_plain(kwargs))
    shape = _sizes(kwargs.get("input_shape", (1, 28, 28)), "input_shape")
    if len(shape) != 3:
        raise ValueError(f"input_shape must be (channels, height, width), got {shape}")
    positive_int(_plain(kwargs.get("num_classes", 10)), "num_classes")
    for key in ("hidden", "channels", "widths", "blocks"):
        if key in kwargs:
            sizes = _sizes(kwargs[key], key)
            needed = _LENGTHS.get((arch, key))
            if (needed is not None and len(sizes) != needed) or (key != "hidden" and not sizes):
                raise ValueError(f"{key} of {arch!r} must list {needed or 'at least 1'} sizes, got {sizes}")
    if arch == "resnet" and len(_plain(kwargs.get("widths", [0] * 3))) != len(_plain(kwargs.get("blocks", [1] * 3))):
        raise ValueError(f"widths and blocks of 'resnet' must have the same length, got {kwargs.get('widths')} and "
                         f"{kwargs.get('blocks')}")
    if arch == "lenet5" and ((shape[1] + (4 if shape[1] == 28 else 0) - 4) // 2 - 4) // 2 < 1:
        raise ValueError(f"lenet5 needs images of at least 16x16, got input_shape={shape}")
    if arch == "tinyvit":
        check_vit_sizes(shape, _plain(kwargs))


def describe(model: nn.Module) -> dict:
    """The plain description `{"arch": name, **kwargs}` that `build` turns back into the same model."""
    for name, cls in ARCHS.items():
        if type(model) is cls:
            shapes = _changed_layers(model, cls(**model.config))
            return {"arch": name, **_plain(model.config), **({"shapes": shapes} if shapes else {})}
    raise ValueError(f"{type(model).__name__} is not a minprune model; save its state_dict yourself")


def _plain(value):
    """`value` as plain Python data: numpy / torch arrays and numbers via `.tolist()`, tuples as lists.

    So a model built with `hidden=np.array([64, 32])` or `num_classes=np.int64(10)` still gets a description
    that `torch.load(weights_only=True)` reads back (`checkpoint.save_model` refuses any other).
    """
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if callable(getattr(value, "tolist", None)):  # np.int64(3), np.array([...]), torch.tensor(...)
        return _plain(value.tolist())
    return value


def from_description(description: dict) -> nn.Module:
    """Inverse of `describe`."""
    if not isinstance(description, dict) or "arch" not in description:
        raise ValueError(f"a model description is a dict with an 'arch' key, got {description!r}")
    kwargs = {k: v for k, v in description.items() if k not in ("arch", "shapes")}
    try:
        model = build(description["arch"], **kwargs)
    except TypeError as exc:
        raise ValueError(f"bad model description {description!r}: {exc}") from exc
    return _apply_layer_changes(model, description.get("shapes", {}))


def _changed_layers(model: nn.Module, base: nn.Module) -> dict:
    """{module name: [type, kwargs]} for layers that structured pruning resized or replaced (structured/surgery.py)."""
    base_modules = dict(base.named_modules())
    changed = {}
    for name, mod in model.named_modules():
        if not name or type(mod).__name__ not in SPEC_TYPES:
            continue
        ref = base_modules.get(name)
        if ref is None or type(ref) is not type(mod) or module_spec(ref) != module_spec(mod):
            changed[name] = module_spec(mod)
    return changed


def _apply_layer_changes(model: nn.Module, shapes: dict) -> nn.Module:
    """Rebuild the resized layers a compacted model's description records (parents before children)."""
    if not isinstance(shapes, dict):
        raise ValueError(f"'shapes' in a model description must be a dict, got {type(shapes).__name__}")
    for name in sorted(shapes, key=lambda n: n.count(".")):
        try:
            set_module(model, name, module_from_spec(shapes[name]))
        except (AttributeError, TypeError, ValueError) as exc:
            raise ValueError(f"bad layer {name!r} in model description: {exc}") from exc
    return model
