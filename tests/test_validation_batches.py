"""The one check of a loader's first batch against the model (`batches.check_batch_fits`): a batch the model cannot
run, and labels that are not class indices of its outputs, are refused with a ValueError naming the loader before
anything changes (state_dict, every module's train/eval flag, dtype, gradients), in every function that takes data.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import minprune as mp
from minprune import batches

CANNOT_RUN = "the model cannot run on the loader's batches"


def _loader(n: int = 8, shape=(1, 28, 28), labels=None, shuffle: bool = False) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (n,), generator=g) if labels is None else labels
    return DataLoader(TensorDataset(torch.randn(n, *shape, generator=g), y), batch_size=4, shuffle=shuffle,
                      generator=torch.Generator().manual_seed(1))


def _bad_labels(value: int = 99) -> DataLoader:
    return _loader(labels=torch.full((8,), value))


def _mlp(dtype=torch.float32) -> nn.Module:
    return mp.build("lenet300", hidden=[8, 8]).to(dtype)


def _vgg() -> nn.Module:
    return mp.build("vgg", widths=[4, 8])


def _snapshot(model: nn.Module) -> tuple:
    return ({k: v.detach().clone() for k, v in model.state_dict().items()},
            {name: m.training for name, m in model.named_modules()},
            {p.dtype for p in model.parameters()},
            {name: None if p.grad is None else p.grad.clone() for name, p in model.named_parameters()})


def _assert_same(model: nn.Module, before: tuple) -> None:
    state, flags, dtypes, grads = before
    now = model.state_dict()
    assert now.keys() == state.keys()
    for k, v in state.items():
        assert torch.equal(now[k], v), f"{k} changed although the call failed"
    assert {name: m.training for name, m in model.named_modules()} == flags, "a train/eval flag changed"
    assert {p.dtype for p in model.parameters()} == dtypes
    for name, p in model.named_parameters():
        assert (p.grad is None) == (grads[name] is None), f"grad of {name} appeared or went"


def _refused(call, model: nn.Module, fragments, error=ValueError) -> str:
    before = _snapshot(model)
    with pytest.raises(error) as info:
        call()
    assert type(info.value) is error, f"raised {type(info.value).__name__}: {info.value}"
    for fragment in [fragments] if isinstance(fragments, str) else fragments:
        assert fragment in str(info.value), f"message lacks {fragment!r}: {info.value}"
    _assert_same(model, before)
    return str(info.value)


def _fit(model, loader, **kw):
    return mp.fit(model, loader, mp.TrainConfig(epochs=1), progress=False, device="cpu", **kw)


# ---- labels out of range: every function that takes data ---------------------------------------------------

def _with_callback(make):
    """A model that carries the callback `make(model)` builds (the setup, done before the snapshot)."""
    def build():
        model = _mlp()
        model.test_callbacks = [make(model)]
        return model
    return build


LABEL_CALLS = {
    "fit train_loader": (_mlp, lambda m, bad: _fit(m, bad), "train_loader"),
    "fit val_loader": (_mlp, lambda m, bad: _fit(m, _loader(), val_loader=bad), "val_loader"),
    "fit GradualPruner": (_with_callback(lambda m: mp.GradualPruner(m, lambda s: 0.5)),
                          lambda m, bad: _fit(m, bad, callbacks=m.test_callbacks), "train_loader"),
    "fit DynamicSparseTrainer": (_with_callback(lambda m: mp.DynamicSparseTrainer(m, mp.SparseConfig(sparsity=0.5))),
                                 lambda m, bad: _fit(m, bad, callbacks=m.test_callbacks), "train_loader"),
    "evaluate": (_mlp, lambda m, bad: mp.evaluate(m, bad, device="cpu"), "loader"),
    "accuracy": (_mlp, lambda m, bad: mp.accuracy(m, bad, device="cpu"), "loader"),
    "distill_student": (_mlp, lambda m, bad: mp.distill_student(
        m, _mlp(), bad, train=mp.TrainConfig(epochs=1), progress=False, device="cpu"), "train_loader"),
    "activation_scores": (_vgg, lambda m, bad: mp.activation_scores(m, bad, max_batches=1), "loader"),
    "taylor_unit_scores": (_vgg, lambda m, bad: mp.taylor_unit_scores(m, bad, max_batches=1), "loader"),
    "summary": (_mlp, lambda m, bad: mp.summary(m, bad, timing=False), "loader"),
    "compare": (_mlp, lambda m, bad: mp.compare({"a": m}, bad, timing=False), "loader"),
    "fine_tune": (_mlp, lambda m, bad: mp.fine_tune(m, bad, mp.TrainConfig(epochs=1), device="cpu"), "data"),
    "iterative_prune": (_mlp, lambda m, bad: mp.iterative_prune(m, mp.magnitude_scores, [0.5], bad), "data"),
    "sensitivity_scan": (_mlp, lambda m, bad: mp.sensitivity_scan(m, bad, [0.5]), "loader"),
    "taylor_scores": (_mlp, lambda m, bad: mp.taylor_scores(m, bad, batches=1), "loader"),
    "gradient_scores": (_mlp, lambda m, bad: mp.gradient_scores(m, bad, batches=1), "loader"),
    "snip_scores": (_mlp, lambda m, bad: mp.snip_scores(m, bad), "loader"),
    "grasp_scores": (_mlp, lambda m, bad: mp.grasp_scores(m, bad), "loader"),
}


@pytest.mark.parametrize("label", LABEL_CALLS)
@pytest.mark.parametrize("value", [99, 10, -1])
def test_labels_out_of_range_are_refused_before_anything_changes(label, value):
    build, call, name = LABEL_CALLS[label]
    model = build()
    _refused(lambda: call(model, _bad_labels(value)), model,
             [CANNOT_RUN, f"{name} yields label {value}", "the model has 10 outputs", "[0, 10)"])


@pytest.mark.parametrize("label", ["fit train_loader", "evaluate", "activation_scores", "sensitivity_scan",
                                   "distill_student"])
@pytest.mark.parametrize("labels, fragment", [
    (torch.zeros(8), "torch.float32 labels"),
    (torch.zeros(8, dtype=torch.int32), "y.long()"),
    (torch.zeros(8, dtype=torch.bool), "torch.bool labels"),
    (torch.zeros(8, 1, dtype=torch.long), "labels of shape (4, 1)"),
], ids=["float", "int32", "bool", "2-d"])
def test_labels_that_are_not_class_indices_are_refused(label, labels, fragment):
    build, call, name = LABEL_CALLS[label]
    model = build()
    _refused(lambda: call(model, _loader(labels=labels)), model, [CANNOT_RUN, name, fragment, "class indices"])


def test_uint8_labels_are_class_indices_too():
    model = _mlp()
    assert mp.evaluate(model, _loader(labels=torch.zeros(8, dtype=torch.uint8)), device="cpu")["acc"] >= 0


def test_evaluate_checks_the_labels_of_every_batch_not_only_the_first():
    model = _mlp()
    y = torch.cat([torch.zeros(4, dtype=torch.long), torch.full((4,), 99)])  # the second batch is bad
    _refused(lambda: mp.evaluate(model, _loader(labels=y), device="cpu"), model, [CANNOT_RUN, "yields label 99"])


# ---- a batch the model cannot run -----------------------------------------------------------------------------

def test_fit_checks_val_loader_before_it_trains():
    model = _mlp()
    _refused(lambda: _fit(model, _loader(), val_loader=_loader(shape=(3, 32, 32))), model,
             [CANNOT_RUN, "val_loader", "expects input of shape (batch, 1, 28, 28)", "(4, 3, 32, 32)"])


FOREIGN_CALLS = {
    "fit": lambda m, bad: _fit(m, bad),
    "evaluate": lambda m, bad: mp.evaluate(m, bad, device="cpu"),
    "taylor_scores": lambda m, bad: mp.taylor_scores(m, bad, batches=1),
    "fine_tune": lambda m, bad: mp.fine_tune(m, bad, device="cpu"),
    "sensitivity_scan": lambda m, bad: mp.sensitivity_scan(m, bad, [0.5]),
    "activation_scores": lambda m, bad: mp.activation_scores(m, bad, max_batches=1),
}


@pytest.mark.parametrize("label", FOREIGN_CALLS)
def test_a_model_without_an_input_check_gets_a_clear_error_not_a_raw_one_from_torch(label):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    _refused(lambda: FOREIGN_CALLS[label](model, _loader(shape=(3, 8, 8))), model, [CANNOT_RUN, "(4, 3, 8, 8)"])


def test_the_expected_input_shape_is_named_when_the_model_records_one():
    class Recorded(nn.Sequential):
        input_shape = (1, 28, 28)

    model = Recorded(nn.Flatten(), nn.Linear(784, 10))
    _refused(lambda: mp.evaluate(model, _loader(shape=(3, 8, 8)), device="cpu"), model,
             ["loader yields x of shape (4, 3, 8, 8)", "expects input of shape (batch, 1, 28, 28)"])


def test_an_output_that_is_not_logits_is_refused():
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 1), nn.Flatten(0))  # (batch,), not (batch, classes)
    _refused(lambda: _fit(model, _loader()), model, [CANNOT_RUN, "train_loader", "not logits of shape (4, classes)"])


def test_distill_student_refuses_a_teacher_with_other_classes():
    student, teacher = _mlp(), mp.build("lenet300", hidden=[8, 8], num_classes=5)
    before = _snapshot(teacher)
    _refused(lambda: mp.distill_student(student, teacher, _loader(labels=torch.zeros(8, dtype=torch.long)),
                                        progress=False, device="cpu"),
             student, ["the teacher has 5 outputs but the student 10"])
    _assert_same(teacher, before)


def test_distill_student_refuses_labels_the_teacher_cannot_score():
    student, teacher = _mlp(), mp.build("lenet300", hidden=[8, 8], num_classes=5)
    _refused(lambda: mp.distill_student(student, teacher, _loader(labels=torch.full((8,), 7)), progress=False,
                                        device="cpu"),
             student, ["train_loader (through the teacher) yields label 7", "the model has 5 outputs"])


# ---- the check itself changes nothing -------------------------------------------------------------------------

def test_check_batch_fits_leaves_batchnorm_statistics_and_every_flag_alone():
    model = _vgg().train()
    model.features[1].eval()  # one module in eval mode inside a training model keeps its own flag
    model.features[1].momentum = 1.0  # a forward in train mode would overwrite the running statistics
    before = _snapshot(model)
    x, y = next(iter(_loader(shape=(1, 28, 28))))
    assert batches.check_batch_fits(model, (x * 10 + 3, y)) == 10
    _assert_same(model, before)
    assert model.training and not model.features[1].training


def test_check_batch_fits_refuses_a_meta_model():
    with torch.device("meta"):
        model = _mlp()
    with pytest.raises(ValueError, match="on the meta device"):
        batches.check_batch_fits(model, next(iter(_loader())))


def test_the_fitting_peek_keeps_the_random_state_and_reads_one_batch():
    loader, model = _loader(shuffle=True), _mlp()
    state, loader_state = torch.random.get_rng_state(), loader.generator.get_state()
    (x, y), same = batches.peek_fitting_batches(model, loader, "train_loader", reiterable=True)
    assert same is loader and x.shape == (4, 1, 28, 28)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(loader.generator.get_state(), loader_state)


class CountingLoader:
    """A re-iterable loader that counts the batches it hands out."""

    def __init__(self, loader):
        self.loader, self.served = loader, 0

    def __iter__(self):
        for batch in self.loader:
            self.served += 1
            yield batch

    def __len__(self):
        return len(self.loader)


def test_fit_reads_one_extra_batch_per_loader_not_a_second_pass():
    train_loader, val_loader = CountingLoader(_loader(16)), CountingLoader(_loader(16))
    _fit(_mlp(), train_loader, val_loader=val_loader)
    assert train_loader.served == 4 + 1  # one epoch of 4 batches, plus the peek
    assert val_loader.served == 4 + 1 + 1  # fit's peek, evaluate's peek, one evaluation


def test_sensitivity_scan_refuses_a_one_shot_iterator_it_would_read_again():
    model = _mlp()
    _refused(lambda: mp.sensitivity_scan(model, iter(list(_loader())), [0.5]), model,
             ["loader must be an iterable of (x, y) batches", "one-shot"], TypeError)


# ---- half precision: the check runs in the model's dtype --------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_evaluate_and_activation_scores_check_half_models_in_their_dtype(dtype):
    model = _mlp(dtype)
    assert batches.check_batch_fits(model, next(iter(_loader()))) == 10
    assert 0 <= mp.evaluate(model, _loader(), device="cpu")["acc"] <= 100
    assert {p.dtype for p in model.parameters()} == {dtype}
    _refused(lambda: mp.evaluate(model, _bad_labels(), device="cpu"), model, "yields label 99")
    vgg = _vgg().to(dtype)
    assert mp.activation_scores(vgg, _loader(), max_batches=1)
    assert {p.dtype for p in vgg.parameters()} == {dtype}
