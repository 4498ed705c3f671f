"""Wrong and right answers to chapter 2's exercises."""

import copy

import torch
import torch.nn.functional as F
from torch import nn

import minprune as mp

# ---- 2.1 ----


def magnitude_without_abs(model, p=1):
    params = dict(model.named_parameters())
    return {name: params[name].detach() ** p for name in mp.prunable_names(model)}


def magnitude_ignores_p(model, p=1):
    params = dict(model.named_parameters())
    return {name: params[name].detach().abs() for name in mp.prunable_names(model)}


def magnitude_in_place(model, p=1):
    params = dict(model.named_parameters())
    scores = {}
    for name in mp.prunable_names(model):
        W = params[name].detach()  # shares its storage with the weight
        scores[name] = W.abs_().pow_(p)
    return scores


def magnitude_every_weight(model, p=1):
    return {name: w.detach().abs() ** p for name, w in model.named_parameters() if name.endswith("weight")}


def magnitude_with_biases(model, p=1):
    return {name: w.detach().abs() ** p for name, w in model.named_parameters()}


def magnitude_times_p(model, p=1):
    params = dict(model.named_parameters())
    return {name: params[name].detach().abs() * p for name in mp.prunable_names(model)}


def magnitude_by_modules(model, p=1):
    scores = {}
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            scores[f"{name}.weight"] = torch.pow(torch.abs(module.weight.detach()), p)
    return scores


# ---- 2.2 ----


def _loss(model, x, y, reduction="mean"):
    return F.cross_entropy(model(x), y, reduction=reduction)


def _autograd_scores(model, x, y, reduction="mean", term=lambda w, g: (w * g).abs()):
    was = model.training
    model.eval()
    params = dict(model.named_parameters())
    names = mp.prunable_names(model)
    grads = torch.autograd.grad(_loss(model, x, y, reduction), [params[n] for n in names])
    model.train(was)
    return {n: term(params[n].detach(), g) for n, g in zip(names, grads)}


def taylor_backward_leaves_grad(model, x, y):
    was = model.training
    model.eval()
    _loss(model, x, y).backward()
    model.train(was)
    params = dict(model.named_parameters())
    return {n: (params[n].detach() * params[n].grad).abs() for n in mp.prunable_names(model)}


def taylor_backward_then_zero_grad(model, x, y):
    was = model.training
    model.eval()
    model.zero_grad()
    _loss(model, x, y).backward()
    params = dict(model.named_parameters())
    scores = {n: (params[n].detach() * params[n].grad).abs() for n in mp.prunable_names(model)}
    model.zero_grad()
    model.train(was)
    return scores


def taylor_sum_loss(model, x, y):
    return _autograd_scores(model, x, y, reduction="sum")


def taylor_signed(model, x, y):
    return _autograd_scores(model, x, y, term=lambda w, g: w * g)


def taylor_gradient_only(model, x, y):
    return _autograd_scores(model, x, y, term=lambda w, g: g.abs())


def taylor_in_train_mode(model, x, y):
    params = dict(model.named_parameters())
    names = mp.prunable_names(model)
    grads = torch.autograd.grad(_loss(model, x, y), [params[n] for n in names])
    return {n: (params[n].detach() * g).abs() for n, g in zip(names, grads)}


def taylor_eval_not_restored(model, x, y):
    model.eval()
    params = dict(model.named_parameters())
    names = mp.prunable_names(model)
    grads = torch.autograd.grad(_loss(model, x, y), [params[n] for n in names])
    return {n: (params[n].detach() * g).abs() for n, g in zip(names, grads)}


def taylor_every_parameter(model, x, y):
    was = model.training
    model.eval()
    params = dict(model.named_parameters())
    grads = torch.autograd.grad(_loss(model, x, y), list(params.values()))
    model.train(was)
    return {n: (p.detach() * g).abs() for (n, p), g in zip(params.items(), grads)}


def taylor_on_a_copy(model, x, y):
    twin = copy.deepcopy(model).eval()  # the caller's model, its .grad and its mode stay as they were
    twin.zero_grad()
    _loss(twin, x, y).backward()
    weights = dict(twin.named_parameters())
    return {n: torch.abs(weights[n].grad * weights[n].detach()) for n in mp.prunable_names(model)}


WRONG = {
    "2.1": [magnitude_without_abs, magnitude_ignores_p, magnitude_in_place, magnitude_every_weight,
            magnitude_with_biases, magnitude_times_p],
    "2.2": [taylor_backward_leaves_grad, taylor_backward_then_zero_grad, taylor_sum_loss, taylor_signed,
            taylor_gradient_only, taylor_in_train_mode, taylor_eval_not_restored, taylor_every_parameter],
}
RIGHT = {"2.1": [magnitude_by_modules], "2.2": [taylor_on_a_copy, _autograd_scores]}
