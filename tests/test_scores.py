"""Scores: shapes, definitions on tiny hand-checkable cases, and that no score function changes the model."""

import pytest
import torch

import minprune as mp
from minprune.masked import apply_masks, get_masks
from minprune.unstructured import scores as S
from minprune.unstructured.prune import prune


def model_and_data():
    torch.manual_seed(0)
    model = mp.build("lenet5", input_shape=(1, 28, 28), num_classes=10)
    x, y = torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,))
    return model, [(x[:16], y[:16]), (x[16:], y[16:])]


def bn_model():
    torch.manual_seed(0)
    return mp.build("vgg", input_shape=(1, 12, 12), num_classes=3, widths=[4, 8])


ALL = {
    "l1": lambda m, d: S.magnitude_scores(m),
    "l2": lambda m, d: S.magnitude_scores(m, p=2),
    "random": lambda m, d: S.random_scores(m, seed=1),
    "taylor": lambda m, d: S.taylor_scores(m, d, batches=2),
    "gradient": lambda m, d: S.gradient_scores(m, d, batches=2),
    "snip": lambda m, d: S.snip_scores(m, d),
    "grasp": lambda m, d: S.grasp_scores(m, d),
    "synflow": lambda m, d: S.synflow_scores(m),
}


def snapshot(model):
    return ({k: v.clone() for k, v in model.state_dict().items()}, model.training,
            [(p.requires_grad, None if p.grad is None else p.grad.clone()) for p in model.parameters()])


def same(a, b):
    (sa, ta, ga), (sb, tb, gb) = a, b
    return (sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa) and ta == tb
            and all(ra == rb and (x is None) == (y is None) and (x is None or torch.equal(x, y))
                    for (ra, x), (rb, y) in zip(ga, gb)))


@pytest.mark.parametrize("kind", list(ALL))
def test_scores_shape_and_model_untouched(kind):
    model, data = model_and_data()
    model.train()
    model.features[0].weight.requires_grad_(False)  # a frozen layer must stay frozen
    before = snapshot(model)
    scores = ALL[kind](model, data)
    assert same(snapshot(model), before)
    assert list(scores) == mp.unstructured.masks.prunable_names(model)
    params = mp.effective_parameters(model)
    for name, s in scores.items():
        assert s.shape == params[name].shape and s.is_floating_point() and torch.isfinite(s).all()


@pytest.mark.parametrize("kind", ["taylor", "snip", "grasp", "synflow"])
def test_gradient_scores_leave_batchnorm_statistics_alone(kind):
    model = bn_model().train()
    data = [(torch.randn(8, 1, 12, 12), torch.randint(0, 3, (8,)))]
    before = snapshot(model)
    ALL[kind](model, data)
    assert same(snapshot(model), before)


def test_magnitude_and_taylor_definitions():
    layer = torch.nn.Sequential(torch.nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        layer[0].weight.copy_(torch.tensor([[-3.0, 0.5]]))
    assert S.magnitude_scores(layer)["0.weight"].tolist() == [[3.0, 0.5]]
    assert S.magnitude_scores(layer, p=2)["0.weight"].tolist() == [[9.0, 0.25]]
    # loss = cross_entropy on one logit is 0; use a two-class layer instead for a non-zero gradient
    net = torch.nn.Sequential(torch.nn.Linear(2, 2, bias=False))
    x, y = torch.tensor([[1.0, 2.0]]), torch.tensor([0])
    loss = torch.nn.functional.cross_entropy(net(x), y)
    (g,) = torch.autograd.grad(loss, [net[0].weight])
    expected = (net[0].weight.detach() * g).abs()
    assert torch.allclose(S.taylor_scores(net, [(x, y)], batches=1)["0.weight"], expected)
    assert torch.allclose(S.gradient_scores(net, [(x, y)], batches=1)["0.weight"], g.abs())
    snip = S.snip_scores(net, [(x, y)])["0.weight"]
    assert torch.allclose(snip, expected / expected.sum())


def test_scores_of_masked_model_are_zero_where_pruned():
    model, data = model_and_data()
    masks = prune(model, S.magnitude_scores(model), 0.7, scope="global")
    for fn in (S.magnitude_scores, lambda m: S.taylor_scores(m, data, batches=1), S.synflow_scores):
        scores = fn(model)
        for name, mask in masks.items():
            assert torch.all(scores[name][~mask] == 0)


def test_gradient_scores_need_data():
    model, _ = model_and_data()
    for fn in (S.taylor_scores, S.gradient_scores, S.snip_scores, S.grasp_scores):
        with pytest.raises(ValueError, match="needs data"):
            fn(model)
    with pytest.raises(ValueError, match="empty"):
        S.taylor_scores(model, [])


def test_unknown_names_and_bad_p():
    model, _ = model_and_data()
    with pytest.raises(ValueError, match="unknown"):
        S.magnitude_scores(model, names=["features.9.weight"])
    with pytest.raises(ValueError, match="p must"):
        S.magnitude_scores(model, p=0)
    assert list(S.random_scores(model, names=["classifier.5.weight"])) == ["classifier.5.weight"]


def test_random_scores_are_seeded():
    model, _ = model_and_data()
    a, b, c = S.random_scores(model, 1), S.random_scores(model, 1), S.random_scores(model, 2)
    assert all(torch.equal(a[n], b[n]) for n in a) and not torch.equal(a["features.0.weight"],
                                                                          c["features.0.weight"])


def test_synflow_masks_reach_target_without_layer_collapse():
    model, _ = model_and_data()
    before = snapshot(model)
    masks = S.synflow_masks(model, 0.95, rounds=5)
    assert same(snapshot(model), before) and not get_masks(model)
    assert abs(mp.unstructured.masks.masks_sparsity(masks) - 0.95) < 1e-4
    assert all(m.sum() > 0 for m in masks.values())  # no layer emptied
    apply_masks(model, masks)
    assert abs(mp.model_sparsity(model) - 0.95) < 0.01


def test_synflow_needs_input_shape():
    net = torch.nn.Sequential(torch.nn.Linear(3, 2))
    with pytest.raises(ValueError, match="input_shape"):
        S.synflow_scores(net)
    assert S.synflow_scores(net, input_shape=(3,))["0.weight"].shape == (2, 3)


def test_multi_batch_averaging():
    """Taylor and gradient scores average |per-batch term|; SNIP takes |w * mean gradient| (signs may cancel)."""
    net = torch.nn.Sequential(torch.nn.Linear(2, 2, bias=False))
    batches = [(torch.tensor([[1.0, 2.0]]), torch.tensor([0])), (torch.tensor([[-1.0, 0.5]]), torch.tensor([1]))]
    grads = [torch.autograd.grad(torch.nn.functional.cross_entropy(net(x), y), [net[0].weight])[0]
             for x, y in batches]
    w = net[0].weight.detach()
    assert torch.allclose(S.taylor_scores(net, batches, batches=2)["0.weight"],
                          ((w * grads[0]).abs() + (w * grads[1]).abs()) / 2)
    assert torch.allclose(S.gradient_scores(net, batches, batches=2)["0.weight"],
                          (grads[0].abs() + grads[1].abs()) / 2)
    raw = (w * (grads[0] + grads[1]) / 2).abs()
    assert torch.allclose(S.snip_scores(net, batches, batches=2)["0.weight"], raw / raw.sum())
