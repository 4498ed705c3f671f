"""Optimal Brain Surgeon (minprune/one_shot/obs.py): the step against its closed form, every update against
brute-force least squares, the loss against the true quadratic, OBS against OBD and magnitude, masks, refusals."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import minprune as mp
from minprune.one_shot.calibration import input_hessians, layer_rows
from minprune.one_shot.obd import obd_scores
from minprune.one_shot.obs import damped_inverse, downdate_inverse, obs_prune, obs_prune_layer, obs_remove, obs_step
from tests.unchanged import Unchanged

TOL = 1e-5


def _problem(seed: int, n: int = 40, d: int = 8, correlated: bool = True):
    """Calibration inputs X (n, d) with correlated columns, a weight row w, H = X^T X / n and its inverse."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    if correlated:
        X = X @ torch.randn(d, d, generator=g, dtype=torch.float64)
    w = torch.randn(d, generator=g, dtype=torch.float64)
    H = X.T @ X / n
    return X, w, H, torch.linalg.inv(H)


def _least_squares(X: torch.Tensor, w: torch.Tensor, keep: np.ndarray) -> np.ndarray:
    """Brute force: argmin ||X w' - X w|| over w' with w'_j = 0 outside `keep` (numpy lstsq)."""
    Xn, target = X.numpy(), (X @ w).numpy()
    full = np.zeros(len(w))
    full[keep] = np.linalg.lstsq(Xn[:, keep], target, rcond=None)[0]
    return full


def _half_mse(X, w_new, w) -> float:
    """The loss OBS works on: 1/2 ||X (w' - w)||^2 / n."""
    return float(0.5 * ((X @ (w_new - w)) ** 2).mean())


def test_obs_step_equals_closed_form():
    X, w, H, H_inv = _problem(0)
    q, delta, loss = obs_step(w, H_inv)
    costs = w.numpy() ** 2 / (2 * np.diag(H_inv.numpy()))
    assert q == int(np.argmin(costs))
    expected = -w[q].item() / H_inv[q, q].item() * H_inv[:, q].numpy()
    np.testing.assert_allclose(delta.numpy(), expected, atol=TOL)
    assert loss == pytest.approx(costs[q], abs=TOL)
    assert (w + delta)[q].item() == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_removal_is_the_least_squares_solution_and_its_true_cost(seed):
    X, w, H, H_inv = _problem(seed)
    q, delta, loss = obs_step(w, H_inv)
    keep = np.array([j for j in range(len(w)) if j != q])
    np.testing.assert_allclose((w + delta).numpy(), _least_squares(X, w, keep), atol=TOL)
    assert loss == pytest.approx(_half_mse(X, w + delta, w), abs=TOL)


def test_obs_step_picks_the_cheapest_removal_by_brute_force():
    X, w, H, H_inv = _problem(3)
    q, _, loss = obs_step(w, H_inv)
    costs = []
    for j in range(len(w)):
        keep = np.array([i for i in range(len(w)) if i != j])
        costs.append(_half_mse(X, torch.from_numpy(_least_squares(X, w, keep)), w))
    assert int(np.argmin(costs)) == q
    assert loss == pytest.approx(min(costs), abs=TOL)


def test_obs_remove_a_given_weight_matches_least_squares():
    X, w, H, H_inv = _problem(4)
    delta, loss = obs_remove(w, H_inv, 5)
    keep = np.array([0, 1, 2, 3, 4, 6, 7])
    np.testing.assert_allclose((w + delta).numpy(), _least_squares(X, w, keep), atol=TOL)
    assert loss == pytest.approx(_half_mse(X, w + delta, w), abs=TOL)


def test_repeated_steps_equal_least_squares_with_every_removed_weight_zero():
    X, w, H, H_inv = _problem(5, d=10)
    w_now, removed = w.clone(), torch.zeros(10, dtype=torch.bool)
    total = 0.0
    for _ in range(6):
        q, delta, loss = obs_step(w_now, H_inv, removed=removed)
        w_now, H_inv, total = w_now + delta, downdate_inverse(H_inv, q), total + loss
        removed[q] = True
        np.testing.assert_allclose(w_now.numpy(), _least_squares(X, w, (~removed).nonzero().flatten().numpy()),
                                   atol=TOL)
    assert total == pytest.approx(_half_mse(X, w_now, w), abs=TOL)  # the step costs add up to the true loss


def test_obs_prune_layer_rows_equal_least_squares():
    X, _, H, _ = _problem(6, n=60, d=12)
    W = torch.randn(5, 12, dtype=torch.float64)
    new, mask = obs_prune_layer(W, H, 0.5, damp=0.0)
    assert mask.dtype == torch.bool and mask.shape == W.shape
    assert (mask.sum(1) == 6).all()  # every row exactly to the sparsity
    assert (new[~mask] == 0).all()
    for i in range(5):
        np.testing.assert_allclose(new[i].numpy(), _least_squares(X, W[i], mask[i].nonzero().flatten().numpy()),
                                   atol=TOL)


def test_damping_is_a_fraction_of_the_mean_diagonal():
    _, _, H, _ = _problem(7)
    lam = 0.1 * H.diagonal().mean()
    torch.testing.assert_close(damped_inverse(H, 0.1), torch.linalg.inv(H + lam * torch.eye(8, dtype=H.dtype)))


def _layer_errors(seed: int, sparsity: float):
    """Reconstruction error ||X W'^T - X W^T||^2 of OBS, OBD (hessian) and magnitude, through the kit's calls."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(10, 6), nn.ReLU(), nn.Linear(6, 3)).double()
    X = torch.randn(64, 10, dtype=torch.float64) @ torch.randn(10, 10, dtype=torch.float64)
    calib, names = [(X, torch.zeros(64, dtype=torch.long))], ["0.weight"]
    W = model[0].weight.detach()
    obs = obs_prune(model, calib, sparsity, names=names, damp=0.0)
    obd, magnitude = mp.copy_model(model), mp.copy_model(model)
    mp.prune(obd, obd_scores(model, calib, names=names), sparsity)
    mp.prune(magnitude, mp.magnitude_scores(model, names=names), sparsity)
    return [float(((X @ (m[0].weight.detach() - W).T) ** 2).sum()) for m in (obs, obd, magnitude)]


@settings(max_examples=25, deadline=None, derandomize=True)
@given(seed=st.integers(0, 10_000), sparsity=st.sampled_from([0.3, 0.5, 0.7]))
def test_obs_reconstructs_better_than_obd_and_magnitude(seed, sparsity):
    obs, obd, magnitude = _layer_errors(seed, sparsity)
    assert obs <= obd + 1e-9 and obs <= magnitude + 1e-9


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))


def _calib(n: int = 48):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(n, 12, generator=g), torch.randint(0, 3, (n,), generator=g)) for _ in range(2)]


def test_obs_prune_returns_a_masked_copy_and_leaves_the_model_alone():
    model = _net()
    before = Unchanged(model)
    pruned = obs_prune(model, _calib(), 0.5)
    before.check()
    assert mp.get_masks(model) == {}
    masks = mp.get_masks(pruned)
    assert list(masks) == ["0.weight", "2.weight"]  # the output layer is left alone by default
    assert (masks["0.weight"].sum(1) == 6).all() and (masks["2.weight"].sum(1) == 8).all()
    x = torch.randn(5, 12)
    expected = pruned(x)
    mp.make_permanent(pruned)
    torch.testing.assert_close(pruned(x), expected)
    assert float((pruned[0].weight == 0).float().mean()) == 0.5


def test_obs_prune_calibrates_each_layer_on_the_pruned_layers_before_it():
    model, calib = _net(), _calib()
    pruned = obs_prune(model, calib, 0.5, damp=0.0)
    first = mp.copy_model(model)
    first[0].weight.data = pruned[0].weight.detach().clone()  # layer 0 as pruned, layer 2 dense
    H = input_hessians(first, calib, ["2.weight"])["2.weight"]
    new, mask = obs_prune_layer(model[2].weight.detach(), H, 0.5, damp=0.0)
    torch.testing.assert_close(pruned[2].weight.detach(), new)
    assert torch.equal(mp.get_masks(pruned)["2.weight"], mask)


def test_obs_prune_keeps_old_masks_and_counts_them():
    model = _net()
    old = torch.ones(16, 12, dtype=torch.bool)
    old[:, :3] = False  # 3 of 12 per row already pruned
    mp.apply_masks(model, {"0.weight": old})
    pruned = obs_prune(model, _calib(), 0.5, names=["0.weight"])
    mask = mp.get_masks(pruned)["0.weight"]
    assert not mask[:, :3].any() and (mask.sum(1) == 6).all()
    assert (pruned[0].weight[:, :3] == 0).all()


def test_conv_layer_rows_equal_least_squares_on_unfolded_inputs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 5 * 5, 2)).double()
    calib = [(torch.randn(6, 2, 5, 5, dtype=torch.float64), torch.zeros(6, dtype=torch.long))]
    pruned = obs_prune(model, calib, 0.5, damp=0.0)
    X = layer_rows(model[0], calib[0][0])  # (6 * 25, 18)
    mask, W = mp.get_masks(pruned)["0.weight"].reshape(3, 18), model[0].weight.detach().reshape(3, 18)
    for i in range(3):
        np.testing.assert_allclose(pruned[0].weight.detach().reshape(3, 18)[i].numpy(),
                                   _least_squares(X, W[i], mask[i].nonzero().flatten().numpy()), atol=TOL)


@pytest.mark.parametrize("kwargs, error", [
    ({"sparsity": 1.0}, ValueError), ({"sparsity": -0.1}, ValueError), ({"sparsity": "half"}, ValueError),
    ({"damp": -0.01}, ValueError), ({"damp": float("nan")}, ValueError), ({"names": ["nope.weight"]}, ValueError),
    ({"max_batches": 0}, ValueError), ({"batches": None}, TypeError), ({"batches": "data"}, TypeError),
    ({"batches": []}, ValueError), ({"batches": [(torch.randn(4, 5), torch.zeros(4, dtype=torch.long))]}, ValueError),
])
def test_obs_prune_refuses_bad_arguments_and_leaves_the_model_alone(kwargs, error):
    model = _net()
    before = Unchanged(model)
    args = {"batches": _calib(), "sparsity": 0.5, **kwargs}
    with pytest.raises(error):
        obs_prune(model, args.pop("batches"), args.pop("sparsity"), **args)
    before.check()


def test_obs_prune_refuses_float16_wide_layers_and_non_models():
    with pytest.raises(ValueError, match="float32 or float64"):
        obs_prune(_net().half(), _calib(), 0.5)
    wide = nn.Sequential(nn.Linear(1100, 4), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="sparsegpt"):
        obs_prune(wide, [(torch.randn(2, 1100), torch.zeros(2, dtype=torch.long))], 0.5)
    with pytest.raises(TypeError, match="model"):
        obs_prune("model", _calib(), 0.5)


def test_layer_and_step_functions_refuse_bad_tensors():
    _, w, H, H_inv = _problem(0)
    with pytest.raises(TypeError, match="w must be a float tensor"):
        obs_step([1.0, 2.0], H_inv)
    with pytest.raises(ValueError, match="H_inv must be"):
        obs_step(w, H_inv[:4, :4])
    with pytest.raises(ValueError, match="q must be"):
        obs_remove(w, H_inv, 8)
    with pytest.raises(ValueError, match="finite"):
        obs_step(w * float("nan"), H_inv)
    with pytest.raises(ValueError, match="H must be"):
        obs_prune_layer(torch.randn(3, 8), H[:5, :5], 0.5)
    with pytest.raises(ValueError, match="sparsegpt"):
        obs_prune_layer(torch.randn(2, 1025), torch.eye(1025), 0.5)
    with pytest.raises(ValueError, match="positive definite"):
        obs_prune_layer(torch.randn(3, 8), torch.zeros(8, 8), 0.5, damp=0.0)
    with pytest.raises(ValueError, match="keep at least one"):
        obs_prune_layer(torch.randn(3, 1), torch.eye(1), 0.9)
