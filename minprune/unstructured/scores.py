"""Importance scores: one number per weight, higher means more important. Scores never change the model.

Every score function returns `dict[name -> float tensor shaped like the parameter]` for the weights in
`names` (default: `prunable_names(model)`). Already masked weights are scored through their effective
(masked) value, so they score zero under magnitude, Taylor and SNIP.
- magnitude |w|^p (Han et al. 2015); random (the baseline every method must beat);
- Taylor |w * dL/dw| (Molchanov et al. 2019); gradient magnitude |dL/dw|;
- SNIP (Lee et al. 2019), GraSP (Wang et al. 2020), SynFlow (Tanaka et al. 2020, data-free).
Gradient scores run on a private copy of the model in eval mode, so no .grad, BatchNorm statistic
or flag of the caller's model changes. That copy runs on `device` (default `mp.device()`), the model itself
never moves, and the scores come back on the device of the weights they rank, in the weights' dtype (float16
and bfloat16 weights get float32 scores, random scores are float32), so a float64 model is ranked at float64
resolution. Magnitude, random and SynFlow scores (SynFlow computes in float64 on its copy) work on float16 and
bfloat16 models; the gradient scores (Taylor, gradient, SNIP, GraSP) refuse them: call model.float() first.
Models on the meta device are refused (they hold no weights to score).
See notebooks/02_importance_scores.ipynb.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from minprune.batches import check_batch_fits, read_first_batch
from minprune.devices import model_device, resolve
from minprune.masked import copy_model, effective_parameters, get_masks
from minprune.unstructured.masks import check_sparsity, iterative_sparsities, name_list, number_arg, prunable_names
from minprune.unstructured.prune import prune
from minprune.validate import float_model, model_arg, non_negative_int, positive_int


def _names(model: nn.Module, names) -> list[str]:
    model_arg(model)
    names = prunable_names(model) if names is None else name_list(names, "names")
    params = effective_parameters(model)
    unknown = [n for n in names if n not in params]
    if unknown:
        raise ValueError(f"unknown parameter name(s) {unknown}; prunable ones are {prunable_names(model)}")
    if not names:
        raise ValueError("no parameters to score: the model has no Linear or Conv2d weights and names= is empty")
    bad = [n for n in names if not bool(torch.isfinite(params[n]).all())]
    if bad:
        raise ValueError(f"weights {bad} contain NaN or Inf; scores need finite weights (did training diverge?)")
    return names


def _score_dtype(weight: torch.Tensor) -> torch.dtype:
    """The dtype `weight`'s scores are computed in: its own, at least float32 (float64 stays float64)."""
    return torch.promote_types(weight.dtype, torch.float32)


def magnitude_scores(model: nn.Module, p: float = 1, names=None) -> dict:
    """|w|^p per weight: p=1 is L1 magnitude, p=2 is w squared. Any float dtype (float16/bfloat16 give float32).

    See notebooks/02_importance_scores.ipynb.
    """
    number_arg(p, "p", "a positive number (finite: NaN and inf are refused)", low=0, low_open=True)
    params = effective_parameters(model)
    return {n: params[n].detach().abs().to(_score_dtype(params[n])).pow(p) for n in _names(model, names)}


def random_scores(model: nn.Module, seed: int = 0, names=None) -> dict:
    """Uniform random scores from a seeded generator: the control. See notebooks/02_importance_scores.ipynb."""
    non_negative_int(seed, "seed")
    names = _names(model, names)
    params = effective_parameters(model)
    generator = torch.Generator().manual_seed(seed)
    return {n: torch.rand(params[n].shape, generator=generator).to(params[n].device) for n in names}


def _data_batches(data, batches: int, fn: str):
    """Up to `batches` (x, y) pairs from a DataLoader, an iterable of pairs or a DataSplits (train split)."""
    if data is None:
        raise ValueError(f"{fn} needs data: pass a DataLoader (e.g. splits.loader('train')) as loader=")
    positive_int(batches, "batches")
    if hasattr(data, "loader") and hasattr(data, "train"):  # DataSplits
        data = data.loader("train", 64, shuffle=False)
    check_loader_type(data)
    out = []
    for batch in data:
        out.append(check_batch(batch))
        if len(out) == batches:
            break
    if not out:
        raise ValueError(f"{fn} got an empty loader")
    return out


def check_loader_type(loader, name: str = "loader") -> None:
    """TypeError unless `loader` can be iterated for batches (a DataLoader, a list of (x, y) pairs, ...):
    a str, a dict or a number is refused."""
    if isinstance(loader, (str, bytes, Mapping)) or not hasattr(loader, "__iter__"):
        raise TypeError(f"{name} must be a DataLoader or an iterable of (x, y) batches, got "
                        f"{type(loader).__name__} {loader!r:.60}")


def check_batch(batch, name: str = "loader") -> tuple[torch.Tensor, torch.Tensor]:
    """`batch` as an (x, y) pair of tensors (inputs, class labels); TypeError otherwise."""
    if not isinstance(batch, (tuple, list)) or len(batch) != 2 or not all(isinstance(t, torch.Tensor) for t in batch):
        raise TypeError(f"{name} must yield (x, y) pairs of tensors (inputs, class labels), got a batch "
                        f"{type(batch).__name__} {batch!r:.60}")
    return batch[0], batch[1]


def peek_scoring_batch(model: nn.Module, loader, name: str = "loader") -> None:
    """Check `loader` as the score functions word it (`check_loader_type`, `check_batch`; one-shot iterators and
    empty loaders are refused) and run its first batch once through `model` (`batches.check_batch_fits`: shape,
    labels in [0, outputs)). The random state is put back and nothing of `model` changes: for the functions
    that read the loader again (`sensitivity_scan`, `fine_tune`, `iterative_prune`) before they change anything."""
    check_loader_type(loader, name)
    first, _ = read_first_batch(loader, name, reiterable=True)
    check_batch_fits(model, check_batch(first, name), name)


def _loss(twin: nn.Module, x: torch.Tensor, y: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Cross entropy of the private copy on one batch; a batch the model cannot run raises ValueError."""
    device = model_device(twin)
    try:
        return F.cross_entropy(twin(x.to(device)) / temperature, y.to(device))
    except torch.cuda.OutOfMemoryError:
        raise
    except (RuntimeError, IndexError) as exc:  # a wrong input size or a label out of range, found inside torch
        raise ValueError(f"the model cannot run on the loader's batches (x of shape {tuple(x.shape)}, y of shape "
                         f"{tuple(y.shape)}): {exc}") from None


def _gradient_setup(model: nn.Module, loader, batches: int, names, fn: str) -> tuple[list[str], list]:
    """The checks every gradient score makes before it computes: a float32/float64 model, names, batches, and
    the first batch run once through the model (`check_batch_fits`: its shape, labels in [0, outputs))."""
    float_model(model, fn)
    names, data = _names(model, names), _data_batches(loader, batches, fn)
    check_batch_fits(model, data[0], "loader")
    return names, data


def _scoring_copy(model: nn.Module, names: list[str], device):
    """A private eval-mode copy of `model` on `device` and, per name, the leaf parameter that trains."""
    twin = copy_model(model).eval().to(device)
    leaves = {}
    for name in names:
        mod_name, _, attr = name.rpartition(".")
        module = twin.get_submodule(mod_name)
        leaf = module._parameters.get(f"{attr}_orig", module._parameters.get(attr))
        leaf.requires_grad_(True)
        leaves[name] = leaf
    return twin, leaves


def _grads(twin: nn.Module, leaves: dict, x, y) -> dict:
    """dL/d(leaf) for one batch; for a masked tensor that is dL/dw times the mask."""
    loss = _loss(twin, x, y)
    grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
    return {n: torch.zeros_like(p) if g is None else g for (n, p), g in zip(leaves.items(), grads)}


def _effective(twin: nn.Module, name: str) -> torch.Tensor:
    return effective_parameters(twin)[name].detach()


def _batch_mean(twin: nn.Module, leaves: dict, data, term) -> dict:
    """Average term(name, grad) over the batches; term runs after the forward pass that refreshed the masked weights."""
    totals = {n: torch.zeros_like(p, dtype=_score_dtype(p)) for n, p in leaves.items()}
    for x, y in data:
        for n, g in _grads(twin, leaves, x, y).items():
            totals[n] += term(n, g).to(totals[n].dtype)
    return {n: t / len(data) for n, t in totals.items()}


def _home(scores: dict, model: nn.Module) -> dict:
    """The scores moved to the device of the model's weights (a no-op when they were computed there)."""
    device = model_device(model)
    return {n: s.to(device) for n, s in scores.items()}


def taylor_scores(model: nn.Module, loader=None, batches: int = 4, names=None, *, device=None) -> dict:
    """First-order Taylor importance |w * dL/dw|, averaged over `batches` batches.

    device: where the private copy computes (default `mp.device()`). float16/bfloat16 models are refused (the
    gradients lose the precision the ranking needs): call model.float() first. See notebooks/02_importance_scores.ipynb.
    """
    names, data = _gradient_setup(model, loader, batches, names, "taylor_scores")
    twin, leaves = _scoring_copy(model, names, resolve(model, device))
    return _home(_batch_mean(twin, leaves, data, lambda n, g: (_effective(twin, n) * g).abs()), model)


def gradient_scores(model: nn.Module, loader=None, batches: int = 4, names=None, *, device=None) -> dict:
    """Gradient magnitude |dL/dw| averaged over `batches` batches (ignores the weight's own size).

    device: as in `taylor_scores`. See notebooks/02_importance_scores.ipynb.
    """
    names, data = _gradient_setup(model, loader, batches, names, "gradient_scores")
    twin, leaves = _scoring_copy(model, names, resolve(model, device))
    return _home(_batch_mean(twin, leaves, data, lambda n, g: g.abs()), model)


def snip_scores(model: nn.Module, loader=None, batches: int = 1, names=None, *, device=None) -> dict:
    """SNIP connection sensitivity |w * g| / sum over all scored weights, g the mean gradient over batches.

    device: as in `taylor_scores`. See notebooks/02_importance_scores.ipynb.
    """
    names, data = _gradient_setup(model, loader, batches, names, "snip_scores")
    twin, leaves = _scoring_copy(model, names, resolve(model, device))
    mean_grad = _batch_mean(twin, leaves, data, lambda n, g: g)
    raw = {n: (_effective(twin, n) * mean_grad[n]).abs() for n in names}  # mean_grad is in _score_dtype
    total = sum(float(s.sum()) for s in raw.values()) or 1.0
    return _home({n: s / total for n, s in raw.items()}, model)


def grasp_scores(model: nn.Module, loader=None, batches: int = 1, names=None, temperature: float = 200.0, *,
                 device=None) -> dict:
    """GraSP with the sign flipped to our convention (high = keep): w * (H g), H g a Hessian-gradient product.

    GraSP removes the weights whose removal reduces gradient flow least; here they get the lowest scores.
    device: as in `taylor_scores`. See notebooks/02_importance_scores.ipynb.
    """
    names, data = _gradient_setup(model, loader, batches, names, "grasp_scores")
    number_arg(temperature, "temperature", "a positive number (finite: NaN and inf are refused)", low=0, low_open=True)
    twin, leaves = _scoring_copy(model, names, resolve(model, device))
    params = list(leaves.values())
    totals = {n: torch.zeros_like(p, dtype=_score_dtype(p)) for n, p in leaves.items()}
    for x, y in data:
        loss = _loss(twin, x, y, temperature)
        g = torch.autograd.grad(loss, params, create_graph=True)
        z = sum((gi * gi.detach()).sum() for gi in g)  # d z / d w = H g
        hg = torch.autograd.grad(z, params, allow_unused=True)
        for n, h in zip(names, hg):
            if h is not None:
                totals[n] += (_effective(twin, n) * h).to(totals[n].dtype)
    return _home({n: t / len(data) for n, t in totals.items()}, model)


@torch.no_grad()
def _linearise(twin: nn.Module) -> None:
    """SynFlow's trick: every parameter and buffer made non-negative (|w|), in double precision."""
    twin.double()
    for t in list(twin.parameters()) + list(twin.buffers()):
        if t.is_floating_point():
            t.abs_()


def synflow_scores(model: nn.Module, names=None, input_shape=None, *, device=None) -> dict:
    """SynFlow |w * dR/dw| with R = sum of the outputs of the |w| network on an all-ones input. Data-free.

    One pass; `synflow_masks` iterates it, which is how SynFlow avoids layer collapse. It computes in float64,
    which Apple's `mps` devices lack: pass device='cpu' there. So float16/bfloat16 models work too (float32
    scores). See notebooks/02_importance_scores.ipynb.
    """
    names = _names(model, names)
    dtypes = {n: _score_dtype(p) for n, p in effective_parameters(model).items() if n in names}  # before .double()
    shape = _input_shape(model, input_shape)
    twin, leaves = _scoring_copy(model, names, resolve(model, device))
    _linearise(twin)
    ones = torch.ones(1, *shape, dtype=torch.float64, device=model_device(twin))
    try:
        R = twin(ones).sum()
    except RuntimeError as exc:  # an input_shape the model cannot take, found inside torch
        raise ValueError(f"synflow_scores cannot run the model on an input of shape {tuple(ones.shape)} "
                         f"(input_shape={shape}): {exc}") from None
    grads = torch.autograd.grad(R, list(leaves.values()), allow_unused=True)
    scores = {}
    for n, g in zip(names, grads):
        g = torch.zeros_like(leaves[n]) if g is None else g
        scores[n] = (_effective(twin, n) * g).abs().to(dtypes[n])
    return _home(scores, model)


def _input_shape(model: nn.Module, input_shape) -> tuple[int, ...]:
    """The per-example input shape: `input_shape` (a tuple of positive ints) or the one the model records."""
    shape = input_shape if input_shape is not None else getattr(model, "input_shape", None)
    if not shape:
        raise ValueError("synflow_scores needs input_shape=(C, H, W): the model does not record one")
    if isinstance(shape, int) or not isinstance(shape, (tuple, list, torch.Size)):
        raise TypeError(f"input_shape must be a tuple of positive ints such as (1, 28, 28), got {shape!r}")
    for i, d in enumerate(shape):
        positive_int(d, f"input_shape[{i}]")
    return tuple(shape)


def synflow_masks(model: nn.Module, sparsity: float, rounds: int = 20, names=None, *, device=None) -> dict:
    """Iterative SynFlow: `rounds` score-and-mask steps to a global `sparsity` (exponential schedule).

    Works on a private copy on `device` (default `mp.device()`) and returns masks on the model's device (pure);
    apply them with `apply_masks`. See notebooks/02_importance_scores.ipynb.
    """
    positive_int(rounds, "rounds")
    check_sparsity(sparsity)
    names = _names(model, names)
    device = resolve(model, device)
    twin = copy_model(model).to(device)
    for step_sparsity in iterative_sparsities(sparsity, rounds):
        prune(twin, synflow_scores(twin, names, device=device), step_sparsity, scope="global")
    masks = get_masks(twin)
    return _home({n: masks[n] for n in names}, model)
