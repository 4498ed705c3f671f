"""Optimal Brain Damage (minprune/one_shot/obd.py): the Hessian and Fisher diagonals against closed forms, the
saliency against the true loss increase of a quadratic, the kit's masks on the scores, refusals."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import minprune as mp
from minprune.one_shot.obd import fisher_diagonal, obd_scores
from tests.unchanged import Unchanged


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3)).double()


def _calib(sizes=(7, 9)):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(n, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g))
            for n in sizes]


def test_hessian_saliency_is_w_squared_times_mean_input_squared_over_two():
    model, calib = _net(), _calib()
    scores = obd_scores(model, calib, kind="hessian")
    assert list(scores) == ["0.weight", "2.weight"]  # every prunable weight but the output layer
    X0 = torch.cat([x for x, _ in calib])
    X2 = torch.relu(model[0](X0)).detach()  # the inputs layer 2 sees
    for name, X in (("0.weight", X0), ("2.weight", X2)):
        w = dict(model.named_parameters())[name].detach()
        expected = w**2 * (X**2).mean(0) / 2  # H_jj = mean over rows of x_j^2
        torch.testing.assert_close(scores[name], expected)
        assert scores[name].dtype == torch.float64


def test_hessian_saliency_is_the_exact_loss_increase_when_h_is_diagonal():
    torch.manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(40, 5, dtype=torch.float64))
    X = Q * torch.tensor([1.0, 2.0, 3.0, 0.5, 4.0], dtype=torch.float64) * 40**0.5  # X^T X / n diagonal
    model = nn.Sequential(nn.Linear(5, 3), nn.Linear(3, 2)).double()
    scores = obd_scores(model, [(X, torch.zeros(40, dtype=torch.long))], names=["0.weight"])["0.weight"]
    W = model[0].weight.detach()
    for i in range(3):
        for j in range(5):
            W_new = W.clone()
            W_new[i, j] = 0.0
            increase = 0.5 * ((X @ (W_new - W).T) ** 2).sum(1).mean()  # 1/2 the mean squared output error
            assert float(scores[i, j]) == pytest.approx(float(increase), rel=1e-9)


def test_fisher_of_a_quadratic_loss_is_mean_squared_residual_times_input():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 1, bias=False)).double()
    X, y = torch.randn(10, 4, dtype=torch.float64), torch.randn(10, dtype=torch.float64)

    def half_squared_error(m, x, t):
        return 0.5 * ((m(x).squeeze(-1) - t) ** 2).mean()

    fisher = fisher_diagonal(model, [(X[:4], y[:4]), (X[4:], y[4:])], ["0.weight"],
                             loss_fn=half_squared_error)["0.weight"]
    w = model[0].weight.detach().numpy()[0]
    r = X.numpy() @ w - y.numpy()  # the per-example gradient is r_n x_n
    np.testing.assert_allclose(fisher.numpy()[0], ((r[:, None] * X.numpy()) ** 2).mean(0), rtol=1e-10)
    scores = obd_scores(model, [(X, y)], kind="fisher", names=["0.weight"], loss_fn=half_squared_error)
    torch.testing.assert_close(scores["0.weight"], model[0].weight.detach() ** 2 * fisher / 2)


def test_fisher_of_cross_entropy_matches_the_softmax_closed_form():
    model, calib = _net(), _calib()
    fisher = fisher_diagonal(model, calib, ["4.weight"])["4.weight"]
    X = torch.cat([x for x, _ in calib])
    y = torch.cat([t for _, t in calib])
    h = torch.relu(model[2](torch.relu(model[0](X)))).detach()  # inputs of the output layer
    p = F.softmax(model[4](h), dim=1).detach()
    residual = p - F.one_hot(y, 3).double()  # dl_n/dW = (p_n - e_y) h_n^T
    torch.testing.assert_close(fisher, (residual[:, :, None] ** 2 * h[:, None, :] ** 2).mean(0))


def test_fisher_is_a_mean_over_examples_not_over_batches():
    model = _net()
    x, y = torch.cat([b[0] for b in _calib()]), torch.cat([b[1] for b in _calib()])
    one = fisher_diagonal(model, [(x, y)])
    split = fisher_diagonal(model, [(x[:3], y[:3]), (x[3:], y[3:])])
    for name in one:
        torch.testing.assert_close(one[name], split[name])


def test_fisher_of_a_sequence_model_uses_the_per_token_cross_entropy_per_sequence():
    torch.manual_seed(0)
    model = mp.build("chargpt", n_layer=1, n_embd=16)
    x = torch.randint(0, 100, (2, 16))
    y = torch.randint(0, 100, (2, 16))
    fisher = fisher_diagonal(model, [(x, y)], ["blocks.0.mlp.fc1.weight"])["blocks.0.mlp.fc1.weight"]
    expected = 0
    for i in range(2):
        model.zero_grad()
        F.cross_entropy(model(x[i:i + 1]).flatten(0, -2), y[i].flatten()).backward()
        expected = expected + model.blocks[0].mlp.fc1.weight.grad.double() ** 2 / 2
    torch.testing.assert_close(fisher, expected)
    names = list(obd_scores(model, [(x, y)], kind="hessian"))
    assert names == [n for n in mp.prunable_names(model) if n.startswith("blocks.")]  # not the head


@pytest.mark.parametrize("kind", ["hessian", "fisher"])
def test_scores_prune_with_the_kit_and_leave_the_model_alone(kind):
    model = _net()
    before = Unchanged(model)
    scores = obd_scores(model, _calib(), kind=kind)
    before.check()
    assert all(s.shape == dict(model.named_parameters())[n].shape for n, s in scores.items())
    masks = mp.make_masks(scores, 0.4)
    assert mp.masks_sparsity(masks) == pytest.approx(0.4, abs=0.03)
    pruned = mp.copy_model(model)
    mp.prune(pruned, scores, 0.4)
    assert mp.get_masks(pruned).keys() == scores.keys()


@pytest.mark.parametrize("kind", ["hessian", "fisher"])
def test_masked_weights_score_zero(kind):
    model = _net()
    mask = torch.ones(5, 6, dtype=torch.bool)
    mask[0] = False
    mp.apply_masks(model, {"0.weight": mask})
    scores = obd_scores(model, _calib(), kind=kind)
    assert (scores["0.weight"][0] == 0).all() and (scores["0.weight"][1:] > 0).all()


@pytest.mark.parametrize("kwargs, error", [
    ({"kind": "newton"}, ValueError), ({"names": ["nope.weight"]}, ValueError), ({"names": 3}, TypeError),
    ({"max_batches": 0}, ValueError), ({"batches": None}, TypeError), ({"batches": "data"}, TypeError),
    ({"batches": []}, ValueError), ({"kind": "fisher", "batches": [torch.randn(3, 6)]}, TypeError),
    ({"kind": "fisher", "loss_fn": "mse"}, TypeError), ({"loss_fn": lambda m, x, y: m(x).sum()}, ValueError),
    ({"kind": "fisher", "batches": [(torch.randn(3, 6).double(), torch.tensor([0, 1, 7]))]}, ValueError),
    ({"batches": [(torch.randn(3, 4).double(), torch.zeros(3, dtype=torch.long))]}, ValueError),
])
def test_obd_scores_refuse_bad_arguments_and_leave_the_model_alone(kwargs, error):
    model = _net()
    before = Unchanged(model)
    args = {"batches": _calib(), **kwargs}
    with pytest.raises(error):
        obd_scores(model, args.pop("batches"), **args)
    before.check()


def test_obd_scores_refuse_float16_and_non_models():
    with pytest.raises(ValueError, match="float32 or float64"):
        obd_scores(_net().half(), _calib())
    with pytest.raises(TypeError, match="model"):
        obd_scores(None, _calib())
