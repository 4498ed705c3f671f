"""Block and layer removal."""

import copy

import pytest
import torch
import torchvision

import minprune as mp
from minprune.checkpoint import load_model, save_model
from minprune.structured.blocks import block_scores, drop_blocks, droppable, prune_blocks


def test_droppable_blocks_keep_their_shape():
    resnet = mp.build("resnet", blocks=(2, 1, 1))
    assert droppable(resnet) == ["layers.0", "layers.1"]  # layers.2/3 downsample: shape changes
    vgg = mp.build("vgg")
    assert droppable(vgg) == ["features.1", "features.4", "features.7"]  # second conv of each stage
    assert droppable(mp.build("lenet300")) == []


def test_drop_identity_block_is_exact_when_block_is_silent():
    model = mp.build("resnet", blocks=(2, 1, 1)).eval()
    with torch.no_grad():
        model.layers[1].bn2.weight.zero_()
        model.layers[1].bn2.bias.zero_()  # F(x) = 0, so relu(F(x) + x) = x
    x = torch.randn(3, 1, 28, 28)
    small = drop_blocks(model, "layers.1")
    torch.testing.assert_close(small(x), model(x))
    assert mp.count_params(small) < mp.count_params(model)


def test_bad_block_refused_model_untouched():
    model = mp.build("resnet")
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match="layers.1"):
        drop_blocks(model, ["layers.1"])
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_block_scores_and_prune_blocks():
    model = mp.build("resnet", blocks=(3, 1, 1)).eval()
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    scores = block_scores(model, x, y)
    assert set(scores) == {"layers.0", "layers.1", "layers.2"}
    assert set(block_scores(model, x)) == set(scores) and all(v >= 0 for v in block_scores(model, x).values())
    small = prune_blocks(model, x, y, n=2)
    lowest = sorted(scores, key=scores.get)[:2]
    assert all(isinstance(small.get_submodule(n), torch.nn.Identity) for n in lowest)
    with pytest.raises(ValueError, match="n must be"):
        prune_blocks(model, x, y, n=4)


def test_torchvision_resnet18_blocks():
    model = torchvision.models.resnet18(num_classes=10)
    example = torch.zeros(1, 3, 32, 32)
    names = droppable(model, example)
    assert names == ["layer1.0", "layer1.1", "layer2.1", "layer3.1", "layer4.1"]
    assert drop_blocks(model, names, example=example).eval()(example).shape == (1, 10)


def test_dropped_model_saves_and_reloads(tmp_path):
    model = mp.build("vgg").eval()
    small = drop_blocks(model, ["features.4"])
    save_model(tmp_path / "m.pt", small)
    loaded, _ = load_model(tmp_path / "m.pt")
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(loaded.eval()(x), small(x))
