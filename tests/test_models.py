import pytest
import torch

from minprune import models
from minprune.measure import count_params

IMAGE_ARCHS = [arch for arch in models.ARCHS if arch != "chargpt"]  # chargpt reads token ids, not images


@pytest.mark.parametrize("arch", IMAGE_ARCHS)
def test_forward_shapes(arch):
    model = models.build(arch)
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)


@pytest.mark.parametrize("arch", IMAGE_ARCHS)
def test_cifar_sized_inputs(arch):
    patch = {"patch_size": 8} if arch == "tinyvit" else {}  # a patch size that divides 32
    model = models.build(arch, input_shape=(3, 32, 32), num_classes=10, **patch)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_known_parameter_counts():
    assert count_params(models.build("lenet300")) == 266_610
    assert count_params(models.build("lenet5")) == 61_706


@pytest.mark.parametrize("arch", list(models.ARCHS))
def test_describe_round_trip(arch):
    model = models.build(arch, widths=[8, 16]) if arch == "vgg" else models.build(arch)
    rebuilt = models.from_description(models.describe(model))
    assert type(rebuilt) is type(model)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


@pytest.mark.parametrize("shape", [(2, 1, 32, 32), (2, 3, 28, 28), (2, 784)])
def test_wrong_input_shape_is_refused(shape):
    with pytest.raises(ValueError, match=r"expects input of shape \(batch, 1, 28, 28\)"):
        models.build("lenet5")(torch.randn(*shape))


def test_bad_names_and_descriptions():
    with pytest.raises(ValueError, match="unknown model"):
        models.build("alexnet")
    with pytest.raises(ValueError, match="arch"):
        models.from_description({"widths": [1]})
    with pytest.raises(ValueError, match="bad model description"):
        models.from_description({"arch": "vgg", "depth": 3})
    with pytest.raises(ValueError, match="not a minprune model"):
        models.describe(torch.nn.Linear(2, 2))
