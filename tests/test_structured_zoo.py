"""The torchvision zoo as a test: every classification model that builds in a few seconds is either pruned with
its compacted output equal to the masked equivalent, or refused with a DependencyError naming the module and the
operation. No silently wrong model. (The benchmark bench/structured_zoo.py runs every model, at 50%, against
Torch-Pruning.)"""

import pytest
import torch
import torchvision
from torch import nn

import minprune as mp

LIMIT = 30_000_000  # parameters: larger models take more than a few seconds to build and prune on 2 cores
TOLERANCE = 1e-4  # relative to the output's largest entry, float32
REFUSED = {  # and why: each refusal names the operation
    "maxvit_t": "chunk",  # q, k, v split from one tensor
    "shufflenet_v2_x0_5": "splits the channel axis", "shufflenet_v2_x1_0": "splits the channel axis",
    "shufflenet_v2_x1_5": "splits the channel axis", "shufflenet_v2_x2_0": "splits the channel axis",
    "swin_t": "_get_relative_position_bias", "swin_v2_t": "relative_coords_table",
}
SPECIAL = {"inception_v3": {"size": 80}, "googlenet": {"kwargs": {"init_weights": False}},
           "vit_b_16": {"size": 32, "kwargs": {"image_size": 32}},
           "vit_b_32": {"size": 32, "kwargs": {"image_size": 32}}}


def n_params(name) -> int:
    """The parameter count torchvision's weight metadata gives (no model is built)."""
    return next(iter(torchvision.models.get_model_weights(name))).meta["num_params"]


def small_zoo() -> list[str]:
    names = torchvision.models.list_models(module=torchvision.models)
    return [n for n in names if n_params(n) <= LIMIT]


def small_vit():
    return torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=4,
                                                hidden_dim=24, mlp_dim=48, num_classes=10)


def build(name):
    torch.manual_seed(0)
    if name == "small_vit":
        return small_vit().eval(), 32
    special = SPECIAL.get(name, {})
    model = torchvision.models.get_model(name, weights=None, **special.get("kwargs", {}))
    return model.eval(), special.get("size", 48)


def randomise_norms(model):
    """Non-trivial BatchNorm statistics and no all-zero weights (ViT's head starts at zero), so that a wrong slice
    changes the output."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1 and not p.any():
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


def test_the_zoo_holds_the_models_the_issue_named():
    assert {"mobilenet_v3_small", "densenet121", "efficientnet_b0", "convnext_tiny", "resnet18",
            "mobilenet_v2"} <= set(small_zoo())


@pytest.mark.parametrize("name", [*small_zoo(), "small_vit"])
def test_zoo_model_is_pruned_exactly_or_refused_clearly(name):
    model, size = build(name)
    randomise_norms(model)
    example = torch.zeros(1, 3, size, size)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        graph = mp.trace_groups(model, example)
        keep = mp.select_channels(graph, mp.score_groups(graph, mp.norm_scores(model, p=1)), 0.5)
        small = mp.remove_channels(model, keep, graph, check=False)  # checked below, on another batch
    except mp.DependencyError as exc:
        assert name in REFUSED, f"{name} was refused: {exc}"
        assert REFUSED[name] in str(exc) and ("module" in str(exc) or "node" in str(exc))
        return
    assert name not in REFUSED, f"{name} is pruned now: update REFUSED"
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected, got = mp.masked_equivalent(model, keep, graph)(x), small(x)
    assert float((got - expected).abs().max() / expected.abs().max()) < TOLERANCE
    assert mp.count_params(small) < mp.count_params(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the model passed in: untouched
